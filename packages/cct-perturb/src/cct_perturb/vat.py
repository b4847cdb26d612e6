"""I-VAT: virtual adversarial perturbation of the features through an auxiliary decoder."""

from __future__ import annotations

import contextlib
import functools
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Literal

import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.module import register_module_forward_pre_hook
from torch.nn.parameter import UninitializedBuffer
from torch.overrides import TorchFunctionMode

from cct_perturb._base import Perturbation, PerturbationInputs
from cct_perturb._utils import _check_features, l2_normalize_per_sample

__all__ = ["VAT", "vat", "vat_direction"]

Decoder = Callable[[torch.Tensor], torch.Tensor]
VATMethod = Literal["auto", "limit", "finite_difference"]
VATTarget = Literal["decoder", "main"]

#: Below this ``xi``, "auto" computes the power iteration's xi -> 0 limit exactly (own target only): in
#: float32, ``z + xi * d`` with ``||d|| = 1`` over ``D * h * w`` elements rounds back to ``z`` and the
#: finite difference of the decoder's own KL is rounding noise (measured: cosine ~0.0 with the float64
#: direction at xi = 1e-6, 0.998 at xi = 1e-3).
_LIMIT_BELOW_XI = 1e-3


def _kl_to_target(logits: torch.Tensor, target_prob: torch.Tensor) -> torch.Tensor:
    """KL(target || softmax(logits)) up to a constant, in float32, summed over classes and pixels.

    The target's entropy does not depend on the decoder's input, so only the cross-entropy
    ``-sum(p * log q)`` is computed (same gradient, half the work on large predictions). Summed rather
    than averaged: the scale does not matter (the gradient is normalised) and larger values keep the
    backward pass through a float16 decoder away from underflow.
    """
    if logits.shape[-2:] != target_prob.shape[-2:]:
        logits = F.interpolate(
            logits.float(), size=target_prob.shape[-2:], mode="bilinear", align_corners=False
        )
    log_q = F.log_softmax(logits.float(), dim=1)
    return -(target_prob * log_q).sum()


@contextlib.contextmanager
def _modules_on_buffer_copies() -> Iterator[None]:
    """Run every module called during the search (from this thread) on copies of its buffers.

    A BatchNorm layer in train mode updates ``running_mean``, ``running_var`` and ``num_batches_tracked``
    during its forward, so the search's extra forwards would count as batches seen. Copying the old values
    back afterwards (``buf.copy_``, cct-perturb 0.2-0.3) bumps the buffers' version counters, and a graph
    the caller built with the same decoder before ``vat()`` (a shared head: UniMatch decodes clean and
    perturbed features with one decoder) saved them at their old version: its backward failed ("modified
    by an inplace operation"). So the originals are never written: when a module is first called during
    the search, its buffers are replaced, by assignment in its buffer dict, with clones, and the original
    tensor objects are put back on exit. The modules are found by a global forward pre-hook rather than by
    walking ``decoder.modules()``, so a decoder that is a closure (``lambda t: model.decode(c1, t)``), a
    bound method or a plain function calling modules is covered as well as an ``nn.Module``. Only calls
    from this thread are affected (other threads, e.g. DataParallel replicas, keep their own); calls made
    later in other threads (autograd's recomputation of a checkpointed module) find the copies already in
    place. Buffers shared by several modules share one copy.
    """
    thread = threading.get_ident()
    seen: dict[int, nn.Module] = {}  # keeps the modules alive, so their ids stay unique
    copies: dict[int, torch.Tensor] = {}
    swapped: list[tuple[nn.Module, str, torch.Tensor]] = []

    def use_copies(module: nn.Module, args: object) -> None:
        if threading.get_ident() != thread or id(module) in seen:
            return
        seen[id(module)] = module
        for name, buf in module._buffers.items():
            if buf is None or isinstance(buf, UninitializedBuffer):
                continue
            copy = copies.get(id(buf))
            if copy is None:
                with torch.no_grad():
                    copy = copies[id(buf)] = buf.clone()
            swapped.append((module, name, buf))
            module._buffers[name] = copy

    handle = register_module_forward_pre_hook(use_copies)
    try:
        yield
    finally:
        handle.remove()
        for module, name, buf in reversed(swapped):
            module._buffers[name] = buf


