"""The optimizer and the schedules of training, one definition each (the CCT trainer and CAM training).

- :func:`make_optimizer`: SGD (momentum) or AdamW over parameter groups; :func:`build_optimizer` from a
  config and a model's ``param_groups`` (the backbone at lr / 10, paper 4.3).
- :func:`poly_schedule` / :func:`poly_scheduler`: the paper's poly policy, stepped per iteration.
- :func:`consistency_schedule`: w_u(t), the unsupervised weight's ramp-up to lambda_u from a config.
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


def poly_schedule(total: int, power: float = 0.9, warmup: int = 0) -> Callable[[int], float]:
    """The paper's poly policy, stepped per iteration: lr = base * (1 - it / total) ** power.

    ``warmup`` > 0 multiplies it by ``min(1, (it + 1) / warmup)``: a linear ramp over the first steps
    (not in the paper; it keeps a high head learning rate from killing the decoders' ReLUs at step 1).

    >>> schedule = poly_schedule(100, 0.9)
    >>> schedule(0), round(schedule(50), 4), schedule(100), schedule(120)
    (1.0, 0.5359, 0.0, 0.0)
    >>> warm = poly_schedule(100, 1.0, warmup=4)
    >>> warm(0), warm(1), warm(3), warm(50)
    (0.25, 0.495, 0.97, 0.5)
    """

    def factor(it: int) -> float:
        ramp = min(1.0, (it + 1) / warmup) if warmup > 0 else 1.0
        return ramp * max(0.0, 1.0 - it / total) ** power

    return factor


def poly_scheduler(
    optimizer: torch.optim.Optimizer, total: int, power: float = 0.9, warmup: int = 0
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` of :func:`poly_schedule`: call ``step()`` once per optimizer step."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, poly_schedule(total, power, warmup))


def consistency_schedule(config: Config, lambda_u: float | None = None) -> ConsistencyWeight:
    """w_u(t): from 0 up to ``lambda_u`` (default ``train.unsupervised_weight.lambda_u``) along
    ``train.unsupervised_weight.schedule`` over its ``rampup`` (a fraction of training, or iterations)."""
    unsupervised = config.train.unsupervised_weight
    return ConsistencyWeight(
        unsupervised.lambda_u if lambda_u is None else lambda_u,
        rampup=unsupervised.rampup,
        total_iters=config.train.iterations,
        schedule=unsupervised.schedule,
    )
