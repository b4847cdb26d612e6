"""rich progress bars (it/s and ETA) for training and long loops; silent on non-main processes.

Off a terminal (a batch job, ``nohup``, CI, ``| tee``) a bar is useless: training prints one plain line every
``log_every`` steps instead, with the step, the losses, the learning rates, the speed and the ETA.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")
console = Console(stderr=True)


def progress_columns() -> list[object]:
    return [
        TextColumn("[bold blue]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
    ]


def _duration(seconds: float) -> str:
    return str(timedelta(seconds=round(max(0.0, seconds))))


def plain_line(
    step: int, total: int, logs: Mapping[str, float], rate: float | None, remaining: float | None
) -> str:
    """``step 20/300 | loss 1.2345 (sup 1.1000, unsup 0.0200) | lr 0.00942, backbone 0.000942 | 1.52 it/s
    | ETA 0:03:05``: what a batch job's log gets every ``log_every`` steps."""
    parts = [f"step {step}/{total}"]
    if "loss" in logs:
        terms = [
            f"{key.removeprefix('loss_')} {value:.4f}"
            for key, value in logs.items()
            if key.startswith("loss_") and value != 0.0
        ]
        parts.append(f"loss {logs['loss']:.4f}" + (f" ({', '.join(terms)})" if terms else ""))
    rates = [f"lr {logs['lr']:.3g}"] if "lr" in logs else []
    rates += [
        f"{key.removeprefix('lr_')} {value:.3g}" for key, value in logs.items() if key.startswith("lr_")
    ]
    if rates:
        parts.append(", ".join(rates))
    if rate:
        parts.append(f"{rate:.2f} it/s" if rate >= 1 else f"{1 / rate:.2f} s/it")
    if remaining is not None:
        parts.append(f"ETA {_duration(remaining)}")
    return " | ".join(parts)


class TrainingProgress:
    """A rich bar on a terminal; plain lines (:func:`plain_line`) at each logged step elsewhere; nothing when
    disabled (other processes than the main one)."""

    def __init__(
        self,
        progress: Progress | None,
        task: TaskID | None,
        *,
        plain: bool = False,
        total: int = 0,
        start: int = 0,
    ) -> None:
        self._progress = progress
        self._task = task
        self._plain = plain
        self._total = total
        self._last = (start, time.monotonic())  # (step, time) of the previous plain line
        self._begin = self._last

    def update(self, step: int, loss: float | None = None) -> None:
        if self._progress is None or self._task is None:
            return
        task = self._progress.tasks[self._task]
        elapsed = task.elapsed or 0.0
        done = step - int(task.fields.get("start", 0))
        rate = f"{done / elapsed:.2f} it/s" if elapsed > 0 and done > 0 else ""
        fields: dict[str, str] = {"rate": rate}
        if loss is not None:
            fields["info"] = f"loss {loss:.4f}"
        self._progress.update(self._task, completed=step, **fields)  # type: ignore[arg-type]

    def log(self, step: int, logs: Mapping[str, float]) -> None:
        """A logged step: the bar's loss on a terminal, a :func:`plain_line` elsewhere."""
        if not self._plain:
            self.update(step, loss=logs.get("loss"))
            return
        now = time.monotonic()
        last_step, last_time = self._last
        rate = (step - last_step) / (now - last_time) if now > last_time and step > last_step else None
        # The ETA from the whole run's speed so far (steadier than the last interval's).
        first_step, first_time = self._begin
        average = (step - first_step) / (now - first_time) if now > first_time and step > first_step else None
        remaining = (self._total - step) / average if average else None
        console.print(plain_line(step, self._total, logs, rate, remaining), highlight=False, soft_wrap=True)
        self._last = (step, now)

    def note(self, message: str) -> None:
        if self._progress is not None or self._plain:
            (self._progress.console if self._progress is not None else console).print(message, soft_wrap=True)


@contextmanager
def training_progress(
    total: int, start: int = 0, disable: bool = False, plain: bool | None = None
) -> Iterator[TrainingProgress]:
    """The progress display of a training loop; ``plain`` (default: stderr is not a terminal) prints lines
    at the logged steps instead of a bar."""
    if disable:
        yield TrainingProgress(None, None)
        return
    if plain if plain is not None else not console.is_terminal:
        console.print(f"training: {total - start} steps to go ({start} done of {total})", highlight=False)
        yield TrainingProgress(None, None, plain=True, total=total, start=start)
        return
    with Progress(*progress_columns(), console=console, transient=False) as progress:  # type: ignore[arg-type]
        task = progress.add_task("training", total=total, completed=start, rate="", info="", start_step=start)
        progress.tasks[task].fields["start"] = start
        yield TrainingProgress(progress, task, total=total, start=start)


def progress_iter(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(*progress_columns(), console=console, transient=True) as progress:  # type: ignore[arg-type]
        task = progress.add_task(description, total=total, rate="", info="")
        for item in items:
            yield item
            progress.advance(task)
