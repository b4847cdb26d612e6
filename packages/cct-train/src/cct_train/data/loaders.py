"""DataLoader helpers: dict collation, seeded loaders, and an endless loader for the labeled stream.

Images of different sizes (a folder of photographs, VOC) batch in two ways: for training, a loader built with
``crop=SampleCrop(...)`` gives each sample of a mixed-size batch its own random scale + crop to the crop size
before stacking (:class:`CropCollate`); for evaluation, ``pad=True`` pads every sample of a batch to the
largest one (image 0, mask ignored) and records each one's own size in ``"size"``, so that evaluation can
predict each image at its own size (:func:`pad_collate`).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from functools import partial
from typing import Any, TypedDict

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from cct_train.data.augment import random_scale_crop
from cct_train.data.base import IGNORE_INDEX, Sample, SampleError


class _BatchRequired(TypedDict):
    image: torch.Tensor
    name: list[str]


class Batch(_BatchRequired, total=False):
    """A collated batch: ``image`` uint8 (B, 3, H, W), optional ``mask`` int64 (B, H, W), ``name`` list.

    ``size`` (B, 2) int64: each sample's own (H, W) inside the padded batch (:func:`pad_collate`);
    ``cropped``: True when each sample was already scaled and cropped to the crop size (:class:`CropCollate`).
    """

    mask: torch.Tensor
    size: torch.Tensor
    cropped: bool


def collate(samples: Sequence[Sample]) -> Batch:
    """Stack sample dicts into a :class:`Batch`.

    All images must share one size; either every sample has a ``"mask"`` or none does. Raises ValueError
    otherwise. Images of several sizes: :class:`CropCollate` (training) or :func:`pad_collate` (evaluation),
    which ``build_loader(crop=...)`` / ``build_loader(pad=True)`` use.
    """
    if not samples:
        raise ValueError("collate: empty batch")
    sizes = {tuple(s["image"].shape) for s in samples}
    if len(sizes) > 1:
        shown = ", ".join(f"{s['name']} {s['image'].shape[-1]}x{s['image'].shape[-2]}" for s in samples[:8])
        raise SampleError(
            f"collate: one batch holds images of different sizes (WxH): {shown}. Build the loader with "
            "crop=SampleCrop(...) (training) or pad=True (evaluation), as `cct train` does for data of mixed "
            "sizes, or set data.resize=[H, W] (resize=(H, W) for a data set); `cct data check` names every "
            "image whose size differs from the others"
        )
    batch: Batch = {"image": torch.stack([s["image"] for s in samples]), "name": [s["name"] for s in samples]}
    with_mask = sum("mask" in s for s in samples)
    if with_mask == len(samples):
        batch["mask"] = torch.stack([s["mask"] for s in samples])
    elif with_mask:
        raise ValueError("collate: some samples have a mask and some do not")
    return batch


def pad_collate(samples: Sequence[Sample], ignore_index: int = IGNORE_INDEX) -> Batch:
    """Stack samples of any sizes: each is padded at its bottom and right to the batch's largest height and
    width (images with 0, masks with ``ignore_index``), and ``"size"`` (B, 2) keeps each one's own (H, W).

    A batch of one size is stacked as :func:`collate` does (plus ``"size"``).
    """
    if not samples:
        raise ValueError("collate: empty batch")
    sizes = torch.tensor([list(s["image"].shape[-2:]) for s in samples], dtype=torch.int64)
    if bool((sizes == sizes[0]).all()):
        stacked = collate(samples)
        stacked["size"] = sizes
        return stacked
    height, width = (int(v) for v in sizes.max(0).values)
    first = samples[0]["image"]
    images = first.new_zeros((len(samples), first.shape[0], height, width))
    for index, sample in enumerate(samples):  # a copy per sample, as torch.stack does
        h, w = sample["image"].shape[-2:]
        images[index, :, :h, :w] = sample["image"]
    batch: Batch = {"image": images, "name": [s["name"] for s in samples], "size": sizes}
    with_mask = sum("mask" in s for s in samples)
    if with_mask == len(samples):
        masks = torch.full((len(samples), height, width), ignore_index, dtype=torch.int64)
        for index, sample in enumerate(samples):
            h, w = sample["mask"].shape
            masks[index, :h, :w] = sample["mask"]
        batch["mask"] = masks
    elif with_mask:
        raise ValueError("collate: some samples have a mask and some do not")
    return batch


class SampleCrop:
    """Random scale + crop of one sample to ``crop_size`` (:func:`~cct_train.data.augment.random_scale_crop`).

    ``sample`` in, sample out (``"image"`` (3, h, w) uint8, ``"mask"`` (h, w) when present); the draws come
    from the ``generator`` passed to the call.
    """

    def __init__(
        self,
        crop_size: Sequence[int],
        scale_range: Sequence[float] = (0.5, 2.0),
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        if len(crop_size) != 2 or min(crop_size) < 1:
            raise ValueError(f"crop_size must be (h, w) with positive sizes, got {crop_size!r}")
        self.crop_size = (int(crop_size[0]), int(crop_size[1]))
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.ignore_index = ignore_index

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        image, mask = random_scale_crop(
            sample["image"],
            sample.get("mask"),
            self.crop_size,
            self.scale_range,
            ignore_index=self.ignore_index,
            generator=generator,
        )
        out: Sample = {"image": image, "name": sample["name"]}
        if mask is not None:
            out["mask"] = mask
        return out


class CropCollate:
    """Collation for training on images of any sizes.

    A batch whose images share one size is stacked unchanged (the trainer's batched augmentation scales and
    crops it on the device). A batch of several sizes has each sample scaled and cropped to the crop size
    here, before stacking, with the same distribution (:class:`SampleCrop`), and is marked
    ``"cropped": True`` so that the device only flips it. Each sample's draws come from a generator seeded
    with the ``"seed"`` its :class:`SeededDataset` gave it, so they do not depend on worker processes and a
    resumed run draws the same crops; samples without one draw from ``generator``.
    """

    def __init__(self, crop: SampleCrop, generator: torch.Generator | None = None) -> None:
        self.crop = crop
        self.generator = generator

    def __call__(self, samples: Sequence[Sample]) -> Batch:
        if not samples:
            raise ValueError("collate: empty batch")
        seeds = [s.pop("seed", None) for s in samples]
        if len({tuple(s["image"].shape) for s in samples}) == 1:
            return collate(samples)
        cropped = []
        for sample, seed in zip(samples, seeds, strict=True):
            generator = self.generator
            if seed is not None:
                generator = torch.Generator()
                generator.manual_seed(int(seed))
            cropped.append(self.crop(sample, generator))
        batch = collate(cropped)
        batch["cropped"] = True
        return batch


class SeededDataset(Dataset[Sample]):
    """Wraps a dataset so that it is indexed by ``(index, seed)`` pairs (a sampler with ``seeded=True``)
    and each sample carries its ``"seed"``: the per-sample random draws of :class:`CropCollate`."""

    def __init__(self, dataset: Dataset[Sample]) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:
        # Transparent: `loader.dataset.names`, `.class_names`... read the wrapped dataset's.
        if name == "dataset":  # not set yet (unpickling in a worker): no recursion
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, key: tuple[int, int]) -> Sample:  # type: ignore[override]
        index, seed = key
        sample: Sample = {**self.dataset[index], "seed": seed}
        return sample


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn``: seed ``random`` and NumPy from the worker's torch seed (set by the loader)."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - seeds the legacy global RNG that user code may use


class EpochSampler(Sampler[Any]):
    """A shuffled order that depends only on ``(seed, epoch)`` and can start a pass part-way.

    Unlike ``RandomSampler`` with a generator (whose order depends on how many passes were drawn before),
    the permutation of epoch ``e`` is a pure function of ``seed`` and ``e``, so a resumed run can rebuild
    the exact order of the pass it was killed in and skip what it had consumed (:meth:`skip`).

    With ``seeded=True`` it yields ``(index, seed)`` pairs instead of indices, the seed a pure function of
    ``(seed, epoch, index)``: the per-sample draws of :class:`CropCollate` (through :class:`SeededDataset`).
    """

    def __init__(self, size: int, seed: int = 0, shuffle: bool = True, seeded: bool = False) -> None:
        self.size = int(size)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.seeded = seeded
        self.epoch = 0
        self._skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def skip(self, count: int) -> None:
        """Start the next pass after its first ``count`` indices (used once, then reset)."""
        self._skip = max(0, int(count))

    def order(self, epoch: int) -> list[int]:
        if not self.shuffle:
            return list(range(self.size))
        generator = torch.Generator()
        generator.manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.size, generator=generator).tolist()

    def __iter__(self) -> Iterator[Any]:
        start, self._skip = self._skip, 0
        order = self.order(self.epoch)[start:]
        if not self.seeded:
            return iter(order)
        base = (self.seed * 1_000_003 + self.epoch) * 1_000_033
        return iter((index, (base + index) % 2**62) for index in order)

    def __len__(self) -> int:
        return max(0, self.size - self._skip)


def build_loader(
    dataset: Dataset[Any],
    batch_size: int,
    shuffle: bool = True,
    num_workers: int = 0,
    seed: int = 0,
    drop_last: bool = False,
    pin_memory: bool = False,
    sampler: Sampler[Any] | None = None,
    persistent_workers: bool = False,
    crop: SampleCrop | None = None,
    pad: bool = False,
    ignore_index: int = IGNORE_INDEX,
) -> DataLoader[Any]:
    """A DataLoader with :func:`collate`, a generator seeded with ``seed`` and seeded workers.

    With ``drop_last`` the dataset must hold at least one full batch (ValueError otherwise). Images of
    several sizes: ``crop`` (training) scales and crops each sample of a mixed-size batch to its crop size
    (:class:`CropCollate`; needs the default shuffled sampler), ``pad`` (evaluation) pads the batch to its
    largest image and records each one's size (:func:`pad_collate`, masks padded with ``ignore_index``).
    """
    if crop is not None and pad:
        raise ValueError("build_loader: give crop (training) or pad (evaluation), not both")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    try:
        size = len(dataset)  # type: ignore[arg-type]
    except TypeError:
        size = None
    if drop_last and size is not None and size < batch_size:
        raise ValueError(
            f"drop_last=True with {size} samples and batch_size={batch_size} gives no batch; "
            "lower the batch size or set drop_last=False"
        )
    if crop is not None and (sampler is not None or not shuffle or size is None):
        raise ValueError(
            "build_loader: crop needs the default shuffled sampler (it draws the per-sample seeds)"
        )
    generator = torch.Generator()
    generator.manual_seed(seed)
    if sampler is None and shuffle and size is not None:
        # A per-epoch order that a resumed run can rebuild exactly (see EpochSampler).
        sampler = EpochSampler(size, seed=seed, seeded=crop is not None)
    collate_fn: Any = collate
    if crop is not None:
        dataset, collate_fn = SeededDataset(dataset), CropCollate(crop)
    elif pad:
        collate_fn = partial(pad_collate, ignore_index=ignore_index)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_fn,
        drop_last=drop_last,
        pin_memory=pin_memory,
        worker_init_fn=seed_worker,
        generator=generator,
        persistent_workers=persistent_workers and num_workers > 0,
    )


class InfiniteLoader:
    """Iterate a loader forever, starting a new pass whenever one ends.

    Before each pass, ``set_epoch(epoch)`` is called on the loader when it has one (Accelerate's
    prepared loaders), else on its sampler (or batch sampler's sampler) when that has one
    (DistributedSampler), so every pass is shuffled differently. An empty loader
    raises ValueError instead of looping forever. ``epoch`` counts the passes started (0-based).
    """

    def __init__(self, loader: Any, start_epoch: int = 0) -> None:
        self.loader = loader
        self.epoch = start_epoch - 1
        self.batches = 0  # batches yielded in the current pass
        self._skip_samples = 0
        self._resume_batches = 0
        self._iterator: Iterator[Any] | None = None

    def state_dict(self) -> dict[str, int]:
        """Where the stream stands: the pass and the batches consumed in it (for exact resume)."""
        return {"epoch": self.epoch, "batches": self.batches}

    def load_state_dict(self, state: dict[str, int], samples_per_batch: int) -> None:
        """Continue after the batches recorded in ``state``.

        ``samples_per_batch``: indices of the sampler one yielded batch consumes (batch size times the
        number of processes sharing the sampler). The loader's sampler must be an :class:`EpochSampler`.
        """
        if self._iterator is not None:
            raise RuntimeError("load_state_dict must be called before iterating")
        self.epoch = int(state["epoch"]) - 1
        self.batches = 0
        if state["epoch"] >= 0:
            self._skip_samples = int(state["batches"]) * samples_per_batch
            self._resume_batches = int(state["batches"])

    def _epoch_sampler(self) -> EpochSampler | None:
        candidates = [getattr(self.loader, "sampler", None)]
        batch_sampler = getattr(self.loader, "batch_sampler", None)
        candidates += [getattr(batch_sampler, "sampler", None)]
        candidates += [getattr(getattr(batch_sampler, "batch_sampler", None), "sampler", None)]
        return next((c for c in candidates if isinstance(c, EpochSampler)), None)

    def _set_epoch(self) -> None:
        if callable(getattr(self.loader, "set_epoch", None)):  # Accelerate's prepared loaders
            self.loader.set_epoch(self.epoch)
            return
        for owner in (self.loader, getattr(self.loader, "batch_sampler", None)):
            sampler = getattr(owner, "sampler", None)
            if sampler is not None and hasattr(sampler, "set_epoch"):
                sampler.set_epoch(self.epoch)
                return

    def _new_pass(self) -> Iterator[Any]:
        self.epoch += 1
        self.batches = 0
        self._set_epoch()
        if self._skip_samples:
            sampler = self._epoch_sampler()
            if sampler is None:
                raise RuntimeError("exact resume needs the loader's sampler to be an EpochSampler")
            sampler.skip(self._skip_samples)
            self.batches = self._resume_batches
            self._skip_samples = 0
        return iter(self.loader)

    def __iter__(self) -> InfiniteLoader:
        return self

    def __next__(self) -> Any:
        if self._iterator is None:
            self._iterator = self._new_pass()
        try:
            batch = next(self._iterator)
        except StopIteration:
            self._iterator = self._new_pass()
            try:
                batch = next(self._iterator)
            except StopIteration:
                raise ValueError("InfiniteLoader: the loader yields no batch") from None
        self.batches += 1
        return batch


def cycle(loader: Any) -> InfiniteLoader:
    """``InfiniteLoader(loader)``: an endless iterator over ``loader``'s batches."""
    return InfiniteLoader(loader)
