"""Loading trained models for evaluation and prediction (main path only)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from cct_train.common.checkpoint import CheckpointError, export_weights, load_checkpoint, load_weights
from cct_train.common.progress import progress_iter
from cct_train.config import Config, config_from_dict, load_config, upgrade_config
from cct_train.data.base import check_pixels
from cct_train.eval.evaluate import evaluate, predict_logits, prepare_images
from cct_train.models.cct import CCTModel
from cct_train.models.multidomain import MultiDomainCCT

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


@dataclass
class LoadedModel:
    """A model ready for inference. From a multi-domain checkpoint loaded with ``domain=``: that domain's
    standalone model, its classes and palette, and its single-domain view of the training config."""

    model: CCTModel
    class_names: list[str]
    palette: list[list[int]]
    config: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    domain: str | None = None
    #: Every domain of the checkpoint (empty for a single-domain checkpoint).
    domains: list[str] = field(default_factory=list)
    #: The (H, W) images were resized to in training (``data.resize``), which prediction uses by default;
    #: None: the model trained on images at their own size.
    input_size: tuple[int, int] | None = None


def default_palette(num_classes: int) -> list[list[int]]:
    """Distinct colours (the PASCAL VOC bit-interleaving scheme) for classes without a palette."""
    colours = []
    for index in range(num_classes):
        r = g = b = 0
        value = index
        for shift in range(7, -1, -1):
            r |= ((value >> 0) & 1) << shift
            g |= ((value >> 1) & 1) << shift
            b |= ((value >> 2) & 1) << shift
            value >>= 3
        colours.append([r, g, b])
    return colours


@dataclass
class _Stored:
    """What a .pt checkpoint or .safetensors export holds, read once."""

    path: Path
    state: dict[str, Any]
    model_config: dict[str, Any]
    class_names: Any
    palette: Any
    config: dict[str, Any] | None
    #: What the export recorded (``input_size`` metadata), or None to read it from ``config``.
    input_size: Any = None

    @property
    def domains(self) -> list[str]:
        return list(self.model_config.get("domains") or {})

    def size_of(self, domain: str | None) -> tuple[int, int] | None:
        """The training resize of the model (of ``domain``), from the export's metadata or the config."""
        size = self.input_size
        if size is None and self.config is not None:
            if self.domains:
                views = dict(config_from_dict(self.config, str(self.path)).domain_views())
                size = {name: view.data.resize for name, view in views.items()}
            else:
                size = (self.config.get("data") or {}).get("resize")
        if isinstance(size, dict):
            size = size.get(domain) if domain is not None else None
        return (int(size[0]), int(size[1])) if size else None


def _read(path: Path) -> _Stored:
    if path.suffix == ".safetensors":
        state, meta = load_weights(path)
        if "model_config" not in meta:
            raise CheckpointError(f"{path} has no model_config metadata: export it with cct-train")
        return _Stored(
            path,
            state,
            json.loads(meta["model_config"]),
            json.loads(meta.get("class_names", "null")),
            json.loads(meta.get("palette", "null")),
            None,
            json.loads(meta.get("input_size", "null")),
        )
    data = load_checkpoint(path)
    config = data.get("config")
    return _Stored(
        path,
        data["model"],
        data["model_config"],
        data.get("class_names"),
        data.get("palette"),
        # A checkpoint of an earlier version: its config's renamed keys under today's names.
        None if config is None else upgrade_config(config),
    )


def load_model(
    path: str | Path, device: str | torch.device = "cpu", domain: str | None = None
) -> LoadedModel:
    """A model from a training checkpoint (.pt) or exported weights (.safetensors).

    A multi-domain file needs ``domain``: the result is that domain's standalone ``CCTModel`` (shared
    encoder + its head). ``domain`` given for a single-domain file must be its only domain's name or None.
    """
    return _load(_read(Path(path)), device, domain)


_M = TypeVar("_M", CCTModel, MultiDomainCCT)


def _build(stored: _Stored, kind: type[_M]) -> _M:
    """The model a file's ``model_config`` describes, or a ValueError naming the file: the metadata of a
    shared model file is input like any other (a count of decoders over the bound is refused before any
    is built)."""
    try:
        return kind.from_config(stored.model_config)
    except (ValueError, TypeError, KeyError) as error:
        raise ValueError(
            f"{stored.path}: the model its metadata describes cannot be built ({error}); it was not written "
            "by cct-train as it is: export it again with `cct export`"
        ) from None


