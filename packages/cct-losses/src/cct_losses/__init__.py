"""cct_losses: the losses and schedules of Cross-Consistency Training (Ouali et al., CVPR 2020).

- Supervised: :func:`ab_ce_loss` / :class:`AnnealedBootstrappedCE` (annealed bootstrapped CE).
- Unsupervised: :func:`consistency_loss` / :class:`ConsistencyLoss` (mse / kl / js against the detached
  main prediction), built on the per-element definitions :func:`pointwise_mse`, :func:`pointwise_kl`,
  :func:`pointwise_js` (registry :data:`CONSISTENCY_POINTWISE`) and :func:`confidence_mask`;
  :func:`softmax_mse_loss` (memory-lean MSE-on-softmax).
- Schedules: :func:`sigmoid_rampup`, :func:`linear_rampup`, :func:`log_rampup`, :func:`cosine_rampup`,
  :func:`cosine_rampdown`, :class:`ConsistencyWeight`.
- Weak labels: :func:`weak_label_loss` / :class:`WeakLabelLoss`.

Torch only; every loss is computed in float32 (autocast-safe) and returns a 0-d tensor.
"""

from .consistency import (
    CONSISTENCY_KINDS,
    CONSISTENCY_POINTWISE,
    ConsistencyLoss,
    confidence_mask,
    consistency_loss,
    pointwise_js,
    pointwise_kl,
    pointwise_mse,
    resize_probs,
    softmax_mse_loss,
)
from .rampups import (
    RAMPS,
    ConsistencyWeight,
    cosine_rampdown,
    cosine_rampup,
    linear_rampup,
    log_rampup,
    ramp_progress,
    sigmoid_rampup,
    step_rampup,
)
from .supervised import AnnealedBootstrappedCE, ab_ce_loss
from .weak import WeakLabelLoss, weak_label_loss

__version__ = "0.2.0"

__all__ = [
    "CONSISTENCY_KINDS",
    "CONSISTENCY_POINTWISE",
    "RAMPS",
    "AnnealedBootstrappedCE",
    "ConsistencyLoss",
    "ConsistencyWeight",
    "WeakLabelLoss",
    "__version__",
    "ab_ce_loss",
    "confidence_mask",
    "consistency_loss",
    "cosine_rampdown",
    "cosine_rampup",
    "linear_rampup",
    "log_rampup",
    "pointwise_js",
    "pointwise_kl",
    "pointwise_mse",
    "ramp_progress",
    "resize_probs",
    "sigmoid_rampup",
    "softmax_mse_loss",
    "step_rampup",
    "weak_label_loss",
]
