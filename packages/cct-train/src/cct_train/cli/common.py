"""What every `cct` command module shares: consoles, config options, and how errors end a command."""

from __future__ import annotations

import os
import sys
import traceback
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from cct_train.config import Config

console = Console()
err = Console(stderr=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file.")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a config key: --set train.iterations=500."),
]


def fail(message: str) -> NoReturn:
    """Print an error and end the command with exit code 2 (bad input), without a traceback."""
    # Escaped: a message is plain text, and brackets in it (torch's "[enforce fail at ...]", a path) are
    # not rich markup to be swallowed.
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code=2)


def load(config: Path | None, overrides: list[str] | None) -> Config:
    """The validated config (or the defaults), with `--set` overrides; errors name the file and key."""
    from cct_train.config import ConfigError, load_config

    try:
        return load_config(config, overrides or [])
    except ConfigError as error:
        fail(str(error))


TRACEBACK_ENV = "CCT_TRACEBACK"
"""Set to 1 to see the whole traceback of an unexpected error instead of its short report."""


def report_unexpected(error: BaseException) -> None:
    """A few lines for an error no command turned into a message: what it says and where it came from."""
    lines = (str(error).strip() or type(error).__name__).splitlines()
    shown = "\n  ".join(lines[:6]) + ("\n  ..." if len(lines) > 6 else "")
    frames = traceback.extract_tb(error.__traceback__)
    where = (
        f" (raised in {Path(frames[-1].filename).name}:{frames[-1].lineno}, {frames[-1].name})"
        if frames
        else ""
    )
    err.print(
        f"[bold red]error:[/] {escape(f'{type(error).__name__}: {shown}{where}')}",
        highlight=False,
        soft_wrap=True,
    )
    err.print(
        f"The whole traceback: run again with {TRACEBACK_ENV}=1. If your input looks right, please report it.",
        highlight=False,
        soft_wrap=True,
    )


def _one_line_warning(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> str:
    return f"warning: {message}\n"


class CCTTyper(typer.Typer):
    """The `cct` app: an exception no command handled ends it with a short report and exit code 1 instead
    of a page of traceback (``CCT_TRACEBACK=1`` shows the traceback)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # Warnings to a user are one line ("warning: ..."), not a file path and a line of source.
        warnings.formatwarning = _one_line_warning
        try:
            return super().__call__(*args, **kwargs)
        except Exception as error:
            if os.environ.get(TRACEBACK_ENV, "").lower() in ("1", "true", "yes"):
                raise
            report_unexpected(error)
            sys.exit(1)