def _load(stored: _Stored, device: str | torch.device, domain: str | None) -> LoadedModel:
    path, domains, config = stored.path, stored.domains, stored.config
    if domains:
        if domain is None:
            raise ValueError(f"{path} is a multi-domain model: choose one of {domains} (--domain NAME)")
        if domain not in domains:
            raise ValueError(f"{path} has no domain {domain!r}; its domains are {domains}")
        multi = _build(stored, MultiDomainCCT)
        multi.load_state_dict(stored.state)
        single = multi.export_domain(domain)
        single.to(device).eval()
        if config is not None:
            config = dict(config_from_dict(config, str(path)).domain_views())[domain].to_dict()
        num_classes = single.num_classes
        return LoadedModel(
            model=single,
            class_names=(stored.class_names or {}).get(domain) or [str(i) for i in range(num_classes)],
            palette=(stored.palette or {}).get(domain) or default_palette(num_classes),
            config=config,
            domain=domain,
            domains=domains,
            input_size=stored.size_of(domain),
        )
    if domain is not None and (config is None or config.get("data", {}).get("dataset") != domain):
        raise ValueError(f"{path} is a single-domain model; leave --domain out")
    model = _build(stored, CCTModel)
    model.load_state_dict(stored.state)
    model.to(device).eval()
    num_classes = int(stored.model_config["num_classes"])
    return LoadedModel(
        model=model,
        class_names=stored.class_names or [str(i) for i in range(num_classes)],
        palette=stored.palette or default_palette(num_classes),
        config=config,
        input_size=stored.size_of(None),
    )


def evaluate_checkpoint(
    checkpoint: str | Path,
    *,
    config_path: str | Path | None = None,
    overrides: Sequence[str] = (),
    split: str | None = None,
    scales: Sequence[float] | None = None,
    flip: bool | None = None,
    device: str | None = None,
    window: tuple[int, int] | None = None,
    stride: tuple[int, int] | None = None,
    domain: str | None = None,
) -> dict[str, Any]:
    """Scores of a checkpoint on the validation split of its config (or of `config_path`).

    ``scales``, ``flip``, ``window`` and ``stride`` left None come from the config's ``eval`` section.
    A multi-domain checkpoint is evaluated on ``domain``, or on every domain when ``domain`` is None:
    ``{"miou": mean over domains, "domains": {name: scores}}``; ``overrides`` then address the
    multi-domain config (``domains.<name>.data.root=...``).
    """
    from cct_train.config import apply_overrides, override_keys

    stored = _read(Path(checkpoint))
    if config_path is not None:
        cfg = load_config(config_path, overrides)
    elif stored.config is not None:
        with_overrides = apply_overrides(stored.config, overrides)
        cfg = config_from_dict(with_overrides, str(checkpoint), override_keys(overrides))
    else:
        raise ValueError(f"{checkpoint} carries no data config: pass --config")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    score = partial(
        _evaluate, checkpoint=checkpoint, split=split, scales=scales, flip=flip, window=window, stride=stride
    )
    if stored.domains:
        views = dict(cfg.domain_views()) if cfg.multi_domain else {}
        names = stored.domains if domain is None else [domain]
        per_domain = {}
        for name in names:
            loaded = _load(stored, dev, name)
            if cfg.multi_domain and name not in views:
                raise ValueError(f"the config has no domain {name!r}; its domains are {list(views)}")
            per_domain[name] = score(loaded, views[name] if cfg.multi_domain else cfg)
        if domain is not None:
            return per_domain[domain]
        return {"miou": sum(s["miou"] for s in per_domain.values()) / len(per_domain), "domains": per_domain}
    return score(_load(stored, dev, domain), cfg)


def _evaluate(
    loaded: LoadedModel,
    cfg: Config,
    *,
    checkpoint: str | Path,
    split: str | None,
    scales: Sequence[float] | None,
    flip: bool | None,
    window: tuple[int, int] | None,
    stride: tuple[int, int] | None,
) -> dict[str, Any]:
    from cct_train.data import Normalize
    from cct_train.data.build import build_eval_loader

    loader, _, num_classes, class_names = build_eval_loader(cfg, split)
    normalize = Normalize(*loaded.model.normalization)  # as the model was trained, whatever cfg says
    if num_classes != loaded.model.num_classes:
        raise ValueError(
            f"the data has {num_classes} classes but the model in {checkpoint} predicts {loaded.model.num_classes}"
        )
    scores = evaluate(
        loaded.model,
        loader,
        num_classes,
        normalize=normalize,
        scales=scales if scales is not None else cfg.eval.scales,
        flip=flip if flip is not None else cfg.eval.flip,
        window=window if window is not None else cfg.eval.window,
        stride=stride if stride is not None else cfg.eval.stride,
        ignore_index=cfg.data.ignore_index,
        progress=True,
    )
    return scores.as_dict(class_names)


