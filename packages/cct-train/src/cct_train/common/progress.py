"""rich progress bars (it/s and ETA) for training and long loops; silent on non-main processes."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
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


class TrainingProgress:
    def __init__(self, progress: Progress | None, task: TaskID | None) -> None:
        self._progress = progress
        self._task = task

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

    def note(self, message: str) -> None:
        if self._progress is not None:
            self._progress.console.print(message)


@contextmanager
def training_progress(total: int, start: int = 0, disable: bool = False) -> Iterator[TrainingProgress]:
    if disable:
        yield TrainingProgress(None, None)
        return
    with Progress(*progress_columns(), console=console, transient=False) as progress:  # type: ignore[arg-type]
        task = progress.add_task("training", total=total, completed=start, rate="", info="", start_step=start)
        progress.tasks[task].fields["start"] = start
        yield TrainingProgress(progress, task)


def progress_iter(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(*progress_columns(), console=console, transient=True) as progress:  # type: ignore[arg-type]
        task = progress.add_task(description, total=total, rate="", info="")
        for item in items:
            yield item
            progress.advance(task)
