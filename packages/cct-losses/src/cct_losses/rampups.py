"""Ramp-up / ramp-down schedules and the consistency-weight schedule of CCT.

Every ramp takes ``(current, length)`` and works on the progress ``t = clip(current / length, 0, 1)``;
with the default ``length=1.0`` the first argument *is* the progress ``t``. A ``length`` of 0 means
"already finished" (``t = 1``). Plain Python numbers in, plain ``float`` out.

==================  =======================================  =========  =========
function            formula of ``t``                          ``t = 0``  ``t = 1``
==================  =======================================  =========  =========
``sigmoid_rampup``  ``exp(-5 (1 - t)^2)``                     0.0067     1.0
``linear_rampup``   ``t``                                     0.0        1.0
``log_rampup``      ``1 - exp(-5 t)``                         0.0        0.9933
``cosine_rampup``   ``0.5 (1 - cos(pi t))``                   0.0        1.0
``cosine_rampdown`` ``0.5 (cos(pi t) + 1)``                   1.0        0.0
==================  =======================================  =========  =========
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

__all__ = [
    "RAMPS",
    "ConsistencyWeight",
    "cosine_rampdown",
    "cosine_rampup",
    "linear_rampup",
    "log_rampup",
    "ramp_progress",
    "sigmoid_rampup",
    "step_rampup",
]


def _as_float(value: float, name: str) -> float:
    # bool is an int subclass but never a sensible schedule argument.
    if isinstance(value, (bool, str, bytes)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    try:
        out = float(value)  # ints, floats, numpy scalars, 0-d tensors
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}") from None
    if math.isnan(out):
        raise ValueError(f"{name} must not be NaN")
    return out


def ramp_progress(current: float, length: float = 1.0) -> float:
    """Progress ``t = clip(current / length, 0, 1)``; ``length == 0`` gives 1.0.

    Raises:
        ValueError: if ``length`` is negative.
    """
    cur = _as_float(current, "current")
    ln = _as_float(length, "rampup_length")
    if ln < 0:
        raise ValueError(f"rampup_length must be >= 0, got {length}")
    if ln == 0:
        return 1.0
    return min(max(cur / ln, 0.0), 1.0)


def sigmoid_rampup(current: float, rampup_length: float = 1.0) -> float:
    """Sigmoid-shaped ramp-up ``exp(-5 (1 - t)^2)`` (Laine & Aila 2017; CCT's consistency weight).

    Args:
        current: current step (iteration / epoch), or the progress ``t`` when ``rampup_length == 1``.
        rampup_length: number of steps of the ramp (>= 0); 0 means no ramp (returns 1.0).

    Returns:
        ``exp(-5 (1 - t)^2)`` with ``t = clip(current / rampup_length, 0, 1)``; in ``[exp(-5), 1]``.

    >>> round(sigmoid_rampup(0, 100), 4), round(sigmoid_rampup(50, 100), 4), sigmoid_rampup(100, 100)
    (0.0067, 0.2865, 1.0)
    """
    t = ramp_progress(current, rampup_length)
    return float(math.exp(-5.0 * (1.0 - t) ** 2))


def linear_rampup(current: float, rampup_length: float = 1.0) -> float:
    """Linear ramp-up ``t = clip(current / rampup_length, 0, 1)``; 1.0 when ``rampup_length == 0``.

    >>> linear_rampup(25, 100), linear_rampup(0.5), linear_rampup(3, 0)
    (0.25, 0.5, 1.0)
    """
    return float(ramp_progress(current, rampup_length))


def log_rampup(current: float, rampup_length: float = 1.0) -> float:
    """Logarithmic-shaped ramp-up ``1 - exp(-5 t)`` (CCT's ab-CE threshold schedule).

    Note that it ends at ``1 - exp(-5) ~= 0.9933`` for ``t = 1``, as in the original code, except for
    ``rampup_length == 0`` which returns exactly 1.0 (no ramp).

    >>> log_rampup(0, 10), round(log_rampup(10, 10), 4)
    (0.0, 0.9933)
    """
    if _as_float(rampup_length, "rampup_length") == 0:
        ramp_progress(current, rampup_length)  # validates ``current``
        return 1.0
    t = ramp_progress(current, rampup_length)
    return float(1.0 - math.exp(-5.0 * t))


def cosine_rampup(current: float, rampup_length: float = 1.0) -> float:
    """Cosine ramp-up ``0.5 (1 - cos(pi t))``: 0.0 at ``t = 0``, 1.0 at ``t = 1``, 0.5 half-way.

    The mirror image of :func:`cosine_rampdown` (``cosine_rampup(t) == 1 - cosine_rampdown(t)``): flat at
    both ends, so the weight leaves 0 gently and settles on its final value without a kink.

    >>> cosine_rampup(0, 10), round(cosine_rampup(5, 10), 12), cosine_rampup(10, 10)
    (0.0, 0.5, 1.0)
    >>> cosine_rampup(3, 0)  # no ramp: finished
    1.0
    """
    t = ramp_progress(current, rampup_length)
    return float(0.5 * (1.0 - math.cos(math.pi * t)))


def cosine_rampdown(current: float, rampdown_length: float = 1.0) -> float:
    """Cosine ramp-down ``0.5 (cos(pi t) + 1)``: 1.0 at ``t = 0``, 0.0 at ``t = 1``.

    >>> cosine_rampdown(0, 10), round(cosine_rampdown(5, 10), 12), cosine_rampdown(10, 10)
    (1.0, 0.5, 0.0)
    """
    t = ramp_progress(current, rampdown_length)
    return float(0.5 * (math.cos(math.pi * t) + 1.0))


def step_rampup(current: float, rampup_length: float = 1.0) -> float:
    """Step "ramp": 0.0 before the end of the ramp (``t < 1``), 1.0 from then on."""
    return 1.0 if ramp_progress(current, rampup_length) >= 1.0 else 0.0


#: Ramp-up schedules by name (used by :class:`ConsistencyWeight` and ``AnnealedBootstrappedCE``).
#: ``"exp"`` is an alias of ``"sigmoid"`` (the curve is ``exp(-5 (1 - t)^2)``).
RAMPS: dict[str, Callable[[float, float], float]] = {
    "sigmoid": sigmoid_rampup,
    "exp": sigmoid_rampup,
    "linear": linear_rampup,
    "log": log_rampup,
    "cosine": cosine_rampup,
    "step": step_rampup,
}


def _resolve_schedule(schedule: str) -> Callable[[float, float], float]:
    if not isinstance(schedule, str) or schedule not in RAMPS:
        raise ValueError(f"schedule must be one of {sorted(RAMPS)}, got {schedule!r}")
    return RAMPS[schedule]


class ConsistencyWeight:
    """Weight ``w_u(t)`` of the unsupervised loss: ramps from ~0 up to ``lambda_u``.

    The paper / original config: ``lambda_u = 30`` reached over the first 10% of training along
    ``exp(-5 (1 - t)^2)``, stepped per iteration: ``ConsistencyWeight(30.0, rampup=0.1, total_iters=N)``.
    ``lambda_u`` is its name everywhere in the project (cct-train's ``train.unsupervised_weight.lambda_u``);
    the model's ``consistency_weight`` is w_u(t), this object's value at a step.

    Args:
        lambda_u: the weight at (and after) the end of the ramp, >= 0. (``weight`` and ``final_weight`` are
            deprecated names of the same argument, still accepted with a ``DeprecationWarning``.)
        rampup: length of the ramp, either a number of iterations (``int >= 0``; 0 = no ramp) or a fraction
            of training (``float`` in ``(0, 1]``, which needs ``total_iters``).
        total_iters: total number of training iterations (needed when ``rampup`` is a fraction).
        schedule: ``"sigmoid"`` (alias ``"exp"``), ``"linear"``, ``"log"``, ``"cosine"`` or ``"step"``.

    Call it with the current (0-based) iteration to get the weight as a ``float``.

    Raises:
        ValueError: on a negative ``lambda_u``, an invalid ``rampup``, a missing / invalid
            ``total_iters`` or an unknown ``schedule``.

    >>> w = ConsistencyWeight(30.0, rampup=0.1, total_iters=1000)  # the paper: 30 over the first 10%
    >>> w.rampup_iters, round(w(0), 3), round(w(50), 2), w(100), w(900)
    (100.0, 0.202, 8.6, 30.0, 30.0)
    """

    def __init__(
        self,
        lambda_u: float = 30.0,
        rampup: int | float = 0.1,
        total_iters: int | None = None,
        schedule: str = "sigmoid",
        *,
        weight: float | None = None,
        final_weight: float | None = None,
    ) -> None:
        for name, old in (("weight", weight), ("final_weight", final_weight)):
            if old is not None:
                warnings.warn(
                    f"ConsistencyWeight({name}=) is deprecated: the argument is called lambda_u",
                    DeprecationWarning,
                    stacklevel=2,
                )
                lambda_u = old
        value = _as_float(lambda_u, "lambda_u")
        if value < 0 or math.isinf(value):
            raise ValueError(f"lambda_u must be finite and >= 0, got {lambda_u}")
        if total_iters is not None and (
            isinstance(total_iters, bool) or not isinstance(total_iters, int) or total_iters < 1
        ):
            raise ValueError(f"total_iters must be a positive int or None, got {total_iters!r}")
        if isinstance(rampup, bool) or not isinstance(rampup, (int, float)):
            raise ValueError(
                f"rampup must be an int (iterations) or a float in (0, 1] (fraction), got {rampup!r}"
            )
        if isinstance(rampup, int):
            if rampup < 0:
                raise ValueError(f"rampup as iterations must be >= 0, got {rampup}")
            length = float(rampup)
        else:
            frac = float(rampup)
            if not 0.0 < frac <= 1.0:
                raise ValueError(
                    f"rampup as a float is a fraction of training and must be in (0, 1], got {rampup}; "
                    "pass an int for a number of iterations"
                )
            if total_iters is None:
                raise ValueError("total_iters is required when rampup is a fraction of training")
            length = frac * total_iters
        self.lambda_u = value
        self.rampup = rampup
        self.total_iters = total_iters
        self.schedule = schedule
        self._ramp = _resolve_schedule(schedule)
        #: Length of the ramp in iterations (may be fractional when given as a fraction).
        self.rampup_iters = length

    @property
    def weight(self) -> float:
        """Deprecated name of :attr:`lambda_u`."""
        warnings.warn(
            "ConsistencyWeight.weight is deprecated: use .lambda_u", DeprecationWarning, stacklevel=2
        )
        return self.lambda_u

    @property
    def final_weight(self) -> float:
        """Deprecated name of :attr:`lambda_u`."""
        warnings.warn(
            "ConsistencyWeight.final_weight is deprecated: use .lambda_u", DeprecationWarning, stacklevel=2
        )
        return self.lambda_u

    def __call__(self, iteration: int | float) -> float:
        """Weight at ``iteration`` (0-based; clipped to the ramp)."""
        return float(self.lambda_u * self._ramp(iteration, self.rampup_iters))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(lambda_u={self.lambda_u}, rampup={self.rampup}, "
            f"total_iters={self.total_iters}, schedule={self.schedule!r})"
        )