def _list_images(inputs: Path) -> list[Path]:
    if inputs.is_file():
        return [inputs]
    if not inputs.is_dir():
        raise FileNotFoundError(f"no such image or folder: {inputs}")
    files = sorted(p for p in inputs.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {inputs}")
    return files


def colorize(mask: np.ndarray, palette: Sequence[Sequence[int]]) -> np.ndarray:
    """(H, W) class indices -> (H, W, 3) uint8 colours (ignored / unknown indices black)."""
    table = np.zeros((256, 3), dtype=np.uint8)
    table[: len(palette)] = np.asarray(palette, dtype=np.uint8)
    return table[mask]


@dataclass(frozen=True)
class PlannedPrediction:
    """Where the prediction of one input image goes: its index mask and (optionally) its overlay."""

    image: Path
    mask: Path
    overlay: Path | None


def plan_predictions(
    inputs: str | Path, output: str | Path, *, overlay: bool = True, overwrite: bool = False
) -> list[PlannedPrediction]:
    """The input images and the files their predictions go to, checked so that nothing is lost.

    Each image's relative path under ``inputs`` is kept (``sub/a.png`` -> ``output/sub/a.png``); images
    of one folder that share a stem keep their extension apart (``a.png``, ``a.jpg`` -> ``a_png.png``,
    ``a_jpg.png``). Raises ValueError, before anything is written, when ``output`` is the input folder or
    lies inside it, when two predictions would land on one file, or when a file is already there (unless
    ``overwrite``: earlier predictions may be replaced; an input image never is).
    """
    inputs, output = Path(inputs), Path(output)
    files = _list_images(inputs)
    folder = inputs if inputs.is_dir() else inputs.parent
    out, src = output.resolve(), folder.resolve()
    if inputs.is_dir() and out.is_relative_to(src):
        where = "the input folder" if out == src else f"inside the input folder {inputs}"
        raise ValueError(
            f"-o {output} is {where}: the predictions would be written among the images (over them "
            f"when names meet) and read back as inputs next time. Choose an output folder outside {inputs}."
        )
    relative = [f.relative_to(inputs) if inputs.is_dir() else Path(f.name) for f in files]
    stems: dict[str, int] = {}
    for rel in relative:
        key = str(rel.with_suffix(""))
        stems[key] = stems.get(key, 0) + 1
    planned: list[PlannedPrediction] = []
    for file, rel in zip(files, relative, strict=True):
        base = rel.with_suffix("")
        if stems[str(base)] > 1:  # a.png and a.jpg side by side: keep them apart
            base = base.with_name(f"{base.name}_{rel.suffix.lstrip('.').lower()}")
        mask = output / base.parent / f"{base.name}.png"
        planned.append(
            PlannedPrediction(file, mask, mask.with_name(f"{base.name}_overlay.png") if overlay else None)
        )
    _check_targets(planned, {f.resolve() for f in files}, output, overwrite)
    return planned


def _check_targets(
    planned: list[PlannedPrediction], sources: set[Path], output: Path, overwrite: bool
) -> None:
    """Every output file distinct, none an input image, none already there unless ``overwrite``."""
    owners: dict[str, Path] = {}
    existing: list[Path] = []
    for item in planned:
        for target in (item.mask, item.overlay):
            if target is None:
                continue
            key = str(target.resolve())
            if key in owners:
                raise ValueError(
                    f"the predictions of {owners[key]} and {item.image} would both be written to {target}; "
                    "rename one of them"
                )
            owners[key] = item.image
            if target.resolve() in sources:
                raise ValueError(f"the prediction of {item.image} would overwrite the input image {target}")
            if target.exists():
                existing.append(target)
    if existing and not overwrite:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise ValueError(
            f"{existing[0]}{more} already exist in {output}: pass --overwrite to replace earlier "
            "predictions, or choose another output folder with -o"
        )


@torch.no_grad()
def predict_folder(
    checkpoint: str | Path,
    inputs: str | Path,
    output: str | Path,
    *,
    resize: tuple[int, int] | str | None = "trained",
    overlay: bool = True,
    device: str | None = None,
    domain: str | None = None,
    overwrite: bool = False,
) -> int:
    """Write `<name>.png` index masks (and `<name>_overlay.png`) for every image under `inputs`
    (with a multi-domain model: in the label space of ``domain``), each at its image's own size, at the same
    relative path under ``output`` (:func:`plan_predictions`: never into the input folder, never over an
    input, over earlier predictions only with ``overwrite``). Returns the number of images predicted.

    ``resize``: the (H, W) the model sees; ``"trained"`` (default): the training ``data.resize`` stored in
    the checkpoint (:attr:`LoadedModel.input_size`), or each image's own size when training used its own;
    None: each image's own size.
    """
    from cct_train.data import Normalize

    planned = plan_predictions(inputs, output, overlay=overlay, overwrite=overwrite)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    loaded = load_model(checkpoint, dev, domain=domain)
    if resize == "trained":
        resize = loaded.input_size
        if resize is not None:
            from cct_train.common.progress import console

            console.print(
                f"predicting at {resize[0]}x{resize[1]}, the training data.resize stored in {checkpoint} "
                "(--size HxW or --size own to change it); masks are written at each image's own size",
                highlight=False,
                soft_wrap=True,
            )
    if isinstance(resize, str):
        raise ValueError(f'resize must be (H, W), None or "trained", got {resize!r}')
    normalize = Normalize(*loaded.model.normalization).to(dev)
    for item in progress_iter(planned, "predicting"):
        file = item.image
        try:
            with Image.open(file) as opened:
                check_pixels(opened, file)  # before decoding: a 100 MP photo is refused, not decoded
                image = opened.convert("RGB")
        except OSError as error:
            raise ValueError(f"cannot read image {file}: {error}") from None
        array = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)[None].to(dev)
        height, width = array.shape[-2:]
        images = prepare_images(array, normalize)
        if resize is not None:
            images = F.interpolate(images, size=resize, mode="bilinear", align_corners=False)
        # At the (resized) input's size, the padding of the last feature cell cropped (fit_logits); only an
        # explicit --size is a genuine change of resolution, resized back to the image.
        probs = predict_logits(loaded.model, images)
        if probs.shape[-2:] != (height, width):
            probs = F.interpolate(probs, size=(height, width), mode="bilinear", align_corners=False)
        mask = probs.argmax(1)[0].to(torch.uint8).cpu().numpy()
        item.mask.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask).save(item.mask)
        if item.overlay is not None:
            colours = colorize(mask, loaded.palette)
            blended = (0.5 * np.asarray(image, dtype=np.float32) + 0.5 * colours).astype(np.uint8)
            Image.fromarray(blended).save(item.overlay)
    return len(planned)


