"""make_split / save_split / load_split."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from cct_train.data import Split, load_split, make_split, save_split

NAMES = [f"img_{i:03d}" for i in range(50)]


def test_split_reproducible_disjoint_and_complete() -> None:
    a = make_split(NAMES, 8, seed=3)
    b = make_split(NAMES, 8, seed=3)
    assert a == b
    assert len(a.labeled) == 8
    assert len(a.unlabeled) == 42
    assert not set(a.labeled) & set(a.unlabeled)
    assert sorted(a.labeled + a.unlabeled) == sorted(NAMES)
    assert a.labeled == sorted(a.labeled)
    assert a.unlabeled == sorted(a.unlabeled)


def test_split_independent_of_input_order() -> None:
    shuffled = NAMES.copy()
    random.Random(123).shuffle(shuffled)
    assert make_split(shuffled, 10, seed=0) == make_split(NAMES, 10, seed=0)
    assert make_split(iter(reversed(NAMES)), 10, seed=0) == make_split(NAMES, 10, seed=0)


def test_split_depends_on_seed() -> None:
    assert make_split(NAMES, 10, seed=0).labeled != make_split(NAMES, 10, seed=1).labeled


def test_split_all_labeled_allowed() -> None:
    split = make_split(NAMES[:5], 5, seed=0)
    assert split.unlabeled == []
    assert split.labeled == NAMES[:5]


@pytest.mark.parametrize("n", [0, -1, 51])
def test_split_bad_n_labeled(n: int) -> None:
    with pytest.raises(ValueError, match="n_labeled"):
        make_split(NAMES, n, seed=0)


def test_split_duplicates_rejected() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        make_split(["a", "b", "a"], 1)


def test_split_overlap_rejected() -> None:
    with pytest.raises(ValueError, match="overlap"):
        Split(labeled=["a"], unlabeled=["a", "b"])


def test_save_load_roundtrip(tmp_path: Path) -> None:
    split = make_split(NAMES, 7, seed=5, source="camvid:train")
    out = save_split(split, tmp_path / "splits" / "n7")
    assert (out / "labeled.txt").read_text().splitlines() == split.labeled
    assert (out / "unlabeled.txt").read_text().splitlines() == split.unlabeled
    meta = json.loads((out / "split.json").read_text())
    assert meta["seed"] == 5
    assert meta["n_labeled"] == 7
    assert meta["n_total"] == 50
    assert meta["source"] == "camvid:train"
    assert load_split(out) == split


def test_load_split_missing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"labeled\.txt"):
        load_split(tmp_path)