def _check_vat_args(z: torch.Tensor, decoder: object, target: object, xi: object, iterations: object) -> None:
    if not isinstance(z, torch.Tensor):
        raise TypeError(f"vat: `z` must be a tensor (B, D, h, w), got {type(z).__name__}")
    _check_features(z)
    if isinstance(decoder, torch.Tensor) or not callable(decoder):
        got = (
            f"a tensor of shape {tuple(decoder.shape)}"
            if isinstance(decoder, torch.Tensor)
            else type(decoder)
        )
        raise TypeError(
            "vat: `decoder` must be a callable (B, D, h, w) -> (B, C, H, W) logits (the auxiliary decoder), "
            f"got {got}; the order is vat(z, decoder, target=None)"
        )
    if target is not None:
        if not isinstance(target, torch.Tensor):
            raise TypeError(
                "vat: `target` must be None (the decoder's own clean prediction, standard VAT) or the main "
                f"logits tensor (B, C, H, W), got {type(target).__name__}; the order is vat(z, decoder, target)"
            )
        if target.ndim != 4 or not target.is_floating_point():
            raise ValueError(
                "vat: `target` must be floating-point logits (B, C, H, W) in the decoder's output layout, "
                f"got {target.dtype} of shape {tuple(target.shape)}"
            )
    if isinstance(xi, bool) or not isinstance(xi, int | float):
        raise TypeError(
            f"vat: `xi` must be a float, got {type(xi).__name__} (pass a generator as generator=)"
        )
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be an int >= 1, got {iterations!r}")


