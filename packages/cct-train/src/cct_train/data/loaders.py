"""DataLoader helpers: dict collation, seeded loaders, and an endless loader for the labeled stream."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any, TypedDict

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from cct_train.data.base import Sample, SampleError


class _BatchRequired(TypedDict):
    image: torch.Tensor
    name: list[str]


class Batch(_BatchRequired, total=False):
    """A collated batch: ``image`` uint8 (B, 3, H, W), optional ``mask`` int64 (B, H, W), ``name`` list."""

    mask: torch.Tensor


def collate(samples: Sequence[Sample]) -> Batch:
    """Stack sample dicts into a :class:`Batch`.

    All images must share one size (use the datasets' ``resize=(H, W)``); either every sample has a
    ``"mask"`` or none does. Raises ValueError otherwise.
    """
    if not samples:
        raise ValueError("collate: empty batch")
    sizes = {tuple(s["image"].shape) for s in samples}
    if len(sizes) > 1:
        shown = ", ".join(f"{s['name']} {s['image'].shape[-1]}x{s['image'].shape[-2]}" for s in samples[:8])
        raise SampleError(
            f"one batch holds images of different sizes (WxH): {shown}. Batches need one size: set "
            "data.resize=[H, W] (resize=(H, W) for a data set), or run `cct data check`, which names every "
            "image whose size differs from the others"
        )
    batch: Batch = {"image": torch.stack([s["image"] for s in samples]), "name": [s["name"] for s in samples]}
    with_mask = sum("mask" in s for s in samples)
    if with_mask == len(samples):
        batch["mask"] = torch.stack([s["mask"] for s in samples])
    elif with_mask:
        raise ValueError("collate: some samples have a mask and some do not")
    return batch


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn``: seed ``random`` and NumPy from the worker's torch seed (set by the loader)."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - seeds the legacy global RNG that user code may use


class EpochSampler(Sampler[int]):
    """A shuffled order that depends only on ``(seed, epoch)`` and can start a pass part-way.

    Unlike ``RandomSampler`` with a generator (whose order depends on how many passes were drawn before),
    the permutation of epoch ``e`` is a pure function of ``seed`` and ``e``, so a resumed run can rebuild
    the exact order of the pass it was killed in and skip what it had consumed (:meth:`skip`).
    """

    def __init__(self, size: int, seed: int = 0, shuffle: bool = True) -> None:
        self.size = int(size)
        self.seed = int(seed)
        self.shuffle = shuffle
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

    def __iter__(self) -> Iterator[int]:
        start, self._skip = self._skip, 0
        return iter(self.order(self.epoch)[start:])

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
) -> DataLoader[Any]:
    """A DataLoader with :func:`collate`, a generator seeded with ``seed`` and seeded workers.

    With ``drop_last`` the dataset must hold at least one full batch (ValueError otherwise).
    """
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
    generator = torch.Generator()
    generator.manual_seed(seed)
    if sampler is None and shuffle and size is not None:
        # A per-epoch order that a resumed run can rebuild exactly (see EpochSampler).
        sampler = EpochSampler(size, seed=seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate,
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
