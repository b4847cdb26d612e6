"""Printing a report: a rich table on a terminal, one problem per line elsewhere (greppable logs)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cct_train.data.check.problems import DataReport

if TYPE_CHECKING:
    from rich.console import Console


# -- output ------------------------------------------------------------------------------------------------


def print_report(report: DataReport, console: Console, limit: int | None = 200) -> None:
    """The problems (at most ``limit``), then the summary line.

    On a terminal: a rich table. Elsewhere (CI logs, ``> file``): :meth:`Problem.line` per problem, never
    wrapped, so that a log can be searched for a file name (a table at 80 columns breaks paths apart).
    """
    from rich.markup import escape
    from rich.table import Table

    if report.problems and not console.is_terminal:
        shown = report.problems if limit is None else report.problems[:limit]
        for p in shown:
            console.print(p.line(), markup=False, highlight=False, soft_wrap=True)
        if len(shown) < len(report.problems):
            console.print(f"... {len(report.problems) - len(shown)} more (see --json)", soft_wrap=True)
    elif report.problems:
        table = Table(title="data problems", show_lines=False)
        table.add_column("", no_wrap=True)
        table.add_column("split", no_wrap=True)
        table.add_column("kind", no_wrap=True)
        table.add_column("file", overflow="fold")
        table.add_column("problem", overflow="fold")
        shown = report.problems if limit is None else report.problems[:limit]
        for p in shown:
            flag = "[bold red]fatal[/]" if p.fatal else "[yellow]warn[/]"
            table.add_row(flag, p.split or "", p.kind, escape(p.path), escape(p.message))
        console.print(table)
        if len(shown) < len(report.problems):
            console.print(f"... {len(report.problems) - len(shown)} more (see --json)")
    style = "bold red" if report.fatal else ("yellow" if report.problems else "bold green")
    console.print(f"[{style}]{escape(report.summary())}[/]", soft_wrap=True)
