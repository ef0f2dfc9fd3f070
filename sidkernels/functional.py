"""Public functions: validation, backend choice, layout, reduction.  ``backend="torch"`` runs the references
of :mod:`sidkernels.ref` (autograd does the backward); other backends run that backend's kernel ops."""
from __future__ import annotations

import torch

from sidkernels import _checks as check
from sidkernels._backend import resolve_backend
from sidkernels.ops import kernel_op, sample_major
from sidkernels.ref import fake_score_loss_ref, precond_in_ref, precond_out_ref, sid_generator_loss_ref
from sidkernels.ref.distance import DISTANCE_CODE, DISTANCES, pseudo_huber_c, sample_distance_ref
from sidkernels.ref.noise import add_noise_ref
from sidkernels.ref.precond import KIND_CODE, PRECOND_KINDS

REDUCTIONS = ("none", "sum", "mean")


def _reduce(per_sample: torch.Tensor, reduction: str, loss_scale: float) -> torch.Tensor:
    if reduction == "none":
        out = per_sample
    elif reduction == "sum":
        out = per_sample.sum()
    else:
        out = per_sample.mean()
    return out if loss_scale == 1.0 else out * loss_scale


def _wants_grad(t: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and t.requires_grad


def _seed_tensor(seed, device: torch.device) -> torch.Tensor:
    if seed is None:
        return torch.randint(0, 2 ** 62, (1,), device=device, dtype=torch.int64)
    if isinstance(seed, int):
        return torch.tensor([seed], device=device, dtype=torch.int64)
    if isinstance(seed, torch.Tensor):
        if seed.dtype != torch.int64 or seed.numel() != 1:
            raise TypeError(f"seed must be an int or an int64 tensor with one element, got {seed.dtype} "
                            f"with shape {tuple(seed.shape)}")
        if seed.device != device:
            raise ValueError(f"seed is on {seed.device} but x is on {device}")
        return seed.reshape(1)
    raise TypeError(f"seed must be None, an int or an int64 tensor, got {type(seed).__name__}")


def _torch_noise(x: torch.Tensor, seed) -> torch.Tensor:
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    if seed is None:
        return torch.randn_like(x, dtype=dtype)
    gen = torch.Generator(device=x.device)
    gen.manual_seed(int(seed) if isinstance(seed, int) else int(_seed_tensor(seed, x.device).item()))
    return torch.randn(x.shape, generator=gen, dtype=dtype, device=x.device)


def add_noise(x, sigma, *, seed=None, return_net_input=False, sigma_data=0.5, net_dtype=None,
              precond="edm", return_eps=False, backend="auto"):
    """Noise injection ``x_t = x + sigma[n] * eps`` with eps ~ N(0, I) drawn inside the kernel.

    Args:
        x: clean samples ``[N, ...]`` (fp16/bf16/fp32/fp64).
        sigma: noise level per sample: ``[N]``, ``[N, 1, ...]``, a 0-dim tensor or a number; > 0.
        seed: ``None`` (drawn from torch's generator on x's device, so ``torch.manual_seed`` governs it),
            an ``int`` or an int64 device tensor.  The Triton kernel's eps depends only on the seed and
            each element's memory index; the torch backend draws ``torch.randn`` instead (another stream).
        return_net_input: also return the network input ``c_in(sigma) * x_t`` in ``net_dtype``.
        precond: which ``c_in`` the network input uses: ``"edm"`` (with ``sigma_data``), ``"vp"``, ``"ve"``.
        return_eps: also return the eps that was drawn (debug/test output; costs one more write).

    Returns ``x_t`` (x's dtype), followed by the network input and eps when asked for.
    """
    check.float_tensor("x", x)
    n = check.batch("x", x)
    sigma = check.per_sample_sigma(sigma, n, "x", x)
    check.choice("precond", precond, PRECOND_KINDS)
    if net_dtype is not None and net_dtype not in check.FLOAT_DTYPES:
        raise TypeError(f"net_dtype must be a floating dtype, got {net_dtype}")
    net_dtype = (net_dtype or x.dtype) if return_net_input else None
    backend = resolve_backend(backend, x.device, "add_noise")
    if backend == "torch":
        eps = _torch_noise(x, seed)
        xt, net = add_noise_ref(x, sigma, eps, precond=precond, sigma_data=sigma_data, net_dtype=net_dtype)
    else:
        xt, net, eps = kernel_op("add_noise", backend)(*sample_major(x), sigma, _seed_tensor(seed, x.device),
                                                        KIND_CODE[precond], float(sigma_data), net_dtype,
                                                        bool(return_eps))
    outs = (xt,) + ((net,) if return_net_input else ()) + ((eps,) if return_eps else ())
    return outs[0] if len(outs) == 1 else outs


def edm_precond_in(x, sigma, *, sigma_data=0.5, dtype=None, precond="edm", backend="auto"):
    """EDM input scaling: ``(c_in(sigma) * x).to(dtype)`` and ``c_noise(sigma)`` (fp32, shape [N]).

    ``precond`` selects the coefficient set of SID.md 5.1 (``"edm"``, ``"vp"``, ``"ve"``); ``dtype``
    defaults to x's dtype.  sigma is treated as a constant.
    """
    check.float_tensor("x", x)
    n = check.batch("x", x)
    sigma = check.per_sample_sigma(sigma, n, "x", x)
    check.choice("precond", precond, PRECOND_KINDS)
    if dtype is not None and dtype not in check.FLOAT_DTYPES:
        raise TypeError(f"dtype must be a floating dtype, got {dtype}")
    dtype = dtype or x.dtype
    backend = resolve_backend(backend, x.device, "edm_precond_in")
    if backend == "torch":
        return precond_in_ref(x, sigma, precond, sigma_data, dtype)
    return kernel_op("precond_in", backend)(*sample_major(x), sigma, KIND_CODE[precond], float(sigma_data), dtype)


def edm_precond_out(x, F, sigma, *, sigma_data=0.5, precond="edm", backend="auto"):
    """EDM output combination ``D = c_skip(sigma) * x + c_out(sigma) * F`` in fp32 (fp64 for fp64 inputs),
    from any float x and F (e.g. a bf16 network output)."""
    check.float_tensor("x", x)
    check.float_tensor("F", F)
    n = check.batch("x", x)
    check.same_shape("F", F, "x", x)
    check.same_device("F", F, "x", x)
    sigma = check.per_sample_sigma(sigma, n, "x", x)
    check.choice("precond", precond, PRECOND_KINDS)
    backend = resolve_backend(backend, x.device, "edm_precond_out")
    if backend == "torch":
        return precond_out_ref(x, F, sigma, precond, sigma_data)
    return kernel_op("precond_out", backend)(*sample_major(x, F), sigma, KIND_CODE[precond], float(sigma_data))


def sid_generator_loss(teacher_out, fake_out, x_g, *, alpha=1.2, reduction="mean", loss_scale=1.0,
                       weight_clip=1e-5, normalize=True, backend="auto"):
    """SiD generator loss (SID.md 1): per sample ``sum (a - b) * ((a - x_g) - alpha (a - b)) / w``.

    ``w = max(mean|x_g - a|, weight_clip)`` per sample, in fp32, treated as a constant (``normalize=False``
    uses w = 1).  A sample with a NaN in any input contributes zero loss and zero gradient.  ``reduction``:
    ``"none"`` -> [N]; ``"sum"``; ``"mean"`` over all N (a dropped sample counts as zero).  The official
    generator loss is ``sid_generator_loss(..., loss_scale=100)`` (``lsg / batch_gpu_total`` with mean).
    Gradients flow to all three inputs.  The loss is fp32 (fp64 when an input is fp64).
    """
    for name, t in (("teacher_out", teacher_out), ("fake_out", fake_out), ("x_g", x_g)):
        check.float_tensor(name, t)
    check.batch("x_g", x_g)
    for name, t in (("teacher_out", teacher_out), ("fake_out", fake_out)):
        check.same_shape(name, t, "x_g", x_g)
        check.same_device(name, t, "x_g", x_g)
    check.choice("reduction", reduction, REDUCTIONS)
    if not weight_clip > 0:
        raise ValueError(f"weight_clip must be > 0, got {weight_clip}")
    backend = resolve_backend(backend, x_g.device, "sid_generator_loss")
    if backend == "torch":
        per_sample = sid_generator_loss_ref(teacher_out, fake_out, x_g, alpha, weight_clip=weight_clip,
                                            normalize=normalize)
    else:
        per_sample = kernel_op("sid_loss", backend)(
            *sample_major(teacher_out, fake_out, x_g), float(alpha), float(weight_clip), bool(normalize),
            _wants_grad(teacher_out), _wants_grad(fake_out), _wants_grad(x_g))[0]
    return _reduce(per_sample, reduction, loss_scale)


def fake_score_loss(denoised, target, sigma, *, sigma_data=0.5, reduction="mean", loss_scale=1.0,
                    backend="auto"):
    """EDM denoising loss of the fake-score net (SID.md 2): per sample ``lambda(sigma) sum (D - y)^2``.

    ``lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2``; samples with a NaN in D or y
    contribute zero loss and gradient; reductions as in :func:`sid_generator_loss` (the official loss is
    ``loss_scale=1`` with ``"mean"``).  The loss is fp32 (fp64 when an input is fp64).
    """
    check.float_tensor("denoised", denoised)
    check.float_tensor("target", target)
    n = check.batch("denoised", denoised)
    check.same_shape("target", target, "denoised", denoised)
    check.same_device("target", target, "denoised", denoised)
    sigma = check.per_sample_sigma(sigma, n, "denoised", denoised)
    check.choice("reduction", reduction, REDUCTIONS)
    backend = resolve_backend(backend, denoised.device, "fake_score_loss")
    if backend == "torch":
        per_sample = fake_score_loss_ref(denoised, target, sigma, sigma_data=sigma_data)
    else:
        want = _wants_grad(denoised) or _wants_grad(target)
        per_sample = kernel_op("fake_score_loss", backend)(*sample_major(denoised, target), sigma,
                                                           float(sigma_data), want)[0]
    return _reduce(per_sample, reduction, loss_scale)


def sample_distance(a, b, kind="l2", *, c=None, reduction="none", backend="auto"):
    """Per-sample distance between ``a`` and ``b`` (SIGN.md 2.3, 4.4), with r = a - b over each sample:

    ``"l2"``: mean r^2;  ``"l1"``: mean |r|;  ``"pseudo_huber"``: sqrt(sum r^2 + c^2) - c, with iCT's
    c = 0.00054 sqrt(D) unless ``c`` (> 0) is given.  ``reduction``: ``"none"`` -> [N], ``"sum"``, ``"mean"``.
    Gradients flow to both inputs (in their dtypes); a NaN propagates as in plain PyTorch (no drop).
    The result is fp32 (fp64 when an input is fp64).
    """
    check.float_tensor("a", a)
    check.float_tensor("b", b)
    check.batch("a", a)
    check.same_shape("b", b, "a", a)
    check.same_device("b", b, "a", a)
    check.choice("kind", kind, DISTANCES)
    check.choice("reduction", reduction, REDUCTIONS)
    if kind == "pseudo_huber":
        c = pseudo_huber_c(a[0].numel()) if c is None else c
        if not c > 0:
            raise ValueError(f"c must be > 0 for the pseudo-Huber distance, got {c}")
    elif c is not None:
        raise ValueError(f"c is the pseudo-Huber constant; kind {kind!r} takes none, got c={c}")
    backend = resolve_backend(backend, a.device, "sample_distance")
    if backend == "torch":
        per_sample = sample_distance_ref(a, b, kind, c)
    else:
        per_sample = kernel_op("distance", backend)(*sample_major(a, b), DISTANCE_CODE[kind], float(c or 0.0))[0]
    return _reduce(per_sample, reduction, 1.0)
