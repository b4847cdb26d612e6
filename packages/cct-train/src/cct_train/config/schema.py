"""The training configuration's sections as validated data (pydantic): every key, its default and its
checks, the perturbation names included (against the cct_perturb registry), so a typo fails at load time.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import Field, field_validator, model_validator

from cct_perturb import PAPER_DECODERS, PERTURBATIONS
from cct_train.common.limits import MAX_AUX_DECODERS
from cct_train.config.base import StrictSection

#: The paper's final "CCT" setting, 30 auxiliary decoders: cct_perturb's PAPER_DECODERS (one source), under
#: the name this package has always exported.
PAPER_PERTURBATIONS: dict[str, int] = PAPER_DECODERS


#: The paper's seven types with fewer decoders (its 6:6:6:6:2:2:2 proportions scaled to 11): the CPU budgets'
#: full CCT (`cct demo`, the `cpu` bench workloads, the CPU study presets). Like PAPER_PERTURBATIONS it lists
#: the paper's seven only: a perturbation registered later needs no entry here; it trains where a config
#: names it (`model.perturbations: {mine: 2}`).
CPU_PERTURBATIONS: dict[str, int] = {
    "feature_noise": 2,
    "feature_drop": 2,
    "guided_cutout": 2,
    "dropout": 2,
    "context_mask": 1,
    "object_mask": 1,
    "vat": 1,
}


#: ``csv`` (cct-train's own) and every tracker Accelerate integrates (``accelerate.utils.LoggerType``);
#: the packages of the others are checked when training starts (``engine.trackers.check_trackers``).
Tracker = Literal[
    "csv", "tensorboard", "wandb", "mlflow", "comet_ml", "aim", "clearml", "dvclive", "swanlab", "trackio"
]


def _known_perturbation(name: str) -> type[Any]:
    if name not in PERTURBATIONS:
        close = difflib.get_close_matches(name, list(PERTURBATIONS), n=3)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise ValueError(f"unknown perturbation {name!r}{hint} Known: {', '.join(PERTURBATIONS)}")
    return PERTURBATIONS[name]


def check_perturbations(value: dict[str, int]) -> dict[str, int]:
    """``{name: K}`` with every name in the cct_perturb registry and K >= 0; K = 0 entries dropped.

    At load time, so that a typo fails in a second instead of after the data check decoded every image.
    """
    for name, count in value.items():
        _known_perturbation(name)
        if count < 0:
            raise ValueError(f"perturbations.{name}: K must be >= 0, got {count}")
    total = sum(value.values())
    if total > MAX_AUX_DECODERS:
        raise ValueError(
            f"{total} auxiliary decoders in all ({', '.join(f'{n}: {k}' for n, k in value.items())}); at most "
            f"{MAX_AUX_DECODERS} are built (the paper's CCT uses 30): lower the counts"
        )
    return {name: count for name, count in value.items() if count > 0}


def check_perturbation_kwargs(value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{name: {argument: value}}`` with known perturbation names and constructor arguments."""
    for name, kwargs in value.items():
        accepted = inspect.signature(_known_perturbation(name)).parameters
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown:
            raise ValueError(f"{name} takes no argument {unknown}; it takes {', '.join(accepted)}")
    return value


