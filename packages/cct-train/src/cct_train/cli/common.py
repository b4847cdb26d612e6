"""What every `cct` command module shares: consoles, config options, and how errors end a command."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

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
    err.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code=2)


def load(config: Path | None, overrides: list[str] | None) -> Config:
    """The validated config (or the defaults), with `--set` overrides; errors name the file and key."""
    from cct_train.config import ConfigError, load_config

    try:
        return load_config(config, overrides or [])
    except ConfigError as error:
        fail(str(error))
