"""The Accelerate-driven CCT training loop (CPU, one GPU, or many through `accelerate launch`).

Accelerate does device placement, mixed precision, gradient accumulation, DDP and tracking; this module
adds what is specific to CCT: a labeled and an unlabeled stream per step, on-device augmentation, the
consistency-weight ramp-up and the poly learning-rate schedule, periodic validation and checkpoints.

Reading order: ``Trainer.__init__`` calls the builders (end of this module) in turn; ``Trainer._fit`` is the
loop; ``_next_batches`` / ``_inputs`` turn each domain's loader batches into one
:class:`~cct_train.models.batch.TrainBatch`, and ``train_step`` is the optimisation step. One domain is a
multi-domain run of one: the same loop, batches and model call (``model(batches={name: batch})``); only
the names in logs and checkpoints say whether there are several (:meth:`DomainRun.key`).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from accelerate.utils import (
    DistributedDataParallelKwargs,
    ProjectConfiguration,
    broadcast_object_list,
    gather_object,
    set_seed,
)
from torch import nn
from torch.utils.data import DataLoader

from cct_losses import ConsistencyWeight
from cct_train.common.atomic import atomic_write_text
from cct_train.common.checkpoint import (
    CheckpointError,
    export_weights,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from cct_train.common.progress import TrainingProgress, console, training_progress
from cct_train.common.rundir import (
    RunFolderError,
    RunFolderLock,
    clear_run,
    refuse_to_replace,
    remove_partial_files,
)
from cct_train.config import Config, save_config, upgrade_config
from cct_train.data import InfiniteLoader, cycle
from cct_train.data.build import TrainingData, TrainTransform, build_data
from cct_train.engine.batchnorm import has_batchnorm, recalibrate_batchnorm
from cct_train.engine.hardware import PrecisionChoice, resolve_precision
from cct_train.engine.schedules import build_optimizer, consistency_schedule, poly_schedule, poly_scheduler
from cct_train.engine.signals import NonFiniteLossError, StopRequest, TrainingInterrupted, stop_on_signals
from cct_train.engine.trackers import CSVTracker, check_trackers, log_images
from cct_train.eval.evaluate import evaluate
from cct_train.models.batch import TrainBatch
from cct_train.models.cct import CCTModel
from cct_train.models.encoders import check_encoder_input
from cct_train.models.factory import build_model
from cct_train.models.multidomain import DomainModel, MultiDomainCCT
from cct_train.objectives.losses import SupervisedTerm

#: Re-exported: what this module defined before issue #16 (`cct_train.trainer.build_model` etc.).
__all__ = [
    "DomainRun",
    "NonFiniteLossError",
    "ProgressCallback",
    "TrainResult",
    "Trainer",
    "TrainingInterrupted",
    "build_model",
    "build_optimizer",
    "consistency_schedule",
    "poly_schedule",
]

ProgressCallback = Callable[[int, dict[str, float]], None]

#: Offset between the seeds of a process's labeled and unlabeled generators (any fixed odd number).
UNLABELED_STREAM = 500_009
#: Offset of the generator that augments the batches of the BatchNorm re-estimation (train.precise_bn).
PRECISE_BN_STREAM = 700_001


@dataclass
class DomainRun:
    """What the trainer keeps per domain (a single-domain run has one, named after its data set)."""

    name: str
    config: Config  # the domain's single-domain view (Config.domain_views)
    data: TrainingData
    augment: TrainTransform
    consistency_weight: ConsistencyWeight
    #: The model's (this domain head's) supervised loss, the owner of ab-CE's threshold schedule.
    supervised: SupervisedTerm | None = None
    loss_weight: float = 1.0
    #: Cross-view CCT with main_on_strong: the main decoder's strong-view weight w_s(t), ramped like w_u.
    strong_weight: ConsistencyWeight | None = None
    labeled_loader: DataLoader | None = None
    unlabeled_loader: DataLoader | None = None
    val_loader: DataLoader | None = None
    labeled_stream: InfiniteLoader | None = None
    unlabeled_stream: InfiniteLoader | None = None
    #: Its head in a multi-domain model (its name); None when the model is a single-domain CCTModel.
    head: str | None = None

    def ce_threshold(self, step: int) -> float | None:
        return None if self.supervised is None else self.supervised.threshold(step)

    def key(self, name: str) -> str:
        """``name`` as this domain's log / checkpoint key: ``"<domain>/<name>"`` in a multi-domain run,
        ``name`` alone in a single-domain one."""
        return name if self.head is None else f"{self.head}/{name}"

    def main_path(self, model: nn.Module) -> nn.Module:
        """``model``'s main path on this domain's images: ``model`` itself for one domain, its head's
        :class:`DomainModel` for several (``model`` may be the DDP wrapper)."""
        return model if self.head is None else DomainModel(model, self.head, self.data.num_classes)


@dataclass
class TrainResult:
    step: int
    output_dir: Path
    metrics: dict[str, Any] = field(default_factory=dict)
    best_miou: float | None = None
    seconds: float = 0.0


class Trainer:
    """Trains one CCT (or supervised baseline) model as described by a `Config`.

    A config with ``domains`` trains one shared encoder with a head per domain (paper 3.4): each step takes
    the labeled + unlabeled batch of one domain in turn (``train.domain_sampling="alternate"``, the paper)
    or of every domain (``"mix"``); validation reports each domain's mIoU and their mean.
    """

    def __init__(
        self,
        config: Config,
        *,
        accelerator: Accelerator | None = None,
        quiet: bool = False,
        overwrite: bool = False,
    ) -> None:
        """``overwrite``: a run that is not resumed may replace the trained run its folder holds (its
        weights and logs are removed when ``fit`` starts); without it ``fit`` refuses
        (:class:`~cct_train.common.rundir.RunFolderOccupied`). The folder is locked from here on: another
        process training into it raises :class:`~cct_train.common.rundir.RunFolderBusy` naming this one."""
        self.config = config
        self.output_dir = Path(config.experiment.output_dir)
        self.overwrite = overwrite
        self._resumed = False
        _check_writable(self.output_dir)
        trackers, self._csv = build_trackers(config, self.output_dir)
        #: The precision this run trains in and why (train.mixed_precision "auto" resolved for the device).
        self.precision, self.accelerator = build_accelerator(config, trackers, accelerator)
        self.quiet = quiet or not self.accelerator.is_main_process
        self._take_run_folder()
        if not self.quiet:
            console.print(self.precision.describe())
        set_seed(config.experiment.seed, device_specific=False)
        if config.train.unlabeled.cross_view and not config.supervised_only:
            # Fail now, naming the pip line, rather than at the first step after the data check.
            import cct_perturb.image  # noqa: F401
        views = config.domain_views()
        self.domains = build_domains(config, views, self._check_data(views), self.accelerator.device)
        if not config.multi_domain:
            self.config = self.domains[0].config  # with skip_bad_samples: the skipping copy
        self.model: Any = build_checked_model(config, self.domains)
        self.optimizer, self.scheduler = build_optimization(config, self.model)
        self.step = 0
        self.best_miou: float | None = None
        # The labeled batches' generator and the unlabeled batches' and perturbations' (see _seed_generators).
        self.labeled_generator = torch.Generator(device=self.accelerator.device)
        self.generator = torch.Generator(device=self.accelerator.device)
        self._seed_generators(self.accelerator.process_index)
        # The scheduler is deliberately not prepared: Accelerate would step it once per process, while the
        # paper's poly schedule is defined per iteration whatever the number of processes.
        self.model, self.optimizer = self.accelerator.prepare(self.model, self.optimizer)
        prepare_streams(self.accelerator, self.domains)
        self.nonfinite_skipped = 0
        self._nonfinite_in_row = 0
        #: The step of the last checkpoint "last" this run saved or resumed from (None: there is none).
        self._last_saved_step: int | None = None
        #: Set by SIGINT / SIGTERM (engine.signals): the loop saves a checkpoint and stops after the step.
        self.stop = StopRequest()

    # ------------------------------------------------------------------ single-domain shortcuts
    @property
    def data(self) -> TrainingData:
        """The (first) domain's data."""
        return self.domains[0].data

    @property
    def consistency_weight(self) -> ConsistencyWeight:
        return self.domains[0].consistency_weight

    @property
    def labeled_loader(self) -> DataLoader | None:
        return self.domains[0].labeled_loader

    @property
    def unlabeled_loader(self) -> DataLoader | None:
        return self.domains[0].unlabeled_loader

    @property
    def val_loader(self) -> DataLoader | None:
        return self.domains[0].val_loader

    # ------------------------------------------------------------------ the run folder
    def _on_main(self, work: Callable[[], None]) -> None:
        """Run ``work`` on the main process; an error it raises is raised on every process (none waits
        forever at the next collective for a main process that stopped)."""
        outcome: list[Any] = [None]
        if self.accelerator.is_main_process:
            try:
                work()
            except (RunFolderError, OSError) as error:
                outcome[0] = error
        outcome = broadcast_object_list(outcome)
        if isinstance(outcome[0], BaseException):
            raise outcome[0]

    def _take_run_folder(self) -> None:
        """One run per folder: locked before anything is written, given back when fit ends (or the trainer
        is collected, or the process ends, whichever comes first)."""
        self._lock = RunFolderLock(self.output_dir)
        self._on_main(self._claim_output_dir)
        weakref.finalize(self, self._lock.release)

    def _claim_output_dir(self) -> None:
        """Lock the folder, then clear what killed atomic writes left in it (no live run can be writing
        them now) and say so."""
        self._lock.acquire()
        count, size = remove_partial_files(self.output_dir)
        if count and not self.quiet:
            console.print(
                f"removed {count} partial file(s) ({size / 1e6:.1f} MB) that an interrupted write left in "
                f"{self.output_dir}"
            )

    def _start_run(self) -> None:
        """Before ``fit`` writes anything: a run that was not resumed must not replace a trained run
        (unless ``overwrite``), and the CSV log keeps no row past the step the run starts from (a resumed
        run replays the steps after its checkpoint; a new run starts a new log)."""
        self._lock.acquire()
        if not self._resumed:
            if self.overwrite:
                clear_run(self.output_dir)
            else:
                refuse_to_replace(self.output_dir)
        if self._csv is not None:
            self._csv.drop_after(self.step)

    def close(self) -> None:
        """Give the run folder's lock back (``fit`` does when it ends)."""
        self._lock.release()

    # ------------------------------------------------------------------ helpers
    def _check_data(self, views: list[tuple[str, Config]]) -> dict[str, dict[str, set[str]]]:
        """`cct data check` before training, for each domain: every problem reported at once, or bad
        samples dropped. The main process checks; the outcome is broadcast so every process stops (or
        drops) alike."""
        from cct_train.data.check import preflight, samples_to_skip

        outcome: list[Any] = [None]
        if self.accelerator.is_main_process:
            drops: dict[str, dict[str, set[str]]] = {}
            try:
                for name, view in views:
                    if view.data.check == "off":
                        continue
                    report = preflight(
                        view,
                        deep=view.data.check == "full",
                        skip_bad_samples=view.data.skip_bad_samples,
                        progress=not self.quiet,
                    )
                    drops[name] = samples_to_skip(report) if view.data.skip_bad_samples else {}
                outcome[0] = drops
            except ValueError as error:  # DataCheckError lists every problem
                if len(views) > 1:
                    error.args = (
                        f"domain {name!r}: {error.args[0] if error.args else error}",
                        *error.args[1:],
                    )
                outcome[0] = error
        outcome = broadcast_object_list(outcome)
        if isinstance(outcome[0], Exception):
            raise outcome[0]
        return dict(outcome[0] or {})

    @property
    def unwrapped(self) -> Any:
        """The model without its DDP / compile wrappers (``CCTModel`` or ``MultiDomainCCT``)."""
        model = self.accelerator.unwrap_model(self.model)
        assert isinstance(model, (CCTModel, MultiDomainCCT))
        return model

    def weak_weight(self, step: int, run: DomainRun | None = None) -> float:
        """w_w, ramped like the consistency weight (w_w * w_u(t) / lambda_u) unless train.weak_rampup is off."""
        run = run or self.domains[0]
        weight = self.config.train.weak_weight
        lambda_u = run.consistency_weight.lambda_u
        if self.config.train.weak_rampup and lambda_u > 0:
            weight *= run.consistency_weight(step) / lambda_u
        return weight

    def ce_threshold(self, step: int) -> float | None:
        """ab-CE threshold: anneals from 1/C to 0.9 along the original's log ramp over abce_ramp of training."""
        return self.domains[0].ce_threshold(step)

    def active_domains(self, step: int) -> list[DomainRun]:
        """The domains that take part in ``step``: one in turn ("alternate") or all ("mix")."""
        if len(self.domains) == 1 or self.config.train.domain_sampling == "mix":
            return self.domains
        return [self.domains[step % len(self.domains)]]

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_path(self, name: str = "last") -> Path:
        return self.output_dir / "checkpoints" / f"{name}.pt"

    def _class_info(self) -> tuple[Any, Any, Any]:
        """num_classes, class names and palette: plain for one domain, ``{domain: ...}`` for several."""
        return (
            self._per_domain(lambda run: run.data.num_classes),
            self._per_domain(lambda run: run.data.class_names),
            self._per_domain(lambda run: run.data.palette),
        )

    def _per_domain(self, value: Callable[[DomainRun], Any]) -> Any:
        """``value`` of the domain (one domain), or ``{domain: value}`` (several): how checkpoints and the
        exported weights store what each domain has of its own."""
        if not self.config.multi_domain:
            return value(self.domains[0])
        return {run.name: value(run) for run in self.domains}

    def save(self, name: str = "last") -> Path:
        """Write a checkpoint atomically; a failed write keeps the previous one and says what to do.

        Weights that are NaN or infinite are never written over a checkpoint (they would replace a good
        one with one nothing can continue from): that raises :class:`NonFiniteLossError` instead.
        """
        path = self.checkpoint_path(name)
        if not self._weights_finite():  # the same answer on every process: they all stop here
            raise NonFiniteLossError(
                f"the model's weights became NaN or infinite by step {self.step}, so they were not saved "
                f"to {path}. {self._checkpoint_note()} {self._nonfinite_advice()}"
            )
        self.accelerator.wait_for_everyone()
        # Every process draws its own augmentations: keep each one's generator states.
        generators = gather_object(
            [{"labeled": self.labeled_generator.get_state(), "unlabeled": self.generator.get_state()}]
        )
        if self.accelerator.is_main_process:
            payload = self._checkpoint(generators)
            try:
                save_checkpoint(path, payload)
            except OSError as error:
                raise CheckpointError(
                    f"could not write the checkpoint {path}: {error.strerror or error}. The previous "
                    f"checkpoint there, if any, is intact. Free disk space or make the folder writable "
                    f"(or set experiment.output_dir elsewhere), then continue with --resume auto."
                ) from error
        self.accelerator.wait_for_everyone()
        if name == "last":
            self._last_saved_step = self.step
        return path

    def _checkpoint(self, generators: list[Any]) -> dict[str, Any]:
        """What a checkpoint holds: weights, optimizer, schedule, step, every random state (``generators``:
        each process's) and stream position, and the config and class info to rebuild the model."""
        streams: dict[str, Any] = {}
        for run in self.domains:
            assert run.labeled_stream is not None
            streams[run.key("labeled")] = run.labeled_stream.state_dict()
            streams[run.key("unlabeled")] = (
                run.unlabeled_stream.state_dict() if run.unlabeled_stream else None
            )
        num_classes, class_names, palette = self._class_info()
        return {
            "model": self.unwrapped.state_dict(),
            "model_config": self.unwrapped.config,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
            "best_miou": self.best_miou,
            "rng": rng_state(),
            "generators": generators,
            "streams": streams,
            "nonfinite_skipped": self.nonfinite_skipped,
            "precision": {"used": self.precision.precision, "reason": self.precision.reason},
            "scaler": self.accelerator.scaler.state_dict() if self.accelerator.scaler else None,
            "config": self.config.to_dict(),
            "num_classes": num_classes,
            "class_names": class_names,
            "palette": palette,
        }

    def _weights_finite(self) -> bool:
        """Whether every floating-point parameter and buffer is finite (one host sync)."""
        tensors = [t for t in self.unwrapped.state_dict().values() if t.is_floating_point()]
        if not tensors:
            return True
        flags = torch.stack([torch.isfinite(t).all() for t in tensors])
        return bool(flags.all())

    def _checkpoint_note(self) -> str:
        """Which checkpoint a stopped run can continue from, or that there is none (said, not assumed)."""
        path = self.checkpoint_path("last")
        if self._last_saved_step is not None and path.is_file():
            return (
                f"The last good checkpoint is {path} (step {self._last_saved_step}): continue from it with "
                "--resume auto once the settings are changed."
            )
        every = self.config.train.checkpoint_every
        when = f"the first was due at step {every}" if every else "train.checkpoint_every is 0"
        return (
            f"No checkpoint was saved ({when}), so there is nothing to resume: change the settings and "
            "start again."
        )

    def _nonfinite_advice(self) -> str:
        lr = self.config.train.optimizer.lr
        return (
            f"Lower train.optimizer.lr (now {lr}), set train.max_grad_norm, use train.mixed_precision=bf16 "
            "instead of fp16, or check the data (cct data check); raise train.nonfinite_patience to tolerate "
            "more."
        )

    def resume(self, path: str | Path) -> None:
        state = load_checkpoint(path, map_location="cpu")
        # Only a checkpoint of this folder continues its run; one from elsewhere (fine-tuning a run in a
        # new folder) starts a new run here, which must not replace a trained one either.
        self._resumed = Path(path).resolve().is_relative_to(self.output_dir.resolve())
        try:
            self.unwrapped.load_state_dict(state["model"])
        except RuntimeError as error:  # dozens of "size mismatch" lines: say which settings differ
            raise CheckpointError(self._mismatch(Path(path), state, error)) from None
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        if Path(path).resolve() == self.checkpoint_path("last").resolve():
            self._last_saved_step = self.step
        self.best_miou = state.get("best_miou")
        self.nonfinite_skipped = int(state.get("nonfinite_skipped", 0))
        set_rng_state(state["rng"])
        self._restore_generators(state["generators"])
        if state.get("scaler") is not None and self.accelerator.scaler is not None:
            self.accelerator.scaler.load_state_dict(state["scaler"])
        streams = state.get("streams") or {}
        per_batch = self.accelerator.num_processes
        for run in self.domains:
            data = run.config.data
            labeled = streams.get(run.key("labeled"))
            if labeled and run.labeled_stream is not None:
                run.labeled_stream.load_state_dict(labeled, per_batch * data.batch_size)
            unlabeled = streams.get(run.key("unlabeled"))
            if unlabeled and run.unlabeled_stream is not None:
                run.unlabeled_stream.load_state_dict(
                    unlabeled, per_batch * (data.unlabeled_batch_size or data.batch_size)
                )

    def _mismatch(self, path: Path, state: dict[str, Any], error: RuntimeError) -> str:
        """Why a checkpoint's weights do not fit this model, in config keys: ``model.*``, ``train.mode``
        and the number of classes that differ between the checkpoint's config and this one."""
        saved = upgrade_config(state.get("config") or {})  # a 0.3 checkpoint names its keys the old way
        now = self.config.to_dict()
        differ = [
            f"{key}={before!r} (the config says {after!r})"
            for key, before, after in _differences(saved, now, ("model", "train.mode"))
        ]
        classes = state.get("num_classes")
        if classes is not None and classes != self._class_info()[0]:
            differ.append(f"{classes} classes (the data has {self._class_info()[0]})")
        if differ:
            wanted = " ".join(
                f"--set {key}={_yaml_word(before)}"
                for key, before, _ in _differences(saved, now, ("model", "train.mode"))
                if not isinstance(before, (dict, list))
            )
            how = f" ({wanted})" if wanted else ""
            return (
                f"{path} was trained with {'; '.join(differ)}, so its weights do not fit this model. Resume "
                f"with the settings it was trained with{how}, or train the new settings in a new folder "
                "(--set experiment.output_dir=...)."
            )
        lines = [
            line.strip() for line in str(error).splitlines() if "size mismatch" in line or "Missing" in line
        ]
        shown = "; ".join(lines[:3]) or str(error).splitlines()[0]
        more = f" (and {len(lines) - 3} more)" if len(lines) > 3 else ""
        return f"{path}: its weights do not fit this model: {shown}{more}"

    def export(self, path: str | Path) -> None:
        """Weights for inference as .safetensors, with the model config and class info as metadata."""
        if self.accelerator.is_main_process:
            _, class_names, palette = self._class_info()
            input_size = self._per_domain(lambda run: run.config.data.resize)
            try:
                export_weights(path, self.unwrapped, self.unwrapped.config, class_names, palette, input_size)
            except OSError as error:
                raise CheckpointError(
                    f"could not write the model weights {path}: {error.strerror or error}. The checkpoints "
                    "are intact: free disk space (or make the folder writable), then run the same command "
                    "with --resume auto to write them again."
                ) from error

    def _seed_generators(self, rank: int, step: int = 0) -> None:
        """Two generators per process: one augments the labeled batches, the other the unlabeled batches
        and draws the perturbations. A seed reproduces a run and each rank draws differently; and since
        the labeled draws do not depend on whether the run uses unlabeled data, a CCT run and the
        supervised baseline of the same seed see the very same labeled crops (a paired comparison).
        Their states travel in the checkpoint."""
        seed = self.config.experiment.seed * 1000 + rank + 7919 * step
        self.labeled_generator.manual_seed(seed)
        self.generator.manual_seed(seed + UNLABELED_STREAM)

    def _restore_generators(self, saved: list[Any]) -> None:
        rank = self.accelerator.process_index
        if rank >= len(saved):  # more processes than the run that saved: fresh per-rank draws
            self._seed_generators(rank, self.step)
        elif isinstance(saved[rank], dict):
            self.labeled_generator.set_state(saved[rank]["labeled"])
            self.generator.set_state(saved[rank]["unlabeled"])
        else:  # saved by cct-train < 0.3, one generator for both streams: it continues the labeled one
            self._seed_generators(rank, self.step)
            self.labeled_generator.set_state(saved[rank])

    # ------------------------------------------------------------------ loop
    def _next_batches(self) -> dict[str, TrainBatch]:
        """This step's batch of each domain that takes part in it (one for a single domain): the next
        labeled and unlabeled batches of its streams, augmented (:meth:`_inputs`)."""
        loaded = []
        for run in self.active_domains(self.step):
            assert run.labeled_stream is not None
            labeled = next(run.labeled_stream)
            loaded.append((run, labeled, next(run.unlabeled_stream) if run.unlabeled_stream else None))
        return {run.name: self._inputs(run, labeled, unlabeled) for run, labeled, unlabeled in loaded}

    def _inputs(
        self, run: DomainRun, labeled: dict[str, Any], unlabeled: dict[str, Any] | None
    ) -> TrainBatch:
        """One domain's collated batches, augmented on the device, with this step's loss weights."""
        images, masks = run.augment.batch(labeled, generator=self.labeled_generator)
        assert masks is not None  # a labeled batch
        # The head's supervised loss reads ab-CE's threshold of this step itself.
        batch = TrainBatch(images, masks, step=self.step, loss_weight=run.loss_weight)
        if unlabeled is None or run.config.supervised_only:
            return batch
        # Unlabeled samples carry a "mask" only when pseudo-labels (weak labels) were given for them.
        weak = unlabeled.get("mask")
        if run.config.train.unlabeled.cross_view:
            weak = self._cross_view_inputs(run, unlabeled, weak, batch)
        else:
            batch.unlabeled, weak = run.augment.batch(unlabeled, generator=self.generator)
        batch.consistency_weight = run.consistency_weight(self.step)
        if weak is not None:
            batch.weak_targets, batch.weak_weight = weak, self.weak_weight(self.step, run)
        return batch

    def _cross_view_inputs(
        self,
        run: DomainRun,
        batch: dict[str, Any],
        weak_labels: torch.Tensor | None,
        inputs: TrainBatch,
    ) -> torch.Tensor | None:
        """Cross-view CCT's two views of a collated unlabeled batch (uint8 ``image``), set in ``inputs``:
        ``unlabeled`` the weak view (the geometric augmentation), ``strong`` its photometric perturbation
        with CutMix boxes (``cutmix_box``, ``cutmix_partner``), both normalised, and the target's settings.
        Returns the pseudo-labels (weak labels) mixed like the strong images, or None.

        Every draw comes from the unlabeled generator, whose state the checkpoints keep: a resumed run
        makes the very same views.
        """
        from cct_perturb.image import cutmix, photometric  # the optional image extra (kornia)

        settings = run.config.train.unlabeled
        weak01, weak_labels = run.augment.geometric(
            batch["image"],
            weak_labels,
            generator=self.generator,
            cropped=bool(batch.get("cropped", False)),
        )
        strong01 = photometric(weak01, **settings.strong.photometric.model_dump(), generator=self.generator)
        box = partner = None
        mix = settings.strong.cutmix
        if mix.p > 0:
            # With the auxiliary decoders on the weak view, their pseudo-labels stay the weak view's.
            others = () if weak_labels is None or settings.aux_on_weak else (weak_labels,)
            mixed = cutmix(
                strong01, *others, p=mix.p, scale=mix.scale, ratio=mix.ratio, generator=self.generator
            )
            strong01, box, partner = mixed.images, mixed.box, mixed.partner
            if others:
                weak_labels = mixed.others[0]
        inputs.unlabeled = run.augment.normalize(weak01)
        inputs.strong = run.augment.normalize(strong01)
        inputs.cutmix_box, inputs.cutmix_partner = box, partner
        inputs.target_confidence = settings.confidence
        inputs.aux_on_weak = settings.aux_on_weak
        if run.strong_weight is not None:
            inputs.strong_weight = run.strong_weight(self.step)
        return weak_labels

    def train_step(self, batches: Mapping[str, TrainBatch]) -> dict[str, torch.Tensor]:
        """One optimisation step on this step's ``batches`` (``{domain: batch}``, one entry for a single
        domain): the model's losses, back-propagated; the step skipped when they are not finite."""
        with self.accelerator.accumulate(self.model):
            out: dict[str, torch.Tensor] = self.model(batches=batches, generator=self.generator)
            # Backward even on a non-finite loss, so every DDP process takes part in the same collectives.
            self.accelerator.backward(out["loss"])
            if self.config.train.nonfinite_patience and not self._all_finite(out["loss"]):
                self._skip_nonfinite_step()
                return out
            self._nonfinite_in_row = 0
            if self.config.train.max_grad_norm and self.accelerator.sync_gradients:
                self.accelerator.clip_grad_norm_(self.model.parameters(), self.config.train.max_grad_norm)
            self.optimizer.step()
            if self.accelerator.sync_gradients:
                self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        return out

    def _all_finite(self, loss: torch.Tensor) -> bool:
        """Whether the loss is finite on every process (one scalar gather and host sync per step)."""
        flags = self.accelerator.gather(torch.isfinite(loss.detach()).reshape(1))
        return bool(flags.all())

    def _skip_nonfinite_step(self) -> None:
        """Drop the step's gradients (and any accumulated ones); stop after too many in a row."""
        self.optimizer.zero_grad(set_to_none=True)
        scaler = self.accelerator.scaler
        if scaler is not None:
            # fp16: the step never reached the scaler, so back its scale off by hand as it would for inf.
            scaler.update(scaler.get_scale() * scaler.get_backoff_factor())
        self.nonfinite_skipped += 1
        self._nonfinite_in_row += 1
        patience = self.config.train.nonfinite_patience
        if self._nonfinite_in_row >= patience:
            raise NonFiniteLossError(
                f"the loss was NaN or infinite in {self._nonfinite_in_row} steps in a row (step {self.step + 1}; "
                f"{self.nonfinite_skipped} skipped in all), so training stopped. {self._checkpoint_note()} "
                f"{self._nonfinite_advice()}"
            )

    def validate(self) -> dict[str, Any]:
        """Validation scores; with several domains ``{"miou": mean over domains, "domains": {name: scores}}``."""
        per_domain: dict[str, dict[str, Any]] = {}
        for run in self.domains:
            if run.val_loader is None:
                continue
            # Through the prepared model (DDP broadcasts BatchNorm buffers), not the unwrapped one.
            scores = evaluate(
                run.main_path(self.model),
                run.val_loader,
                run.data.num_classes,
                accelerator=self.accelerator,
                normalize=run.data.normalize,
                # Periodic validation stays single-scale; large images (Cityscapes) use the eval window.
                window=run.config.eval.window,
                stride=run.config.eval.stride,
                ignore_index=run.config.data.ignore_index,
            )
            per_domain[run.name] = scores.as_dict(run.data.class_names)
        if not self.config.multi_domain:
            return next(iter(per_domain.values()), {})
        if not per_domain:
            return {}
        return {
            "miou": sum(s["miou"] for s in per_domain.values()) / len(per_domain),
            "domains": per_domain,
        }

    def _learning_rates(self) -> dict[str, float]:
        """``lr``: the head's rate (PSP + decoders: the configured ``train.optimizer.lr`` under the schedule);
        ``lr_backbone``: the backbone's (lr x backbone_lr_factor); one ``lr_<name>`` per other group."""
        rates: dict[str, float] = {}
        for group, rate in zip(self.optimizer.param_groups, self.scheduler.get_last_lr(), strict=False):
            name = str(group.get("name", "head"))
            rates["lr" if name == "head" else f"lr_{name}"] = float(rate)
        if "lr" not in rates and rates:  # no head group (everything frozen but the backbone)
            rates["lr"] = next(iter(rates.values()))
        return rates

    def log_predictions(self) -> None:
        """A grid of the first ``train.log_images`` validation images (image, ground truth, prediction) to
        the trackers that take images (``val/predictions``, per domain ``val/<domain>/predictions``)."""
        count = self.config.train.log_images
        if not count or not self.accelerator.is_main_process or not self.accelerator.trackers:
            return
        from cct_train.eval.qualitative import prediction_grid_image

        images = {}
        for run in self.domains:
            dataset: Any = run.data.val_loader.dataset if run.data.val_loader is not None else None
            if dataset is None or len(dataset) == 0:
                continue
            samples = [dataset[i] for i in range(min(count, len(dataset)))]
            model = run.main_path(self.unwrapped)
            images[f"val/{run.key('predictions')}"] = prediction_grid_image(
                model, samples, run.data.palette, run.data.normalize
            )
        if images:
            log_images(self.accelerator.trackers, images, self.step)

    def recalibrate_batchnorm(self) -> None:
        """Re-estimate the BatchNorm statistics over ``train.precise_bn`` augmented training batches
        (:mod:`cct_train.engine.batchnorm`). Its batches are drawn with a generator of their own, so the
        training streams (and a resumed run) are not affected; each process averages over its own shard."""
        count = self.config.train.precise_bn
        model = self.unwrapped
        if not count or not has_batchnorm(model):
            return
        generator = torch.Generator(device=self.accelerator.device)
        generator.manual_seed(
            self.config.experiment.seed * 1000 + self.accelerator.process_index + PRECISE_BN_STREAM
        )
        with self.accelerator.autocast():
            recalibrate_batchnorm(model, islice(self._calibration_batches(generator), count))

    def _calibration_batches(self, generator: torch.Generator) -> Iterator[torch.Tensor]:
        """Augmented image batches of what the encoder trained on: every domain's labeled loader and,
        unless the run is supervised, its unlabeled one, in turn."""
        sources = []
        for run in self.domains:
            loaders = [run.labeled_loader]
            if run.unlabeled_loader is not None and not run.config.supervised_only:
                loaders.append(run.unlabeled_loader)
            sources += [(run, cycle(loader)) for loader in loaders]
        while True:
            for run, stream in sources:
                batch = next(stream)
                images, _ = run.augment.batch(
                    {"image": batch["image"], "cropped": batch.get("cropped", False)}, generator=generator
                )
                yield images

    def fit(self, callback: ProgressCallback | None = None) -> TrainResult:
        """Train from the current step (0, or the resumed one) to ``train.iterations``, then validate and
        export; ``callback(step, logs)`` at every logged step. The run folder's lock is given back."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self._on_main(self._start_run)
        try:
            return self._fit(callback)
        finally:
            self.close()

    def _fit(self, callback: ProgressCallback | None) -> TrainResult:
        """The loop: a step on each step's batches, then what is due (log, validation, checkpoint) or asked
        (a signal: checkpoint and stop); after the last step, :meth:`_finish`."""
        cfg = self.config.train
        self._start_training()
        start_time = time.perf_counter()
        metrics: dict[str, Any] = {}
        latest: dict[str, torch.Tensor] = {}  # each logged value's latest (alternating: each domain's)
        with (
            stop_on_signals(self.stop),
            training_progress(cfg.iterations, start=self.step, disable=self.quiet) as progress,
        ):
            while self.step < cfg.iterations:
                out = self.train_step(self._next_batches())
                latest.update(_logged_values(out))
                self.step += 1
                signum = self.stop.signum
                if _due(self.step, cfg.log_every, cfg.iterations) or signum is not None:
                    self._log(latest, progress, callback)
                else:
                    progress.update(self.step)
                if signum is not None:  # logged above, so that the log holds every step the checkpoint has
                    raise TrainingInterrupted(signum, self.step, self.save("last"))
                if _due(self.step, cfg.eval_every, cfg.iterations):
                    metrics = self._validate_and_keep_best(progress)
                if _due(self.step, cfg.checkpoint_every, cfg.iterations):
                    self.save("last")
        metrics = self._finish(metrics)
        seconds = time.perf_counter() - start_time
        self._write_metrics(metrics)
        return TrainResult(self.step, self.output_dir, metrics, self.best_miou, seconds)

    def _start_training(self) -> None:
        """The run's config beside its checkpoints, the trackers started with its flat settings, the model
        in training mode."""
        if self.accelerator.is_main_process:
            save_config(self.config, self.output_dir / "config.yaml")
        self.accelerator.init_trackers(self.config.experiment.name, config=_flat(self.config.to_dict()))
        self.model.train()

    def _log(
        self, latest: dict[str, torch.Tensor], progress: TrainingProgress, callback: ProgressCallback | None
    ) -> None:
        """Log the latest losses, the learning rates and this step's loss weights: one host sync per log
        interval, not per step."""
        logs = {k: float(v.detach()) for k, v in latest.items()}
        logs.update(self._learning_rates())
        logs.update(self._loss_weights())
        logs["nonfinite_skipped"] = float(self.nonfinite_skipped)
        self.accelerator.log(logs, step=self.step)
        progress.log(self.step, logs)
        if callback is not None:
            callback(self.step, logs)

    def _loss_weights(self) -> dict[str, float]:
        """``consistency_weight`` w_u(t) and ab-CE's ``ce_threshold`` eta (labeled pixels above it no
        longer count) at this step: the first domain's, and each domain's under its name when there are
        several (eta starts at 1/C of each label space); one domain logs the plain keys alone."""
        first = self.domains[0]
        logs = {"consistency_weight": float(first.consistency_weight(self.step))}
        for run in self.domains:
            logs[run.key("consistency_weight")] = float(run.consistency_weight(self.step))
            if (eta := run.ce_threshold(self.step)) is not None:
                logs[run.key("ce_threshold")] = eta
        if (eta := first.ce_threshold(self.step)) is not None:
            logs["ce_threshold"] = eta
        return logs

    def _validate_and_keep_best(self, progress: TrainingProgress) -> dict[str, Any]:
        """Periodic validation: its scores logged, with a prediction grid, and the best mIoU's weights
        saved as the checkpoint "best"."""
        metrics = self.validate()
        self.model.train()
        if metrics:
            self.accelerator.log(_val_logs(metrics), step=self.step)
            self.log_predictions()
            progress.note(f"step {self.step}: val mIoU {_describe_miou(metrics)}")
            if self.best_miou is None or metrics["miou"] > self.best_miou:
                self.best_miou = metrics["miou"]
                self.save("best")
        return metrics

    def _finish(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """After the last step: precise BatchNorm (then the scores of those weights), or the validation a
        run without periodic validation had not done; the weights exported. Returns the final scores."""
        cfg = self.config.train
        if cfg.precise_bn:
            self.recalibrate_batchnorm()
            metrics = self.validate()  # the reported scores are those of the weights exported
            if metrics:
                self.accelerator.log(_val_logs(metrics), step=self.step)
            if cfg.checkpoint_every:
                self.save("last")
        elif not cfg.eval_every:
            metrics = self.validate()
        self.export(self.output_dir / "model.safetensors")
        self.accelerator.end_training()
        return metrics

    def _write_metrics(self, metrics: dict[str, Any]) -> None:
        if self.accelerator.is_main_process and metrics:
            atomic_write_text(
                self.output_dir / "metrics.json", json.dumps({"step": self.step, **metrics}, indent=2)
            )


# ---------------------------------------------------------------------------------------------- builders
# What Trainer.__init__ assembles, in its order: trackers, the Accelerator, each domain's data and schedules,
# the model, the optimizer and its schedule, the prepared loaders and their endless streams.


def build_trackers(config: Config, output_dir: Path) -> tuple[list[Any], CSVTracker | None]:
    """The Accelerate trackers of ``train.trackers`` (the CSV log as a tracker of its own, also returned).

    A tracker whose package is missing fails here, with the pip line, before any data is read.
    """
    check_trackers(config.train.trackers)
    trackers: list[Any] = [name for name in config.train.trackers if name != "csv"]
    csv = None
    if "csv" in config.train.trackers:
        csv = CSVTracker(config.experiment.name, output_dir / "logs")
        trackers.append(csv)
    return trackers, csv


def build_accelerator(
    config: Config, trackers: list[Any], accelerator: Accelerator | None = None
) -> tuple[PrecisionChoice, Accelerator]:
    """``(precision, accelerator)``: the one passed in, or a new one for ``train.mixed_precision``
    (``"auto"`` resolved for the device), ``train.gradient_accumulation`` and the trackers."""
    if accelerator is not None:
        return PrecisionChoice(
            str(accelerator.mixed_precision), "set by the Accelerator passed in"
        ), accelerator
    # Accelerate keeps its settings (mixed precision...) in a process-wide singleton; a second Trainer in
    # the same process (the demo, a notebook, tests) must be free to choose its own. The process group
    # itself (PartialState) is kept.
    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()
    handlers: list[Any] = []
    if config.train.domain_sampling == "alternate" and len(config.domains) > 1:
        # Alternating steps leave the other domains' decoders out of the graph: DDP must expect that.
        handlers.append(DistributedDataParallelKwargs(find_unused_parameters=True))
    precision = resolve_precision(config.train.mixed_precision, training_device())
    output_dir = Path(config.experiment.output_dir)
    return precision, Accelerator(
        mixed_precision=precision.precision,
        gradient_accumulation_steps=config.train.gradient_accumulation,
        log_with=trackers or None,
        project_config=ProjectConfiguration(
            project_dir=str(output_dir), logging_dir=str(output_dir / "logs")
        ),
        cpu=_multi_process_cpu(),
        kwargs_handlers=handlers or None,
    )


def build_domains(
    config: Config,
    views: list[tuple[str, Config]],
    drops: dict[str, dict[str, set[str]]],
    device: torch.device,
) -> list[DomainRun]:
    """One :class:`DomainRun` per domain view (one for a single-domain config): its data (without the
    samples ``drops`` names), its augmentation on ``device`` and its loss schedules."""
    loss_weights = {d.name: d.loss_weight for d in config.domains}
    runs = []
    for name, view in views:
        if view.data.skip_bad_samples:
            from cct_train.data.check import skipping_config

            view = skipping_config(view)
        data = build_data(view, drops.get(name))
        unlabeled = config.train.unlabeled
        runs.append(
            DomainRun(
                name=name,
                config=view,
                data=data,
                augment=data.augment.to(device),
                consistency_weight=consistency_schedule(config, view.train.unsupervised_weight.lambda_u),
                loss_weight=loss_weights.get(name, 1.0),
                strong_weight=consistency_schedule(config, unlabeled.main_weight)
                if unlabeled.cross_view and unlabeled.main_on_strong
                else None,
                head=name if config.multi_domain else None,
            )
        )
    return runs


def build_checked_model(config: Config, runs: list[DomainRun]) -> CCTModel | MultiDomainCCT:
    """The model (:func:`~cct_train.models.factory.build_model`) for the domains' label spaces, each domain
    given its head's supervised loss (the owner of ab-CE's threshold); an encoder that cannot take a
    domain's crops fails here, in a few lines."""
    model = build_model(config, {run.name: run.data.num_classes for run in runs})
    for run in runs:
        check_encoder_input(model.encoder, run.config.data.crop_size)
        # ab-CE's threshold schedule is owned by the supervised loss of the domain's head.
        run.supervised = (
            model.head(run.name) if isinstance(model, MultiDomainCCT) else model
        ).supervised_term
    return model


