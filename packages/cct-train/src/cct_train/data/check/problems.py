"""What the data check finds: a `Problem` per thing wrong (its kinds), the `DataReport` of a check, and the
error and warning it raises.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cct_train.common.atomic import atomic_write_text

if TYPE_CHECKING:
    pass


TRAIN = "train"
UNLABELED_ROOT = "unlabeled_root"
VAL = "val"
SPLITS: tuple[str, ...] = (TRAIN, UNLABELED_ROOT, VAL)
"""The parts of the data a :class:`Problem` can belong to (``Problem.split``)."""

SAMPLE_KINDS: frozenset[str] = frozenset(
    {
        "missing",
        "outside-root",
        "unknown-name",
        "unreadable",
        "truncated",
        "too-large",
        "size-mismatch",
        "mask-values",
        "palette",
        "duplicate",
    }
)
"""Problems of one sample (or list entry): ``skip_bad_samples`` can drop them; the others stop training."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the data.

    ``path``: the file (or list, or folder) concerned; ``kind``: one of the kinds in the module docstring;
    ``message``: what is wrong; ``fatal``: whether training cannot go on with it; ``name``: the sample id
    when the problem is one sample's; ``split``: ``"train"``, ``"unlabeled_root"`` or ``"val"``.
    """

    path: str
    kind: str
    message: str
    fatal: bool = True
    name: str | None = None
    split: str | None = None

    def line(self) -> str:
        """One line, the whole path in it (greppable logs): ``FATAL train missing: <path>: <message>``."""
        return f"{'FATAL' if self.fatal else 'warn '} {self.split or '-'} {self.kind}: {self.path}: {self.message}"


@dataclass
class DataReport:
    """What :func:`check_data` found: ``problems``, ``counts`` (samples per part) and ``checked`` items.

    ``counts`` has ``train``, ``labeled``, ``unlabeled`` (the unlabeled part of the train split),
    ``unlabeled_root`` and ``val``; ``checked`` counts the files decoded (deep) or entries listed (quick).
    """

    problems: list[Problem] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    checked: int = 0
    deep: bool = True

    @property
    def fatal(self) -> bool:
        """Whether any problem is fatal."""
        return any(p.fatal for p in self.problems)

    @property
    def n_fatal(self) -> int:
        """The number of fatal problems."""
        return sum(p.fatal for p in self.problems)

    def bad_names(self, split: str, *, fatal_only: bool = True) -> set[str]:
        """Names of the samples of ``split`` ("train", "unlabeled_root", "val") that have a problem.

        Duplicate entries are not counted: the first of them is a good sample (data sets built with
        ``missing="skip"`` keep it and drop the others).
        """
        return {
            p.name
            for p in self.problems
            if p.split == split
            and p.name is not None
            and p.kind != "duplicate"
            and (p.fatal or not fatal_only)
        }

    def summary(self) -> str:
        """One line: problems, fatal ones, per-part problem counts and sample counts."""
        c = self.counts
        mode = "samples decoded" if self.deep else "samples listed (quick: no decoding)"
        per_split = Counter(p.split or "config" for p in self.problems)
        where = ", ".join(f"{k} {v}" for k, v in sorted(per_split.items()))
        samples = (
            f"train {c.get('train', 0)} ({c.get('labeled', 0)} labeled, {c.get('unlabeled', 0)} unlabeled), "
            f"unlabeled_root {c.get(UNLABELED_ROOT, 0)}, val {c.get(VAL, 0)}"
        )
        found = f"{len(self.problems)} problem(s), {self.n_fatal} fatal" + (f" ({where})" if where else "")
        return f"{found}; {self.checked} {mode}; samples: {samples}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``ok``, ``deep``, ``checked``, ``counts``, ``summary``, ``problems``."""
        return {
            "ok": not self.fatal,
            "deep": self.deep,
            "checked": self.checked,
            "counts": dict(self.counts),
            "n_problems": len(self.problems),
            "n_fatal": self.n_fatal,
            "summary": self.summary(),
            "problems": [asdict(p) for p in self.problems],
        }

    def write_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON to ``path`` (parents created); returns the path."""
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, json.dumps(self.to_dict(), indent=2) + "\n")
        return out

    def format(self, limit: int | None = 50) -> str:
        """Plain text: one line per problem (at most ``limit``), then :meth:`summary`."""
        shown = self.problems if limit is None else self.problems[:limit]
        lines = [p.line() for p in shown]
        if len(shown) < len(self.problems):
            lines.append(f"... and {len(self.problems) - len(shown)} more")
        lines.append(self.summary())
        return "\n".join(lines)


class DataCheckError(ValueError):
    """Fatal data problems; ``report`` holds them all and the message lists them."""

    def __init__(self, report: DataReport) -> None:
        self.report = report
        super().__init__(
            "the data check found fatal problems (run `cct data check` for the full report; set "
            "data.skip_bad_samples to drop bad samples):\n" + report.format(limit=30)
        )


class DataWarning(UserWarning):
    """Bad samples skipped (``skip_bad_samples``), or other data problems that do not stop training."""
