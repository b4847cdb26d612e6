"""Split-list files, read by one rule everywhere (the training split, `data.split.*_list`, CamVid's and the
folder data set's lists, saved splits, VOC id lists).

A list is UTF-8 text (a byte-order mark at its top is ignored), one entry a line: whitespace-separated
tokens (``name``, or ``image mask``); blank lines and lines whose first token starts with ``#`` are
skipped. A file name with spaces is written in quotes (``"my image.png" "my mask.png"``), or the tokens of
the line are separated by tabs. :func:`read_list` gives each entry with its line number (for messages that
name ``file:line``); :func:`list_names` the first token of each.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ListEntry", "expected_tokens", "list_names", "read_list"]


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
    try:
        # utf-8-sig: a BOM (Windows editors write one) would otherwise become part of the first name.
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: a split list must be UTF-8 text ({error})") from None
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        tokens = _tokens(line)
        if tokens and not tokens[0].startswith("#"):
            entries.append(ListEntry(number, tokens))
    return entries


def _tokens(line: str) -> tuple[str, ...]:
    """The tokens of one line: tab-separated when it has a tab, shell-quoted when it has quotes (a name
    with an apostrophe and no closing quote is read plainly), else whitespace-separated."""
    if "\t" in line:
        return tuple(part.strip() for part in line.split("\t") if part.strip())
    if '"' in line or "'" in line:
        try:
            return tuple(shlex.split(line))
        except ValueError:
            pass
    return tuple(line.split())


def expected_tokens(path: str | Path, entry: ListEntry, expected: str) -> ValueError:
    """The error for an entry with the wrong number of tokens, naming ``file:line`` and how to write a
    name with spaces."""
    hint = ""
    if len(entry.tokens) > 2:
        hint = (
            '; a file name with spaces must be quoted ("my image.png" "my mask.png") or the paths '
            "separated by a tab"
        )
    return ValueError(
        f"{path}:{entry.line}: expected {expected}, got {len(entry.tokens)} words {' '.join(entry.tokens)!r}{hint}"
    )


def list_names(path: str | Path) -> list[str]:
    """The first token of each entry: the sample names of a ``name`` (or ``name ...``) list, in order."""
    return [entry.tokens[0] for entry in read_list(path)]