def export_model(checkpoint: str | Path, output: str | Path, *, domain: str | None = None) -> Path:
    """Inference weights (.safetensors with the model config and classes as metadata) from a checkpoint.

    From a multi-domain checkpoint, ``domain`` writes a standalone single-domain model (shared encoder +
    that domain's decoders) that `cct eval` / `cct predict` / ``load_model`` use like any other; without
    ``domain`` the whole multi-domain model is written.
    """
    output = Path(output)
    if output.suffix != ".safetensors":
        raise ValueError(f"the export is a .safetensors file, got {output}")
    stored = _read(Path(checkpoint))
    if domain is None and stored.domains:
        model: torch.nn.Module = MultiDomainCCT.from_config(stored.model_config)
        model.load_state_dict(stored.state)
        config: dict[str, Any] = stored.model_config
        class_names, palette = stored.class_names, stored.palette
    else:
        loaded = _load(stored, "cpu", domain)
        model, config = loaded.model, loaded.model.config
        class_names, palette = loaded.class_names, loaded.palette
    sizes = stored.input_size
    if sizes is None and stored.config is not None and domain is None and stored.domains:
        sizes = {name: stored.size_of(name) for name in stored.domains}
    input_size = sizes if domain is None and stored.domains else stored.size_of(domain)
    export_weights(output, model, config, class_names, palette, input_size)
    return output