@functools.cache
def _load_jvp_decompositions() -> None:
    """Import what torch's forward-mode AD loads on its first ``make_dual``, once, without its warning.

    torch builds those decompositions with ``torch.jit.script``, which warns (FutureWarning, torch >= 2.10)
    on behalf of torch itself: a user of VAT can do nothing about it, so it is not shown to them.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
        # A torch without the module: make_dual loads what it needs itself.
        with contextlib.suppress(ImportError):
            import torch._decomp.decompositions_for_jvp  # noqa: F401


def _tangent_like_primal(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        primal, tangent = fwAD.unpack_dual(value)
        if tangent is not None and tangent.dtype != primal.dtype:
            return fwAD.make_dual(primal, tangent.to(primal.dtype))
        return value
    if type(value) in (tuple, list):
        return type(value)(_tangent_like_primal(v) for v in value)
    return value


class _TangentsLikePrimals(TorchFunctionMode):
    """Give every dual tensor an op returns a tangent of its primal's dtype.

    Under CPU bf16 autocast, BatchNorm / GroupNorm run in mixed precision (bf16 input, float32 weight and
    statistics) and their forward-AD formulas return a float32 tangent for a bf16 primal; the next
    convolution then fails with "expected scalar type Float but found BFloat16", an error that says
    nothing about VAT. Casting such a tangent to its primal's dtype right after the op that made it is
    what the reverse mode does with gradients (the engine casts each to its input's dtype).
    """

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        return _tangent_like_primal(func(*args, **(kwargs or {})))


def _jvp_forward_ad(
    z_var: torch.Tensor, decoder: Decoder, d: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(decoder(z), J d)`` in one forward pass with forward-mode AD."""
    _load_jvp_decompositions()
    with fwAD.dual_level():
        with _TangentsLikePrimals():
            out = decoder(fwAD.make_dual(z_var, d.to(z_var.dtype)))
        logits, tangent = fwAD.unpack_dual(out)
    return logits, tangent


def _jvp_double_backward(
    z_var: torch.Tensor, decoder: Decoder, d: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(decoder(z), J d)`` by reverse mode only: ``J d = d/du <J^T u, d>`` (``J^T u`` is linear in ``u``).

    For decoders with a layer that has no forward-mode formula (a custom ``autograd.Function`` without
    ``jvp``): it needs a backward that is itself differentiable, and costs two more backward passes.
    """
    logits = decoder(z_var)
    if not logits.requires_grad:
        return logits, None
    u = torch.zeros_like(logits, requires_grad=True)
    (vjp,) = torch.autograd.grad(logits, [z_var], grad_outputs=u, create_graph=True, allow_unused=True)
    if vjp is None:  # the output does not depend on z
        return logits, None
    if not vjp.requires_grad:
        raise RuntimeError("the decoder's backward is not differentiable")
    # allow_unused=False: a backward that cuts the graph (once_differentiable) is an error, not J d = 0.
    (tangent,) = torch.autograd.grad(vjp, [u], grad_outputs=d.to(vjp.dtype))
    return logits, tangent


def _limit_step(z_var: torch.Tensor, decoder: Decoder, d: torch.Tensor) -> torch.Tensor:
    r"""``J^T F J d``: the Hessian of ``d -> KL(p(z) || p(z + d))`` at ``d = 0`` times ``d``, float32.

    ``J`` is the decoder's Jacobian at ``z`` (``J d`` by forward-mode AD, ``J^T v`` by one backward pass
    with respect to ``z`` only) and ``F = diag(p) - p p^T`` per pixel, with ``p`` the clean softmax. At
    ``d = 0`` the KL's gradient is zero, so this is its exact second-order term: the direction the finite
    difference with a tiny ``xi`` approximates, without the cancellation. A decoder that forward-mode AD
    cannot run gets ``J d`` by double backward instead (same value, a warning says so).
    """
    try:
        logits, tangent = _jvp_forward_ad(z_var, decoder, d)
    except torch.OutOfMemoryError:
        raise
    except (RuntimeError, NotImplementedError) as forward_error:
        try:
            logits, tangent = _jvp_double_backward(z_var, decoder, d)
        except torch.OutOfMemoryError:
            raise
        except (RuntimeError, NotImplementedError) as error:
            raise RuntimeError(
                "vat: the exact xi -> 0 limit (method='auto' with the decoder's own target and xi <= 1e-3, or "
                "method='limit') needs J d through the decoder, by forward-mode AD or by double backward, and "
                f"both failed: forward-mode AD: {str(forward_error).rstrip('.')}; double backward: "
                f"{str(error).rstrip('.')}. Pass "
                "method='finite_difference' with a step the dtype resolves (e.g. xi=1e-3 in float32)."
            ) from error
        warnings.warn(
            f"vat: forward-mode AD failed through the decoder ({str(forward_error).rstrip('.')}); J d is "
            "computed by double backward instead (the same direction, two more backward passes). method='finite_difference' "
            "with xi >= 1e-3 avoids both.",
            RuntimeWarning,
            stacklevel=4,
        )
    if tangent is None:  # the decoder's output does not depend on z
        return torch.zeros_like(d)
    with torch.autocast(device_type=z_var.device.type, enabled=False):
        p = F.softmax(logits.detach().float(), dim=1)
        u = tangent.detach().float()
        fu = p * (u - (p * u).sum(dim=1, keepdim=True))
    (grad,) = torch.autograd.grad(logits, [z_var], grad_outputs=fu.to(logits.dtype), allow_unused=True)
    return torch.zeros_like(d) if grad is None else grad


def vat_direction(
    z: torch.Tensor,
    decoder: Decoder,
    target: torch.Tensor | None = None,
    xi: float = 1e-6,
    iterations: int = 1,
    *,
    method: VATMethod = "auto",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""The adversarial direction of :func:`vat`, unit L2 norm per sample, float32, detached.

    Args:
        z: features :math:`(B, D, h, w)`.
        decoder: the auxiliary decoder, :math:`(B, D, h, w) \to (B, C, H', W')` logits.
        target: ``None`` (default): the decoder's own clean prediction ``softmax(decoder(z))``, standard
            VAT (paper 3.2.3, the original's ``get_r_adv``). Or the main decoder's logits
            :math:`(B, C, H, W)` (a constant): the direction that most increases the divergence from the
            main prediction (a first-order step on the consistency loss, not VAT).
        xi: size of the finite-difference step of the power iteration.
        iterations: power iterations.
        method: ``"finite_difference"``: the gradient of the KL at ``z + xi d`` (as written in the
            paper). ``"limit"`` (own target only): its ``xi -> 0`` limit computed exactly, ``J^T F J d``
            (forward-mode AD for ``J d``, one backward for ``J^T``; under autocast the tangents follow
            their primals' dtype; a layer without a forward-mode formula makes it fall back to double
            backward, with a warning). ``"auto"``: ``"limit"`` for the own target with ``xi <= 1e-3``,
            else ``"finite_difference"``.
        generator: optional generator on ``z.device`` for the random start.

    Returns:
        direction :math:`(B, D, h, w)`, float32, norm 1 per sample, no graph.
    """
    _check_vat_args(z, decoder, target, xi, iterations)
    if method not in ("auto", "limit", "finite_difference"):
        raise ValueError(f"method must be 'auto', 'limit' or 'finite_difference', got {method!r}")
    if method == "limit" and target is not None:
        raise ValueError("method='limit' applies to the decoder's own target (target=None) only")
    use_limit = method == "limit" or (method == "auto" and target is None and xi <= _LIMIT_BELOW_XI)
    device_type = z.device.type
    # inference_mode(False): the search needs autograd even when the caller runs under inference_mode.
    with torch.inference_mode(False), torch.enable_grad(), _modules_on_buffer_copies():
        start = torch.rand(z.shape, generator=generator, device=z.device, dtype=torch.float32) - 0.5
        d = l2_normalize_per_sample(start)
        z_const = z.detach()
        if z_const.is_inference():
            z_const = z_const.clone()
        if use_limit:
            z_var = z_const.requires_grad_(True)  # a new leaf: z itself is not touched
            for _ in range(iterations):
                grad = _limit_step(z_var, decoder, d)
                d = l2_normalize_per_sample(grad, fallback=d)
            return d.detach()
        z_const = z_const.float()
        with torch.no_grad():
            if target is None:
                target_logits = decoder(z_const.to(z.dtype))
            else:
                target_logits = target.detach()
            with torch.autocast(device_type=device_type, enabled=False):
                target_prob = F.softmax(target_logits.float(), dim=1)
        for _ in range(iterations):
            d_var = d.detach().requires_grad_(True)
            # z + xi * d in float32 (xi = 1e-6 vanishes in bf16), cast back to what the decoder expects.
            logits = decoder((z_const + xi * d_var).to(z.dtype))
            with torch.autocast(device_type=device_type, enabled=False):
                loss = _kl_to_target(logits, target_prob)
            (grad,) = torch.autograd.grad(loss, [d_var], allow_unused=True)
            if grad is None:
                grad = torch.zeros_like(d_var)
            # A sample whose gradient is exactly zero keeps the previous direction (norm stays 1).
            d = l2_normalize_per_sample(grad, fallback=d)
    return d.detach()


def vat(
    z: torch.Tensor,
    decoder: Decoder,
    target: torch.Tensor | None = None,
    xi: float = 1e-6,
    eps: float = 2.0,
    iterations: int = 1,
    *,
    method: VATMethod = "auto",
    out_dtype: torch.dtype | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Virtual adversarial perturbation of ``z`` through an auxiliary decoder (I-VAT).

    ``d ~ U(-0.5, 0.5)`` normalised per sample (L2 over ``D, h, w``); each power iteration takes the
    gradient of :math:`KL(q \,\|\, \mathrm{softmax}(decoder(z + \xi d)))` with respect to ``d`` only and
    normalises it; then ``r_adv = eps * d`` and the result is ``z + r_adv``.

    The target ``q`` is, by default (``target=None``), the decoder's OWN clean prediction
    ``softmax(decoder(z))``: standard VAT, the perturbation that alters the auxiliary decoder's prediction
    the most (paper 3.2.3; the original's ``get_r_adv``). Passing the main decoder's logits as ``target``
    uses them as ``q`` instead: a different perturbation (a first-order step on the consistency loss).

    With the own target the KL's gradient at ``d = 0`` is zero and the power iteration measures its
    curvature; with ``xi = 1e-6`` (original config) a float32 finite difference cannot resolve it
    (``z + xi * d`` rounds back to ``z``), so ``method="auto"`` computes the ``xi -> 0`` limit exactly
    (``J^T F J d``, see :func:`vat_direction`). The search uses ``torch.autograd.grad`` / forward-mode AD
    with respect to ``z`` or ``d`` only: no parameter's ``.grad`` is created or changed. ``r_adv`` is a
    constant: the search builds no graph into ``z`` or the decoder, while the returned tensor keeps
    ``z``'s own graph (the caller's loss still reaches the encoder through ``z``).
    :math:`\|r_{adv}\| = eps` per sample exactly in float32 (max-abs then L2 normalisation; a zero
    gradient keeps the random direction: never NaN).

    The KL runs in float32 with autocast disabled, so this works inside ``torch.autocast``; the decoder
    runs under the caller's autocast state and train/eval mode, and it works under
    ``torch.inference_mode()`` too. No buffer of a module the decoder calls is written: the search runs
    each module on copies of its buffers (BatchNorm's running statistics do not advance; the original
    tensors are not even touched, so a graph the caller built with the same decoder before, e.g. a shared
    head, still back-propagates). The decoder may be an ``nn.Module`` or any callable that calls modules
    (``lambda t: model.decode(c1, t)`` for a two-input decoder). When
    the decoder's output and ``target`` differ in spatial size, the output is resized to ``target``'s size
    (bilinear). Inside DDP, pass the unwrapped auxiliary decoder (``ddp_model.module.aux_decoder``).

    Low precision: ``z + r_adv`` rounded to bfloat16 keeps the norm but not the direction (an
    ``r_adv`` element much smaller than its ``z`` element is rounded away: measured 40% of the elements
    unchanged, cosine 0.87 with the intended ``r_adv``). ``out_dtype=torch.float32`` returns the sum in
    float32 (exact direction); or take ``eps * vat_direction(...)`` and add it where you want.

    Args:
        z: features :math:`(B, D, h, w)`, with or without ``requires_grad``.
        decoder: the auxiliary decoder, any callable :math:`(B, D, h, w) \to (B, C, H', W')` logits.
        target: ``None`` (default, standard VAT: the decoder's own clean prediction) or the main
            decoder's logits :math:`(B, C, H, W)` (detached inside).
        xi: power-iteration step (original config: 1e-6).
        eps: norm of the perturbation per sample (original config: 2.0).
        iterations: power iterations (original config: 1).
        method: ``"auto"``, ``"limit"`` or ``"finite_difference"``, see :func:`vat_direction`.
        out_dtype: dtype of the result (default ``z.dtype``); the sum is computed in float32.
        generator: optional generator on ``z.device`` for the random start.

    Returns:
        perturbed features :math:`(B, D, h, w)`, dtype ``out_dtype`` or ``z.dtype``.

    >>> decoder = torch.nn.Conv2d(4, 3, 1)
    >>> z = torch.randn(2, 4, 5, 5, generator=torch.Generator().manual_seed(0))
    >>> out = vat(z, decoder, eps=2.0, generator=torch.Generator().manual_seed(1))
    >>> [round(float(n), 4) for n in (out - z).flatten(1).norm(dim=1)]  # ||r_adv|| = eps per sample
    [2.0, 2.0]
    >>> decoder.weight.grad is None  # no gradient left on the decoder
    True
    """
    if isinstance(eps, bool) or not isinstance(eps, int | float):
        raise TypeError(
            f"vat: `eps` must be a float, got {type(eps).__name__} (pass a generator as generator=)"
        )
    if eps < 0:
        raise ValueError(f"vat: `eps` must be >= 0, got {eps}")
    d = vat_direction(z, decoder, target, xi, iterations, method=method, generator=generator)
    dtype = z.dtype if out_dtype is None else out_dtype
    r_adv = float(eps) * d
    if dtype == torch.float32 and z.dtype == torch.float32:
        return z + r_adv
    return (z.float() + r_adv).to(dtype)


class VAT(Perturbation):
    r"""Module form of :func:`vat`: ``forward(z, decoder, target=None)``, :math:`(B, D, h, w)` in and out.

    ``target`` (constructor): ``"decoder"`` (default, standard VAT: the auxiliary decoder's own clean
    prediction; a ``target`` tensor given to ``forward`` is then not used, so generic callers may always
    pass the main logits) or ``"main"`` (the main decoder's logits given to ``forward``, required).
    The decoder is passed at call time (each auxiliary decoder perturbs through itself); it is not
    registered as a submodule.
    """

    inputs: ClassVar[PerturbationInputs] = "decoder"

    def __init__(
        self,
        xi: float = 1e-6,
        eps: float = 2.0,
        iterations: int = 1,
        *,
        target: VATTarget = "decoder",
        method: VATMethod = "auto",
        out_dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
            raise ValueError(f"iterations must be an int >= 1, got {iterations!r}")
        if target not in ("decoder", "main"):
            raise ValueError(f"VAT target must be 'decoder' (standard VAT) or 'main', got {target!r}")
        if method not in ("auto", "limit", "finite_difference"):
            raise ValueError(f"method must be 'auto', 'limit' or 'finite_difference', got {method!r}")
        self.xi = float(xi)
        self.eps = float(eps)
        self.iterations = int(iterations)
        self.target: VATTarget = target
        self.method: VATMethod = method
        self.out_dtype = out_dtype

    def forward(
        self,
        z: torch.Tensor,
        decoder: Decoder,
        target: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        if self.target == "main":
            if target is None:
                raise ValueError(
                    "VAT(target='main') needs the main decoder's logits: forward(z, decoder, target)"
                )
            q: torch.Tensor | None = target
        else:
            q = None
        return vat(
            z,
            decoder,
            q,
            self.xi,
            self.eps,
            self.iterations,
            method=self.method,
            out_dtype=self.out_dtype,
            generator=generator,
        )

    def extra_repr(self) -> str:
        return f"xi={self.xi}, eps={self.eps}, iterations={self.iterations}, target={self.target!r}"
