"""Split-list files, read by one rule everywhere (the training split, `data.split.*_list`, CamVid's and the
folder data set's lists, saved splits, VOC id lists).

A list is text, one entry a line: whitespace-separated tokens (``name``, or ``image mask``); blank lines
and lines whose first token starts with ``#`` are skipped. :func:`read_list` gives each entry with its
line number (for messages that name ``file:line``); :func:`list_names` the first token of each.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["ListEntry", "list_names", "read_list"]


@dataclass(frozen=True)
class ListEntry:
    """One entry of a list file: its 1-based ``line`` number and its whitespace-separated ``tokens``."""

    line: int
    tokens: tuple[str, ...]


def read_list(path: str | Path) -> list[ListEntry]:
    """The entries of a list file (blank and ``#`` comment lines skipped).

    Raises:
        FileNotFoundError: naming the file when it does not exist.

    >>> import tempfile, os
    >>> folder = tempfile.mkdtemp()
    >>> path = os.path.join(folder, "train.txt")
    >>> _ = open(path, "w").write("# CamVid\\ntrain/a.png trainannot/a.png\\n\\nb\\n")
    >>> [(e.line, e.tokens) for e in read_list(path)]
    [(2, ('train/a.png', 'trainannot/a.png')), (4, ('b',))]
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"split list not found: {path}")
    entries = []
    for number, text in enumerate(path.read_text().splitlines(), start=1):
        tokens = tuple(text.split())
        if tokens and not tokens[0].startswith("#"):
            entries.append(ListEntry(number, tokens))
    return entries


def list_names(path: str | Path) -> list[str]:
    """The first token of each entry: the sample names of a ``name`` (or ``name ...``) list, in order."""
    return [entry.tokens[0] for entry in read_list(path)]