def build_optimization(config: Config, model: nn.Module) -> tuple[torch.optim.Optimizer, Any]:
    """``(optimizer, scheduler)``: ``train.optimizer`` over the model's parameter groups and the poly
    schedule (with warm-up), stepped once per optimizer step: with gradient accumulation, iterations /
    accumulation of them."""
    optimizer = build_optimizer(config, model)
    steps = math.ceil(config.train.iterations / config.train.gradient_accumulation)
    scheduler = poly_scheduler(
        optimizer,
        steps,
        config.train.optimizer.poly_power,
        config.train.optimizer.warmup_steps(steps),
    )
    return optimizer, scheduler


def prepare_streams(accelerator: Accelerator, runs: list[DomainRun]) -> None:
    """Each domain's loaders prepared (sharded over the processes) and its endless training streams, whose
    position (pass, batches consumed) is saved, so a resume continues with exactly the batches an
    uninterrupted run would have seen."""
    for run in runs:
        run.labeled_loader, run.unlabeled_loader, run.val_loader = (
            accelerator.prepare_data_loader(loader) if loader is not None else None
            for loader in (run.data.labeled_loader, run.data.unlabeled_loader, run.data.val_loader)
        )
        _check_batches(run, accelerator.num_processes)
        run.labeled_stream = cycle(run.labeled_loader)
        run.unlabeled_stream = cycle(run.unlabeled_loader) if run.unlabeled_loader is not None else None


