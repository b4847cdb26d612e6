"""The optimizer and the schedules of training, one definition each (the CCT trainer and CAM training).

- :func:`make_optimizer`: SGD (momentum) or AdamW over parameter groups; :func:`build_optimizer` from a
  config and a model's ``param_groups`` (the backbone at lr / 10, paper 4.3).
- :func:`poly_schedule` / :func:`poly_scheduler`: the paper's poly policy, stepped per iteration.
- :func:`consistency_schedule`: w_u(t), the consistency weight's ramp-up from a config.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from cct_losses import ConsistencyWeight

if TYPE_CHECKING:
    from cct_train.config import Config

__all__ = ["build_optimizer", "consistency_schedule", "make_optimizer", "poly_schedule", "poly_scheduler"]


def make_optimizer(
    name: str,
    groups: Sequence[dict[str, Any]],
    *,
    lr: float,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    """``"sgd"`` (with ``momentum``) or ``"adamw"`` over parameter ``groups`` (their own ``lr`` kept).

    >>> layer = torch.nn.Linear(2, 2)
    >>> type(make_optimizer("sgd", [{"params": layer.parameters()}], lr=0.01)).__name__
    'SGD'
    """
    if name == "sgd":
        return torch.optim.SGD(list(groups), lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(list(groups), lr=lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {name!r}")


def build_optimizer(config: Config, model: Any) -> torch.optim.Optimizer:
    """The optimizer of ``train.optimizer`` over ``model.param_groups`` (backbone at ``backbone_lr_factor``)."""
    optim = config.train.optimizer
    groups = model.param_groups(
        lr=optim.lr, backbone_lr_factor=optim.backbone_lr_factor, weight_decay=optim.weight_decay
    )
    return make_optimizer(
        optim.name, groups, lr=optim.lr, momentum=optim.momentum, weight_decay=optim.weight_decay
    )


def poly_schedule(total: int, power: float = 0.9) -> Callable[[int], float]:
    """The paper's poly policy, stepped per iteration: lr = base * (1 - it / total) ** power.

    >>> schedule = poly_schedule(100, 0.9)
    >>> schedule(0), round(schedule(50), 4), schedule(100), schedule(120)
    (1.0, 0.5359, 0.0, 0.0)
    """
    return lambda it: max(0.0, 1.0 - it / total) ** power


def poly_scheduler(
    optimizer: torch.optim.Optimizer, total: int, power: float = 0.9
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` of :func:`poly_schedule`: call ``step()`` once per optimizer step."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, poly_schedule(total, power))


def consistency_schedule(config: Config, weight: float | None = None) -> ConsistencyWeight:
    """w_u(t): from 0 up to lambda_u (``weight``, default ``train.consistency.weight``) along
    ``train.consistency.schedule`` over ``rampup`` (a fraction of training, or iterations)."""
    consistency = config.train.consistency
    return ConsistencyWeight(
        consistency.weight if weight is None else weight,
        rampup=consistency.rampup,
        total_iters=config.train.iterations,
        schedule=consistency.schedule,
    )
