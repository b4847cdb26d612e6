"""collate, build_loader, InfiniteLoader / cycle."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.utils.data import Dataset, DistributedSampler

from cct_train.data import Sample, build_loader, collate, cycle


class _Toy(Dataset[Sample]):
    def __init__(self, n: int, masks: bool = True) -> None:
        self.n, self.masks = n, masks

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Sample:
        sample: Sample = {"image": torch.full((3, 4, 5), i, dtype=torch.uint8), "name": f"s{i}"}
        if self.masks:
            sample["mask"] = torch.full((4, 5), i, dtype=torch.int64)
        return sample


def test_collate() -> None:
    ds = _Toy(3)
    batch = collate([ds[0], ds[2]])
    assert batch["image"].shape == (2, 3, 4, 5)
    assert batch["image"].dtype == torch.uint8
    assert batch["mask"].shape == (2, 4, 5)
    assert batch["name"] == ["s0", "s2"]
    assert "mask" not in collate([_Toy(1, masks=False)[0]])
    with pytest.raises(ValueError, match="some samples have a mask"):
        collate([ds[0], _Toy(1, masks=False)[0]])
    odd: Sample = {"image": torch.zeros(3, 2, 2, dtype=torch.uint8), "name": "odd"}
    with pytest.raises(ValueError, match="resize"):
        collate([ds[0], odd])


def test_build_loader_seeded() -> None:
    def order(seed: int) -> list[str]:
        return [n for b in build_loader(_Toy(10), 3, shuffle=True, seed=seed) for n in b["name"]]

    assert order(0) == order(0)
    assert order(0) != order(1)
    assert sorted(order(0)) == sorted(f"s{i}" for i in range(10))
    with pytest.raises(ValueError, match="drop_last"):
        build_loader(_Toy(2), 4, drop_last=True)


def test_cycle_repeats_and_reshuffles() -> None:
    loader = build_loader(_Toy(5), 2, shuffle=True, seed=0, drop_last=True)
    it = cycle(loader)
    batches = [next(it) for _ in range(7)]
    assert all(b["image"].shape == (2, 3, 4, 5) for b in batches)
    assert it.epoch == 3  # 2 batches a pass: passes 0, 1, 2, 3
    names = [tuple(b["name"]) for b in batches]
    assert names[:2] != names[2:4]


class _Recorder(DistributedSampler[Any]):
    def __init__(self, dataset: Dataset[Any]) -> None:
        super().__init__(dataset, num_replicas=1, rank=0, shuffle=True, seed=0)
        self.epochs: list[int] = []

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)
        super().set_epoch(epoch)


def test_cycle_sets_epoch_on_distributed_sampler() -> None:
    ds = _Toy(4)
    sampler = _Recorder(ds)
    it = cycle(build_loader(ds, 2, sampler=sampler))
    for _ in range(5):
        next(it)
    assert sampler.epochs == [0, 1, 2]


def test_cycle_empty_loader() -> None:
    with pytest.raises(ValueError, match="no batch"):
        next(cycle([]))


class _PreparedLoader:
    """Mimics Accelerate's DataLoaderShard: the loader itself has set_epoch."""

    def __init__(self) -> None:
        self.epochs: list[int] = []

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)

    def __iter__(self) -> Any:
        return iter([1, 2])


def test_cycle_sets_epoch_on_prepared_loader() -> None:
    loader = _PreparedLoader()
    it = cycle(loader)
    assert [next(it) for _ in range(5)] == [1, 2, 1, 2, 1]
    assert loader.epochs == [0, 1, 2]