def _differences(
    before: dict[str, Any], after: dict[str, Any], sections: tuple[str, ...]
) -> list[tuple[str, Any, Any]]:
    """``(dotted key, before, after)`` for every leaf of ``sections`` (``"model"``, ``"train.mode"``) whose
    values differ between two config dicts."""
    found: list[tuple[str, Any, Any]] = []

    def leaves(node: Any, prefix: str) -> dict[str, Any]:
        if isinstance(node, dict):
            flat: dict[str, Any] = {}
            for key, value in node.items():
                flat.update(leaves(value, f"{prefix}.{key}"))
            return flat
        return {prefix: node}

    for section in sections:
        old: Any = before
        new: Any = after
        for part in section.split("."):
            old = old.get(part) if isinstance(old, dict) else None
            new = new.get(part) if isinstance(new, dict) else None
        flat_old, flat_new = leaves(old, section), leaves(new, section)
        for key in sorted(set(flat_old) | set(flat_new)):
            if flat_old.get(key) != flat_new.get(key):
                found.append((key, flat_old.get(key), flat_new.get(key)))
    return found


def _yaml_word(value: Any) -> str:
    """``value`` as a ``--set`` override writes it (None -> null, True -> true)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _check_writable(folder: Path) -> None:
    """Fail before any training when checkpoints could not be written (unwritable or not a folder)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as error:
        raise CheckpointError(
            f"experiment.output_dir {folder} is not a writable folder ({error.strerror or error}); "
            "choose another with --set experiment.output_dir=..."
        ) from error


