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


def add_arguments(parser) -> None:
    parser.add_argument("--batch", type=int, default=None, help="samples per check (default: 64 on GPU, 4 on CPU)")
    parser.add_argument("--shape", type=int, nargs=3, default=None, metavar=("C", "H", "W"),
                        help="per-sample shape (default: 3 32 32 on GPU, 3 16 16 on CPU)")


def _leaves(inputs):
    return [t for t in inputs if t.requires_grad]


def compare_with_fp64(op, inputs, backend):
    """``[(label, actual, expected)]``: the op's outputs and input gradients on ``backend`` against the reference
    (``backend="torch"``) run on fp64 copies of the same inputs, with the same upstream gradients."""
    import torch

    ours = [t.detach().clone().requires_grad_(t.requires_grad) for t in inputs]
    ref = [t.detach().double().requires_grad_(t.requires_grad) if t.is_floating_point() else t for t in inputs]
    out, expected = op.call(ours, backend), op.call(ref, "torch")
    pairs = [(o, e) for o, e in zip(out, expected) if o.requires_grad]
    grads_out = [torch.randn_like(e) for _, e in pairs]
    grads = torch.autograd.grad([o for o, _ in pairs], _leaves(ours), [g.to(o.dtype) for (o, _), g in
                                                                       zip(pairs, grads_out)])
    ref_grads = torch.autograd.grad([e for _, e in pairs], _leaves(ref), grads_out)
    checks = [(f"out{i}", o, e.to(o.dtype)) for i, (o, e) in enumerate(zip(out, expected)) if o.is_floating_point()]
    return checks + [(f"grad{i}", g, r.to(g.dtype)) for i, (g, r) in enumerate(zip(grads, ref_grads))]


def _norm_err(actual, expected) -> float:
    scale = expected.double().abs().max().item()
    return (actual.double() - expected.double()).abs().max().item() / max(scale, 1e-30)


def run(args) -> int:
    import torch
    if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
        print("no GPU: re-running with TRITON_INTERPRET=1 (Triton kernels interpreted on the CPU: correctness only)")
        env = dict(os.environ, TRITON_INTERPRET="1", TRITON_DEFAULT_FP_FUSION="1")
        return subprocess.call([sys.executable, "-m", "sidkernels", *sys.argv[1:]], env=env)

    import triton

    import sidkernels as sk
    from sidkernels import cuda_ext
    from sidkernels.ops import OPS

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    batch = args.batch or (64 if device.type == "cuda" else 4)
    shape = (batch, *(args.shape or ((3, 32, 32) if device.type == "cuda" else (3, 16, 16))))
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU (Triton interpreter)"
    print(f"sidkernels {sk.__version__} selfcheck | {name} | torch {torch.__version__} | triton "
          f"{triton.__version__} | shape {list(shape)}")
    print("errors: max |out - ref| / max |ref| against an fp64 reference (outputs, then each input gradient); "
          "tolerance by the compared tensor's dtype")
    header = f"{'op':<24} {'backend':<8} {'inputs':<9}  errors"
    print(header + "\n" + "-" * (len(header) + 40))
    failures = 0
    torch.manual_seed(0)
    backends = ["torch", "triton"]
    if device.type == "cuda":
        reason = cuda_ext.unavailable_reason()
        if reason is None:
            cuda_ext.require()  # builds the extension just in time if needed
            backends.append("cuda")
        else:
            print(f"cuda backend skipped: {reason}")
    for op in OPS.values():
        for backend in backends:
            for dtype in (torch.float32, torch.bfloat16):
                inputs = op.example(shape, dtype, device)
                checks = op.check(inputs, backend) if op.check else compare_with_fp64(op, inputs, backend)
                errs = [(_norm_err(actual, expected), actual.dtype) for _, actual, expected in checks]
                ok = all(err <= op.tolerance[dt] for err, dt in errs)
                failures += not ok
                print(f"{op.name:<24} {backend:<8} {str(dtype)[6:]:<9}  "
                      + "  ".join(f"{err:.1e}" for err, _ in errs) + ("" if ok else "   FAIL"))
    print(f"{'all checks passed' if not failures else f'{failures} checks FAILED'}")
    return 1 if failures else 0