class ModelConfig(StrictSection):
    renamed_keys: ClassVar[Mapping[str, str]] = {
        "consistency": "consistency_loss",
        "confidence": "consistency_confidence",
    }

    encoder: str = "timm:resnet50"
    pretrained: bool = False
    #: A local state dict (.pth / .pt / .safetensors) or "package:<name>", an installed weights package
    #: (`cct weights list`).
    weights: str | None = None
    output_stride: Literal[8, 16, 32] = 8
    psp_channels: int = Field(512, gt=0)
    perturbations: dict[str, int] = Field(default_factory=lambda: dict(PAPER_PERTURBATIONS))
    perturbation_kwargs: dict[str, dict[str, Any]] = Field(default_factory=dict)
    background: list[int] = Field(default_factory=lambda: [0])
    #: d(main, aux) of Lu: the kind of consistency loss (cct_losses.consistency_loss).
    consistency_loss: Literal["mse", "kl", "js"] = "mse"
    #: Confidence masking of Lu (the original code's option, off there by default): the unlabeled pixels whose
    #: main max-probability is below this are left out. None: every pixel, as the paper.
    consistency_confidence: float | None = Field(None, ge=0, le=1)
    #: Input normalisation ``(x - mean) / std`` of [0, 1] RGB images; None: what the encoder's pretrained
    #: weights expect (timm's ``pretrained_cfg``, else ImageNet's), see ``models.encoders.resolve_normalization``.
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    #: Labeled and unlabeled images through the encoder in ONE batch (one pass; BatchNorm statistics over
    #: both). False: two passes, as the original code (BatchNorm sees each batch alone).
    concat_batches: bool = True
    #: The decoders' sub-pixel ReLUs (see UpsampleDecoder): the paper has one in every block; by default
    #: the last block's is dropped (unconstrained logits). decoder_hidden_relu: false makes the decoders
    #: linear, which keeps them from losing channels to dead ReLUs under a high head learning rate.
    decoder_final_relu: bool = False
    decoder_hidden_relu: bool = True

    @field_validator("weights", mode="before")
    @classmethod
    def _weights(cls, value: Any) -> Any:
        # A path, or "package:<name>": an installed weights package (cct_train.models.weights), kept as text.
        return str(value) if isinstance(value, Path) else value

    @field_validator("std")
    @classmethod
    def _positive_std(cls, value: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if value is not None and min(value) <= 0:
            raise ValueError(f"std must be positive, got {value}")
        return value

    @model_validator(mode="after")
    def _mean_std(self) -> ModelConfig:
        if (self.mean is None) != (self.std is None):
            raise ValueError("give model.mean and model.std together (or neither: the encoder's own)")
        if self.mean is not None and self.std is not None and len(self.mean) != len(self.std):
            raise ValueError(f"model.mean {self.mean} and model.std {self.std} differ in length")
        return self

    @field_validator("perturbations")
    @classmethod
    def _non_negative(cls, value: dict[str, int]) -> dict[str, int]:
        return check_perturbations(value)

    @field_validator("perturbation_kwargs")
    @classmethod
    def _known_kwargs(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return check_perturbation_kwargs(value)


class SplitConfig(StrictSection):
    """Which training images are labeled: `n_labeled` drawn with `seed`, or explicit lists."""

    n_labeled: int | None = Field(None, ge=1)
    seed: int = 0
    labeled_list: Path | None = None
    unlabeled_list: Path | None = None

    @model_validator(mode="after")
    def _one_way(self) -> SplitConfig:
        if self.labeled_list is not None and self.n_labeled is not None:
            raise ValueError("give either split.n_labeled or split.labeled_list, not both")
        return self


class DataConfig(StrictSection):
    dataset: str = "camvid"
    root: Path | None = None
    num_classes: int | None = Field(None, ge=1)
    ignore_index: int = 255
    options: dict[str, Any] = Field(default_factory=dict)
    train_split: str = "train"
    val_split: str | None = "val"
    unlabeled_root: Path | None = None
    #: Pseudo-labels of the unlabeled images (index PNGs named like the samples, 255 = ignore), e.g. written
    #: by `cct pseudo-labels`: with them the auxiliary decoders also learn from weak labels (paper 3.3).
    pseudo_labels: Path | None = None
    split: SplitConfig = Field(default_factory=SplitConfig)
    resize: tuple[int, int] | None = None
    crop_size: tuple[int, int] = (320, 320)
    scale_range: tuple[float, float] = (0.5, 2.0)
    hflip: bool = True
    batch_size: int = Field(8, ge=1)
    unlabeled_batch_size: int | None = Field(None, ge=1)
    val_batch_size: int = Field(4, ge=1)
    num_workers: int = Field(2, ge=0)
    #: Data checks at the start of training (`cct data check`): "full" decodes every file, "quick" only
    #: checks lists and files, "off" skips them.
    check: Literal["full", "quick", "off"] = "full"
    #: Leave out samples that fail the check (counted in a warning) instead of stopping.
    skip_bad_samples: bool = False

    @field_validator("check", mode="before")
    @classmethod
    def _check_word(cls, value: Any) -> Any:
        # `check: off` in a YAML file arrives as False (YAML 1.1 booleans).
        return "off" if value is False else value

    @field_validator("scale_range")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0 < value[0] <= value[1]:
            raise ValueError(f"scale_range must satisfy 0 < low <= high, got {value}")
        return value

    @field_validator("crop_size", "resize")
    @classmethod
    def _positive(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and min(value) < 1:
            raise ValueError(f"sizes must be positive, got {value}")
        return value


class OptimConfig(StrictSection):
    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.01, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(1e-4, ge=0)
    backbone_lr_factor: float = Field(0.1, gt=0)
    poly_power: float = Field(0.9, ge=0)
    #: Linear learning-rate warm-up before the poly decay: a fraction of training (<= 1) or iterations (> 1).
    warmup: float = Field(0.0, ge=0, description="fraction of training (<= 1) or iterations (> 1)")

    def warmup_steps(self, total: int) -> int:
        """The warm-up in optimizer steps for a run of ``total`` of them."""
        return round(self.warmup * total) if self.warmup <= 1 else int(self.warmup)


class UnsupervisedWeightConfig(StrictSection):
    """w_u(t), the weight of Lu at step t: from 0 up to ``lambda_u`` along a ramp (``ConsistencyWeight``)."""

    renamed_keys: ClassVar[Mapping[str, str]] = {"weight": "lambda_u"}

    #: lambda_u, the weight of Lu once ramped up (the paper: 30).
    lambda_u: float = Field(30.0, ge=0)
    #: The ramp's length: a fraction of training (0 < rampup <= 1) or a number of iterations (0 or > 1).
    rampup: int | float = Field(0.1, ge=0, description="fraction of training (<= 1) or iterations (> 1)")
    #: The ramp's shape (cct_losses.RAMPS): sigmoid exp(-5 (1 - t)^2) as the paper, linear, log or cosine.
    schedule: Literal["sigmoid", "linear", "log", "cosine"] = "sigmoid"

    @field_validator("rampup")
    @classmethod
    def _rampup(cls, value: int | float) -> int | float:
        # One type per meaning, as cct_losses.ConsistencyWeight reads it: an int counts iterations, a float
        # is a fraction. YAML and --set give 150 or 150.0 alike, so the value decides.
        if value == 0 or value > 1:
            if value != int(value):
                raise ValueError(f"above 1 the ramp-up counts iterations: a whole number, got {value}")
            return int(value)
        return float(value)


class PhotometricConfig(StrictSection):
    """The strong view's colour perturbations: the arguments of ``cct_perturb.image.photometric``, its
    defaults (per-sample colour jitter, grayscale and Gaussian blur on [0, 1] images)."""

    brightness: float = Field(0.5, ge=0)
    contrast: float = Field(0.5, ge=0)
    saturation: float = Field(0.5, ge=0)
    hue: float = Field(0.25, ge=0, le=0.5)
    p_jitter: float = Field(0.8, ge=0, le=1)
    p_grayscale: float = Field(0.2, ge=0, le=1)
    p_blur: float = Field(0.5, ge=0, le=1)
    blur_sigma: tuple[float, float] = (0.1, 2.0)

    @field_validator("blur_sigma")
    @classmethod
    def _sigma(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0 < value[0] <= value[1]:
            raise ValueError(f"blur_sigma must satisfy 0 < low <= high, got {value}")
        return value


class CutMixConfig(StrictSection):
    """The strong view's CutMix: with probability ``p`` per image, a box of area fraction ~ U(scale) and
    aspect ratio ~ log-U(ratio) is taken from another image of the batch (``cct_perturb.image.cutmix_masks``);
    the target is mixed with the same boxes. A bare number is ``p`` (``cutmix: 0.5``); 0 turns it off."""

    p: float = Field(0.5, ge=0, le=1)
    scale: tuple[float, float] = (0.02, 0.4)
    ratio: tuple[float, float] = (0.3, 1 / 0.3)

    @model_validator(mode="before")
    @classmethod
    def _bare_probability(cls, value: Any) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return {"p": value}
        return value

    @field_validator("scale", "ratio")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0 < value[0] <= value[1]:
            raise ValueError(f"must satisfy 0 < low <= high, got {value}")
        return value


class StrongViewConfig(StrictSection):
    """How the strong view is made from the weak one: photometric perturbations, then CutMix."""

    photometric: PhotometricConfig = Field(default_factory=PhotometricConfig)
    cutmix: CutMixConfig = Field(default_factory=CutMixConfig)


#: Keys of ``train.unlabeled`` that only mean something with ``views: weak-strong``.
_CROSS_VIEW_KEYS = ("confidence", "main_on_strong", "main_weight", "strong", "aux_view")


class UnlabeledConfig(StrictSection):
    """What the unlabeled images are trained with.

    ``views: same`` (default, the paper's CCT): the main decoder's prediction and the K perturbed auxiliary
    predictions are of the SAME augmented image. ``views: weak-strong`` (cross-view CCT, issue #39): the
    target is the main decoder's prediction on the weak view (the geometric augmentation only), detached;
    the strong view is that weak view under ``strong`` (photometric, then CutMix, the target mixed alike),
    encoded once more; the auxiliary decoders take CCT's feature perturbations of the strong view's features
    and learn the target (``train.unsupervised_weight``, ``model.consistency_loss``); with ``main_on_strong``
    the main decoder on the strong view learns ``argmax(target)`` by cross-entropy over the confident pixels
    (FixMatch / UniMatch), weighted ``main_weight`` ramped like lambda_u (``train.unsupervised_weight``).
    With no auxiliary decoders (``model.perturbations: {}``) this is a FixMatch-style baseline.

    ``aux_view: weak`` moves the auxiliary decoders to the weak view: there they run the paper's CCT (the
    target is the main prediction on the same weak view, unmixed; ``model.consistency_confidence`` masks it,
    as with ``views: same``), and the main decoder still learns the weak view's pseudo-label on the strong
    view: the sum of the paper's CCT and the FixMatch-style term (UniMatch also perturbs the weak view's
    features). The weak view is then encoded with a graph (Lu trains the encoder through it).
    """

    views: Literal["same", "weak-strong"] = "same"
    #: The weak-view target's confidence threshold: pixels whose max probability is below it are left out
    #: of the auxiliary decoders' loss and of the main decoder's strong-view loss. None: every pixel.
    confidence: float | None = Field(0.95, ge=0, le=1)
    #: The main decoder also learns the weak-view pseudo-label on the strong view (weak-strong only).
    main_on_strong: bool = True
    #: That loss's weight once ramped up (the ramp of train.unsupervised_weight: its rampup and schedule).
    main_weight: float = Field(1.0, ge=0)
    strong: StrongViewConfig = Field(default_factory=StrongViewConfig)
    #: Which view's features the auxiliary decoders perturb (weak-strong only): ``strong`` (cross-view
    #: CCT: they learn the weak view's target on the strong view) or ``weak`` (the paper's CCT on the weak
    #: view, beside the main decoder's strong-view loss).
    aux_view: Literal["strong", "weak"] = "strong"

    @model_validator(mode="after")
    def _views(self) -> UnlabeledConfig:
        if self.views == "same":
            # Compared with the defaults, not by which keys were written: a saved config (every key
            # dumped) loads again; a setting that would be silently unused is named.
            fields = type(self).model_fields
            given = [
                key
                for key in _CROSS_VIEW_KEYS
                if getattr(self, key) != fields[key].get_default(call_default_factory=True)
            ]
            if given:
                raise ValueError(
                    f"train.unlabeled.{', '.join(given)} only apply to views: weak-strong; set "
                    "train.unlabeled.views=weak-strong or remove them (views: same is the paper's CCT)"
                )
        return self

    @property
    def cross_view(self) -> bool:
        return self.views == "weak-strong"

    @property
    def aux_on_weak(self) -> bool:
        """Weak-strong views with the auxiliary decoders on the weak view (``aux_view: weak``)."""
        return self.cross_view and self.aux_view == "weak"


class TrainConfig(StrictSection):
    renamed_keys: ClassVar[Mapping[str, str]] = {"consistency": "unsupervised_weight"}

    mode: Literal["cct", "supervised"] = "cct"
    iterations: int = Field(10_000, ge=1)
    optimizer: OptimConfig = Field(default_factory=OptimConfig)
    supervised_loss: Literal["ce", "abce"] = "ce"
    abce_ramp: float = Field(0.4, gt=0, le=1)
    unsupervised_weight: UnsupervisedWeightConfig = Field(default_factory=UnsupervisedWeightConfig)
    weak_weight: float = Field(0.4, ge=0)
    #: The original ramps the weak-label weight with the unsupervised weight: w_w * w_u(t) / lambda_u.
    weak_rampup: bool = True
    #: "auto": bf16 autocast where bf16 is native (CUDA compute capability >= 8.0, CPUs with AVX512-BF16 /
    #: AMX / Arm BF16), float32 elsewhere (cct_train.engine.hardware.resolve_precision); "no": float32.
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "no"
    gradient_accumulation: int = Field(1, ge=1)
    eval_every: int = Field(1000, ge=0)
    checkpoint_every: int = Field(1000, ge=0)
    log_every: int = Field(20, ge=1)
    trackers: list[Tracker] = Field(default_factory=lambda: list[Tracker](["csv"]))
    #: Validation images drawn into a grid (image, ground truth, prediction) and logged to the trackers that
    #: take images (csv: PNG files under logs/images/) at each validation; 0: none.
    log_images: int = Field(4, ge=0)
    max_grad_norm: float | None = Field(None, gt=0)
    #: Steps with a NaN / infinite loss are skipped; this many in a row stop training (0: no check, which
    #: also saves the one scalar host sync per step the check costs).
    nonfinite_patience: int = Field(5, ge=0)
    #: After the last step, re-estimate BatchNorm's running statistics as a plain average over this many
    #: augmented training batches (labeled, and for CCT unlabeled, in turn), weights frozen ("precise BN");
    #: the final validation and the exported weights use them. 0 keeps the statistics training left, an
    #: exponential average over its last ~10 batches, which with small batches is a draw of its own.
    precise_bn: int = Field(0, ge=0)
    #: Multi-domain runs: "alternate" steps one domain per iteration (labeled + unlabeled batch of that
    #: domain, as the paper), "mix" takes a batch of every domain in each step and sums their losses.
    domain_sampling: Literal["alternate", "mix"] = "alternate"
    #: The unlabeled images' objective: the paper's CCT (``views: same``, default) or cross-view CCT.
    unlabeled: UnlabeledConfig = Field(default_factory=UnlabeledConfig)


class EvalConfig(StrictSection):
    """How `cct eval` evaluates by default (its options override these): the paper's single scale, or
    multi-scale + flip, optionally with a sliding window for large images (Cityscapes: 512x1024)."""

    scales: list[float] = Field(default_factory=lambda: [1.0])
    flip: bool = False
    #: Sliding-window size (H, W); None predicts whole images.
    window: tuple[int, int] | None = None
    #: Window stride (H, W); None: two thirds of the window (one third overlap).
    stride: tuple[int, int] | None = None

    @field_validator("scales")
    @classmethod
    def _scales(cls, value: list[float]) -> list[float]:
        if not value or any(s <= 0 for s in value):
            raise ValueError(f"scales must be positive and at least one, got {value}")
        return value

    @field_validator("window", "stride")
    @classmethod
    def _sizes(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and min(value) < 1:
            raise ValueError(f"sizes must be positive, got {value}")
        return value


class DomainConfig(StrictSection):
    """One domain of a multi-domain run (paper 3.4): its data, its label space and its decoders.

    The encoder (backbone + PSP) is shared by every domain; each domain has its own main decoder and
    auxiliary decoders. Keys left ``None`` take the run-wide value (``model.*`` /
    ``train.unsupervised_weight.lambda_u`` / ``eval``).
    """

    renamed_keys: ClassVar[Mapping[str, str]] = {"consistency_weight": "lambda_u"}

    #: Used in logs, checkpoints, ``cct predict --domain NAME`` and ``--set domains.NAME.key=value``.
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    data: DataConfig
    perturbations: dict[str, int] | None = None
    perturbation_kwargs: dict[str, dict[str, Any]] | None = None
    background: list[int] | None = None
    #: lambda_u of this domain (the weight of its Lu after the ramp-up).
    lambda_u: float | None = Field(None, ge=0)
    #: Weight of this domain's loss in the total (mixed steps) or in its own steps (alternating).
    loss_weight: float = Field(1.0, gt=0)
    eval: EvalConfig | None = None

    @field_validator("perturbations")
    @classmethod
    def _non_negative(cls, value: dict[str, int] | None) -> dict[str, int] | None:
        return None if value is None else check_perturbations(value)

    @field_validator("perturbation_kwargs")
    @classmethod
    def _known_kwargs(cls, value: dict[str, dict[str, Any]] | None) -> dict[str, dict[str, Any]] | None:
        return None if value is None else check_perturbation_kwargs(value)


class ExperimentConfig(StrictSection):
    name: str = "cct"
    output_dir: Path = Path("runs/cct")
    seed: int = 0


class Config(StrictSection):
    experiment: ExperimentConfig = Field(default_factory=ExperimentConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    #: Several domains trained together (paper 3.4); empty: the single domain of ``data``.
    domains: list[DomainConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        if self.domains and "data" in self.model_fields_set and self.data != DataConfig():
            raise ValueError("give either data (one domain) or domains (several), not both")
        names = [d.name for d in self.domains]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"domain names must be unique, repeated: {repeated}")
        parts = [(f"domains.{d.name}.data", d.data) for d in self.domains] or [("data", self.data)]
        for key, data in parts:
            _split_lists_under_root(data)
            _check_crop(key, data)
        unlabeled = self.train.unlabeled
        if (
            unlabeled.cross_view
            and not unlabeled.aux_on_weak
            and self.model.consistency_confidence is not None
        ):
            raise ValueError(
                "model.consistency_confidence masks the same-view CCT loss; with train.unlabeled.views: "
                "weak-strong the weak-view target's threshold is train.unlabeled.confidence: set that one and "
                "model.consistency_confidence=null (or train.unlabeled.aux_view=weak, where the auxiliary decoders "
                "run the same-view loss)"
            )
        return self

    @property
    def supervised_only(self) -> bool:
        """No unlabeled image is used: ``train.mode: supervised``, or no domain that learns from them
        (:attr:`learns_from_unlabeled`)."""
        if self.domains:
            return not any(view.learns_from_unlabeled for _, view in self.domain_views())
        return not self.learns_from_unlabeled

    @property
    def learns_from_unlabeled(self) -> bool:
        """Whether this (single-domain) config trains on unlabeled images: CCT with auxiliary decoders, or
        cross-view training whose main decoder learns from the strong view (the FixMatch-style baseline
        has no auxiliary decoder)."""
        if self.train.mode == "supervised":
            return False
        unlabeled = self.train.unlabeled
        return bool(self.model.perturbations) or (unlabeled.cross_view and unlabeled.main_on_strong)

    @property
    def multi_domain(self) -> bool:
        return bool(self.domains)

    def domain_views(self) -> list[tuple[str, Config]]:
        """Each domain as a single-domain config: its data, decoders, consistency weight and eval settings.

        A single-domain config gives one view, itself, named after its data set. The views build data
        (``build_data``), run data checks and dry runs exactly as a single-domain run would.
        """
        if not self.domains:
            return [(self.data.dataset, self)]
        views = []
        for domain in self.domains:
            own = {
                key: getattr(domain, key)
                for key in ("perturbations", "perturbation_kwargs", "background")
                if getattr(domain, key) is not None
            }
            # Sections built anew from their values (validated again), never written into.
            model = _revalidated(self.model, own)
            train = self.train
            if domain.lambda_u is not None:
                weight = _revalidated(train.unsupervised_weight, {"lambda_u": domain.lambda_u})
                train = _revalidated(train, {"unsupervised_weight": weight})
            view = Config.model_construct(
                experiment=self.experiment.model_copy(deep=True),
                model=model,
                data=domain.data.model_copy(deep=True),
                train=train.model_copy(deep=True),
                eval=(domain.eval or self.eval).model_copy(deep=True),
                domains=[],
            )
            views.append((domain.name, view))
        return views

    def to_dict(self) -> dict[str, Any]:
        # A multi-domain config has no top-level data section of its own: leave the unused default out.
        return self.model_dump(mode="json", exclude={"data"} if self.domains else None)


_S = TypeVar("_S", bound=StrictSection)


def _revalidated(section: _S, update: Mapping[str, Any]) -> _S:
    """A new ``section`` with ``update`` over its values, validated as if read from a file (its checks run
    again); ``section`` itself is left as it was."""
    copy = section.model_copy(deep=True)  # nothing of the result is shared with ``section``
    values = {name: getattr(copy, name) for name in type(section).model_fields}
    return type(section).model_validate({**values, **update})


def _check_crop(key: str, data: DataConfig) -> None:
    if data.resize is not None and data.scale_range[1] < 1.0:
        resized_h, resized_w = data.resize
        max_h, max_w = resized_h * data.scale_range[1], resized_w * data.scale_range[1]
        if max_h < data.crop_size[0] or max_w < data.crop_size[1]:
            raise ValueError(
                f"{key}.crop_size {data.crop_size} is larger than any scaled image "
                f"({max_h:.0f}x{max_w:.0f}); lower it or raise {key}.scale_range"
            )


def _split_lists_under_root(data: DataConfig) -> None:
    """Relative split lists that do not exist from the working directory are files under ``data.root``
    (e.g. ``splits/1464/labeled.txt`` as written by `cct data prepare`), so a config names them once for
    every copy of the data set."""
    if data.root is None:
        return
    split = data.split
    under_root = {}
    for key in ("labeled_list", "unlabeled_list"):
        path: Path | None = getattr(split, key)
        if path is not None and not path.is_absolute() and not path.exists():
            under_root[key] = Path(data.root) / path
    if under_root:
        data.split = _revalidated(split, under_root)  # a validated assignment: a new section
