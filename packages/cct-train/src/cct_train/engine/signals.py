"""Stopping training cleanly: SIGINT / SIGTERM finish the step, save a checkpoint and stop; the errors that
end a run (a signal, too many non-finite losses)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["NonFiniteLossError", "StopRequest", "TrainingInterrupted", "stop_on_signals"]


class NonFiniteLossError(RuntimeError):
    """Training stopped after too many non-finite losses in a row."""


class TrainingInterrupted(RuntimeError):
    """SIGINT / SIGTERM arrived; a checkpoint was written before stopping."""

    def __init__(self, signum: int, step: int, checkpoint: Path) -> None:
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        name = signal.Signals(signum).name
        super().__init__(
            f"{name} received: stopped after step {step} and saved {checkpoint}; "
            f"continue with `cct train ... --resume auto`"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Picklable with its own arguments: a study's worker process sends it back to the study.
        return (type(self), (self.signum, self.step, self.checkpoint))


@dataclass
class StopRequest:
    """The signal that asked the loop to stop (None: none yet); the loop looks at it after each step."""

    signum: int | None = None

    def note(self, signum: int, frame: Any = None) -> None:
        """A signal handler: the first signal asks the loop to stop, a second one interrupts at once."""
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def request(self, signum: int, frame: Any = None) -> None:
        """A signal handler that only asks the loop to stop, however often it comes: for a signal that
        another process forwards (a study to its workers), which must not turn a stop with a checkpoint
        into an interruption when the same stop also reached the worker directly (Ctrl-C in a terminal
        signals the whole process group)."""
        if self.signum is None:
            self.signum = signum


@contextmanager
def stop_on_signals(request: StopRequest) -> Iterator[None]:
    """While inside: SIGINT / SIGTERM set ``request.signum`` (a second one interrupts at once); the
    previous handlers are restored after. Outside the main thread (no signal handlers there) it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    previous = {sig: signal.signal(sig, request.note) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
