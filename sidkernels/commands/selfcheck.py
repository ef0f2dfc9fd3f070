"""Run every fused op of every available backend on fresh random inputs against the fp64 reference.

Prints one row per (op, backend, dtype): the normalised max error of the output and of every input
gradient, against the tolerance for that dtype.  Without a GPU the Triton kernels run under the Triton
interpreter (correctness only, slow); the command restarts itself with TRITON_INTERPRET=1 for that.
Exits non-zero if any check fails.
"""
from __future__ import annotations

import os
import subprocess
import sys

def _tolerance(torch):
    return {torch.float32: 2e-5, torch.bfloat16: 1.6e-2, torch.float16: 2e-3}


def add_arguments(parser) -> None:
    parser.add_argument("--batch", type=int, default=None, help="samples per check (default: 64 on GPU, 4 on CPU)")
    parser.add_argument("--shape", type=int, nargs=3, default=None, metavar=("C", "H", "W"),
                        help="per-sample shape (default: 3 32 32 on GPU, 3 16 16 on CPU)")


def _cases(sk, torch):
    """(op name, fn(inputs..., backend) -> output, input factory(shape, dtype, device))."""
    def noisy(shape, dtype, device):
        return [torch.randn(shape, device=device).to(dtype)]

    def sigma_for(t):
        return sk.sample_sigma_sid(t.shape[0], device=t.device, generator=None)

    seed = 1234
    return [
        ("add_noise", lambda x, sigma, be: sk.add_noise(x, sigma, seed=seed, return_net_input=True,
                                                         net_dtype=torch.bfloat16, return_eps=True, backend=be),
         noisy),
        ("edm_precond_in", lambda x, sigma, be: sk.edm_precond_in(x, sigma, dtype=torch.bfloat16, backend=be)[0],
         noisy),
        ("edm_precond_out", lambda x, F, sigma, be: sk.edm_precond_out(x, F, sigma, backend=be),
         lambda s, d, dev: [torch.randn(s, device=dev), torch.randn(s, device=dev).to(d)]),
        ("sid_generator_loss", lambda a, b, x, sigma, be: sk.sid_generator_loss(a, b, x, reduction="none",
                                                                                backend=be),
         lambda s, d, dev: [torch.randn(s, device=dev).to(d) for _ in range(3)]),
        ("fake_score_loss", lambda D, y, sigma, be: sk.fake_score_loss(D, y, sigma, reduction="none", backend=be),
         lambda s, d, dev: [torch.randn(s, device=dev), torch.randn(s, device=dev).to(d)]),
        *((f"distance_{kind}", lambda a, b, sigma, be, kind=kind: sk.sample_distance(a, b, kind, backend=be),
           lambda s, d, dev: [torch.randn(s, device=dev).to(d), torch.randn(s, device=dev)])
          for kind in ("l2", "l1", "pseudo_huber")),
    ], sigma_for


def _norm_err(out, ref):
    """(normalised max error, the dtype whose tolerance applies)."""
    scale = ref.double().abs().max().item()
    return (out.double() - ref.double()).abs().max().item() / max(scale, 1e-30), out.dtype


def _check(torch, sk, fn, inputs, sigma, backend):
    leaves = [t.clone().requires_grad_(True) for t in inputs]
    out = fn(*leaves, sigma, backend)
    if isinstance(out, tuple):  # add_noise: compare x_t and the network input given the drawn eps
        xt, net, eps = out
        ref_xt, ref_net = sk.ref.add_noise_ref(inputs[0].double(), sigma.double(), eps.double())
        errs = [_norm_err(xt, ref_xt.to(xt.dtype)), _norm_err(net, ref_net.to(net.dtype))]
        grads_out = [torch.randn_like(xt), torch.randn_like(net)]
        (gx,) = torch.autograd.grad([xt, net], leaves, grads_out)
        c_in = (sigma.double() ** 2 + 0.25).rsqrt().view(-1, *[1] * (xt.dim() - 1))
        return errs + [_norm_err(gx, (grads_out[0].double() + c_in * grads_out[1].double()).to(gx.dtype))]
    ref_leaves = [t.double().requires_grad_(True) for t in inputs]
    ref = fn(*ref_leaves, sigma.double(), "torch")
    g_out = torch.randn_like(ref)
    grads = torch.autograd.grad(out, leaves, g_out.to(out.dtype))
    ref_grads = torch.autograd.grad(ref, ref_leaves, g_out)
    return [_norm_err(out, ref.to(out.dtype))] + [_norm_err(g, r.to(g.dtype)) for g, r in zip(grads, ref_grads)]


def run(args) -> int:
    import torch
    if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
        print("no GPU: re-running with TRITON_INTERPRET=1 (Triton kernels interpreted on the CPU: correctness only)")
        env = dict(os.environ, TRITON_INTERPRET="1", TRITON_DEFAULT_FP_FUSION="1")
        return subprocess.call([sys.executable, "-m", "sidkernels", *sys.argv[1:]], env=env)

    import triton

    import sidkernels as sk
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    batch = args.batch or (64 if device.type == "cuda" else 4)
    shape = (batch, *(args.shape or ((3, 32, 32) if device.type == "cuda" else (3, 16, 16))))
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU (Triton interpreter)"
    print(f"sidkernels {sk.__version__} selfcheck | {name} | torch {torch.__version__} | triton "
          f"{triton.__version__} | shape {list(shape)}")
    print("errors: max |out - ref| / max |ref| against an fp64 reference (output, then each input gradient); "
          "tolerance by the compared tensor's dtype: fp32 2e-5, bf16 1.6e-2")
    header = f"{'op':<22} {'backend':<8} {'inputs':<9}  errors"
    print(header + "\n" + "-" * (len(header) + 40))
    cases, sigma_for = _cases(sk, torch)
    tolerance = _tolerance(torch)
    failures = 0
    torch.manual_seed(0)
    backends = ["torch", "triton"]
    if device.type == "cuda":
        from sidkernels import cuda_ext
        reason = cuda_ext.unavailable_reason()
        if reason is None:
            cuda_ext.require()  # builds the extension just in time if needed
            backends.append("cuda")
        else:
            print(f"cuda backend skipped: {reason}")
    for op, fn, make in cases:
        for backend in backends:
            for dtype in (torch.float32, torch.bfloat16):
                inputs = make(shape, dtype, device)
                errs = _check(torch, sk, fn, inputs, sigma_for(inputs[0]), backend)
                ok = all(err <= tolerance[dt] for err, dt in errs)
                failures += not ok
                print(f"{op:<22} {backend:<8} {str(dtype)[6:]:<9}  "
                      + "  ".join(f"{err:.1e}" for err, _ in errs) + ("" if ok else "   FAIL"))
    print(f"{'all checks passed' if not failures else f'{failures} checks FAILED'}")
    return 1 if failures else 0
