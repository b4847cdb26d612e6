"""Labeled / unlabeled splits of a dataset's sample names, reproducible from a seed.

``make_split`` sorts the names first, so the split depends only on the set of names, ``n_labeled`` and
the seed — never on the order the names came in. ``save_split`` / ``load_split`` store it as::

    dir/labeled.txt     one name per line (sorted)
    dir/unlabeled.txt   one name per line (sorted)
    dir/split.json      {"seed", "n_labeled", "n_unlabeled", "n_total", "source"}
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cct_train.common.atomic import atomic_write_text
from cct_train.data.lists import list_names

LABELED_FILE = "labeled.txt"
UNLABELED_FILE = "unlabeled.txt"
SPLIT_JSON = "split.json"


@dataclass(frozen=True)
class Split:
    """Disjoint ``labeled`` and ``unlabeled`` sample names (each sorted), with provenance."""

    labeled: list[str]
    unlabeled: list[str]
    seed: int | None = None
    source: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        both = set(self.labeled) & set(self.unlabeled)
        if both:
            raise ValueError(f"a split's labeled and unlabeled names overlap: {sorted(both)[:5]}")


def make_split(names: Iterable[str], n_labeled: int, seed: int = 0, source: str | None = None) -> Split:
    """Choose ``n_labeled`` of ``names`` at random (``random.Random(seed)``); the rest is unlabeled.

    Raises ValueError for duplicate names or ``n_labeled`` outside ``1 .. len(names)``.
    """
    pool = sorted(names)
    if len(set(pool)) != len(pool):
        raise ValueError("make_split: duplicate sample names")
    if not 1 <= n_labeled <= len(pool):
        raise ValueError(
            f"make_split: n_labeled must be in 1..{len(pool)} (number of names), got {n_labeled}"
        )
    order = pool.copy()
    random.Random(seed).shuffle(order)
    return Split(
        labeled=sorted(order[:n_labeled]), unlabeled=sorted(order[n_labeled:]), seed=seed, source=source
    )


def save_split(split: Split, directory: str | Path) -> Path:
    """Write ``labeled.txt``, ``unlabeled.txt`` and ``split.json`` into ``directory``; returns it."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / LABELED_FILE, "".join(f"{n}\n" for n in split.labeled))
    atomic_write_text(out / UNLABELED_FILE, "".join(f"{n}\n" for n in split.unlabeled))
    meta = {
        "seed": split.seed,
        "n_labeled": len(split.labeled),
        "n_unlabeled": len(split.unlabeled),
        "n_total": len(split.labeled) + len(split.unlabeled),
        "source": split.source,
        **split.extra,
    }
    atomic_write_text(out / SPLIT_JSON, json.dumps(meta, indent=2) + "\n")
    return out


def load_split(directory: str | Path) -> Split:
    """Read a split written by :func:`save_split` (``split.json`` is optional; unlabeled.txt too)."""
    root = Path(directory)
    labeled_path = root / LABELED_FILE
    if not labeled_path.is_file():
        raise FileNotFoundError(f"split not found: {labeled_path}")
    unlabeled_path = root / UNLABELED_FILE
    unlabeled = list_names(unlabeled_path) if unlabeled_path.is_file() else []
    meta: dict[str, Any] = {}
    if (root / SPLIT_JSON).is_file():
        meta = json.loads((root / SPLIT_JSON).read_text())
    seed = meta.pop("seed", None)
    source = meta.pop("source", None)
    extra = {k: v for k, v in meta.items() if k not in ("n_labeled", "n_unlabeled", "n_total")}
    return Split(labeled=list_names(labeled_path), unlabeled=unlabeled, seed=seed, source=source, extra=extra)