def training_device() -> str:
    """The device type Accelerate will train on (before it is created): cuda when present, else cpu."""
    forced_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    return "cpu" if forced_cpu or _multi_process_cpu() or not torch.cuda.is_available() else "cuda"


def _multi_process_cpu() -> bool:
    # Accelerate only forms a process group of CPU processes (gloo) when asked for the CPU explicitly;
    # without a GPU, several launched processes would otherwise each train alone.
    return not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1


def _check_batches(run: DomainRun, processes: int) -> None:
    """A training set too small for one full batch on every process would stall the stream: say so."""
    data = run.config.data
    parts = [
        ("labeled", run.labeled_loader, run.data.n_labeled, data.batch_size, "data.batch_size"),
        (
            "unlabeled",
            run.unlabeled_loader,
            run.data.n_unlabeled,
            data.unlabeled_batch_size or data.batch_size,
            "data.unlabeled_batch_size",
        ),
    ]
    for part, loader, count, batch, key in parts:
        if loader is not None and len(loader) == 0:
            where = f"domain {run.name!r}: " if run.head is not None else ""
            raise ValueError(
                f"{where}the {part} set has {count} image(s), fewer than one batch of {batch} per process "
                f"x {processes} process(es) (batches drop the incomplete last one); lower {key} or label "
                "more images"
            )


