"""pytest-benchmark hooks for the kernel suite (GPU only).

Run on a GPU machine::

    pytest benchmarks --benchmark-only                          # every op x provider x mode, bf16, named shapes
    pytest benchmarks --benchmark-only -k "sid_generator_loss and triton" --benchmark-autosave
    pytest benchmarks --benchmark-only --benchmark-compare      # against the last autosaved run

Same cases and byte model as ``sidkernels bench --suite kernels`` (:mod:`sidkernels.bench.kernels`), timed
by pytest-benchmark instead: wall clock per round with a device synchronisation, gradients reset outside
the timing, no L2 flush.  These hooks are for regression tracking between commits; the published numbers
(results CSV, figures, README) come from ``sidkernels bench`` (``do_bench``: CUDA events, L2 flushed).
On the CPU every case is skipped: interpreter or CPU timings say nothing about GPU kernels (the CPU smoke
test is ``sidkernels bench --quick``).  The repo's default ``pytest`` run (testpaths = tests) does not
collect this folder.
"""
from __future__ import annotations

import pytest
import torch

from sidkernels.bench import kernels
from sidkernels.ops import OPS

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="GPU-only benchmark hooks; the CPU smoke test is `sidkernels bench --quick`")

NAMED_SHAPES = ("cifar", "64px", "latent")
COMPILE_MODE = "max-autotune-no-cudagraphs"


@pytest.mark.parametrize("dtype", ["bf16"])
@pytest.mark.parametrize("shape_name", NAMED_SHAPES)
@pytest.mark.parametrize("mode", kernels.MODES)
@pytest.mark.parametrize("provider", kernels.PROVIDERS)
@pytest.mark.parametrize("op", list(OPS))
def test_kernel(benchmark, op, provider, mode, shape_name, dtype):
    device = torch.device("cuda")
    reason = kernels.provider_unavailable(provider, device)
    if reason is not None:
        pytest.skip(reason)
    torch.manual_seed(0)
    shape, torch_dtype = kernels.SHAPES[shape_name][0], kernels.DTYPES[dtype]
    spec = OPS[op]
    inputs = spec.example(shape, torch_dtype, device)
    leaves = [t for t in inputs if t.requires_grad]
    fn = kernels.mode_fn(kernels.forward_fn(spec, provider, inputs, COMPILE_MODE), mode)
    fn()  # compile / autotune / first allocation outside the timing
    torch.cuda.synchronize()

    def reset():
        for t in leaves:
            t.grad = None

    def call():
        fn()
        torch.cuda.synchronize()

    nbytes = spec.traffic(mode, shape, torch_dtype).nbytes
    benchmark.group = f"{op}/{mode}/{shape_name}/{dtype}"
    benchmark.extra_info.update(op=op, provider=provider, mode=mode, shape="x".join(map(str, shape)), dtype=dtype,
                                logical_bytes=nbytes)
    benchmark.pedantic(call, setup=reset, rounds=100, warmup_rounds=10, iterations=1)
    stats = getattr(getattr(benchmark, "stats", None), "stats", None)
    if stats is not None and stats.median > 0:
        benchmark.extra_info["logical_gbps_median"] = nbytes / stats.median / 1e9