def _logged_values(out: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What the logs keep of a step's outputs: the losses and cross-view's share of confident target
    pixels ("confident"), detached (read on the host only when logged)."""
    return {k: v.detach() for k, v in out.items() if "loss" in k or k.endswith("confident")}


def _due(step: int, every: int, last: int) -> bool:
    """Whether a periodic action (log, validation, checkpoint) is due after ``step``: every ``every``
    steps (0: never) and at the ``last`` step."""
    return bool(every) and (step % every == 0 or step == last)


def _val_logs(metrics: dict[str, Any]) -> dict[str, float]:
    """``val/miou``, ``val/pixel_accuracy`` and ``val/iou/<class>`` for each class seen (per domain under
    ``val/<domain>/``, with the mean mIoU over domains as ``val/miou``)."""

    def scores_of(scores: dict[str, Any], prefix: str) -> dict[str, float]:
        logs = {f"{prefix}miou": float(scores["miou"])}
        if "pixel_accuracy" in scores:
            logs[f"{prefix}pixel_accuracy"] = float(scores["pixel_accuracy"])
        for name, iou in (scores.get("per_class_iou") or {}).items():
            if iou is not None:  # a class absent from labels and predictions has no IoU
                logs[f"{prefix}iou/{name}"] = float(iou)
        return logs

    domains = metrics.get("domains", {})
    logs = {"val/miou": float(metrics["miou"])} if domains else scores_of(metrics, "val/")
    for name, scores in domains.items():
        logs.update(scores_of(scores, f"val/{name}/"))
    return logs


def _describe_miou(metrics: dict[str, Any]) -> str:
    text = f"{100 * metrics['miou']:.2f}"
    domains = metrics.get("domains")
    if domains:
        text += " (mean of " + ", ".join(f"{n} {100 * s['miou']:.2f}" for n, s in domains.items()) + ")"
    return text


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    # Trackers take flat scalar hyperparameters.
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flat(value, f"{name}."))
        elif isinstance(value, (int, float, str, bool)) or value is None:
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat
