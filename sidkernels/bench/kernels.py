"""Kernel suite: every public op x provider x mode x shape x dtype.

Providers
    ``eager``    the plain PyTorch reference of the op (``Op.eager``: what the tests check against);
                 ``add_noise`` draws its eps with ``torch.randn_like`` first, as ``backend="torch"`` does.
    ``compile``  ``torch.compile`` of that same reference function (Inductor fuses it, RNG included), fresh
                 per case (``torch._dynamo.reset()``, ``dynamic=False``); mode ``max-autotune-no-cudagraphs``
                 on CUDA by default (autotuned configs, no CUDA graphs since no other provider gets them).
    ``triton``   the public op with ``backend="triton"`` (CUDA only: interpreter timings are not performance).
    ``cuda``     the public op with ``backend="cuda"`` (skipped, with :func:`sidkernels.cuda_ext.unavailable_reason`,
                 when the extension cannot be loaded).
    The fused providers run with the value checks off (``sigma > 0`` would cost a host sync per call that
    the references do not pay), so all four time the same work.  On a GPU each fused case is also timed as
    a replayed CUDA graph (``time_graphed_us``): the difference to ``time_us`` is the op's host overhead
    (validation, dispatch, launches), reported apart from its device time.

Modes, with inputs that require grad as in training
    ``forward``  the op's forward (it records what its backward needs);
    ``backward`` the backward of one stored forward (``retain_graph=True``), upstream gradients fixed;
    ``full``     forward then backward.

Each case is warmed up once per mode (compilation, autotuning, first-call allocation) before timing
(:mod:`sidkernels.bench.timing`).  Rows per case: ``time_us``; ``bytes`` (:mod:`sidkernels.bench.byte_model`);
``gbps`` = bytes / time; ``pct_copy`` = copy time / op time x 100, where the copy is a device-to-device
``dst.copy_(src)`` moving the same number of bytes (half read, half written), timed in the same run; and
``peak_mem_mib`` on CUDA.  One ``copy`` row set per distinct byte count.
"""
from __future__ import annotations

import dataclasses
import gc
import time
import traceback
from typing import Callable

import torch

from sidkernels import cuda_ext
from sidkernels._checks import value_checks
from sidkernels.bench import byte_model
from sidkernels.bench.results import ResultsCSV, shape_str
from sidkernels.bench.timing import Quantiles, peak_memory_mib, synchronize, time_call, time_graphed
from sidkernels.ops import OPS, Op

PROVIDERS = ("eager", "compile", "triton", "cuda")
MODES = byte_model.MODES
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32, "fp16": torch.float16}

# Named shapes: CIFAR-10, 64x64 images, SD-style latents; the sweep keeps 3x64x64 samples and grows the batch
# from 0.2M to 201M elements per tensor (well past the L2 cache) for the bandwidth curve.
SHAPES = {"cifar": [(256, 3, 32, 32)], "64px": [(128, 3, 64, 64)], "latent": [(32, 4, 128, 128)],
          "sweep": [(n, 3, 64, 64) for n in (16, 64, 256, 1024, 4096, 16384)]}
QUICK_SHAPES = {"tiny": [(4, 3, 8, 8)]}


# ------------------------------------------------------------------ providers and modes
def provider_unavailable(provider: str, device: torch.device) -> str | None:
    """Why ``provider`` cannot run on ``device`` (None when it can)."""
    if provider in ("triton", "cuda") and device.type != "cuda":
        return (f"{provider} needs a CUDA GPU; on the CPU Triton only runs under its interpreter, whose "
                f"timings say nothing about performance")
    if provider == "cuda":
        return cuda_ext.unavailable_reason()
    return None


def forward_fn(op: Op, provider: str, inputs: tuple, compile_mode: str | None) -> Callable[[], tuple]:
    """A zero-argument callable running ``op``'s forward with ``provider``; returns its outputs."""
    if provider == "eager":
        return lambda: op.eager(*inputs)
    if provider == "compile":
        torch._dynamo.reset()  # fresh specialisation per case: no recompile limit, no dynamic shapes
        compiled = torch.compile(op.eager, mode=compile_mode, dynamic=False)
        return lambda: compiled(*inputs)
    if provider in ("triton", "cuda"):
        def fused():
            with value_checks(False):
                return op.call(inputs, provider)
        return fused
    raise ValueError(f"unknown provider {provider!r}; choose from {PROVIDERS}")


def _differentiable(outputs: tuple) -> list[torch.Tensor]:
    return [o for o in outputs if isinstance(o, torch.Tensor) and o.requires_grad]


def mode_fn(forward: Callable[[], tuple], mode: str) -> Callable[[], object]:
    """The callable timed for ``mode`` (upstream gradients are drawn once, outside the timing)."""
    if mode == "forward":
        return forward
    outputs = _differentiable(forward())
    grads = [torch.ones_like(o) if o.dim() == 0 else torch.randn_like(o) for o in outputs]
    if mode == "backward":
        return lambda: torch.autograd.backward(outputs, grads, retain_graph=True)
    if mode == "full":
        return lambda: torch.autograd.backward(_differentiable(forward()), grads)
    raise ValueError(f"unknown mode {mode!r}; choose from {MODES}")


# ------------------------------------------------------------------ the suite
@dataclasses.dataclass
class KernelSuite:
    """Runs the kernel suite into a :class:`ResultsCSV`; ``errors`` collects unexpected provider failures."""
    out: ResultsCSV
    device: torch.device
    ops: tuple = tuple(OPS)
    providers: tuple = PROVIDERS
    modes: tuple = MODES
    shapes: dict = dataclasses.field(default_factory=lambda: dict(SHAPES))
    dtypes: tuple = ("bf16", "fp32")
    compile_mode: str | None = None
    warmup_ms: float = 25
    rep_ms: float = 100
    log: Callable[[str], None] = print
    resume: bool = False            # skip cases this GPU already measured at this commit
    deadline: float | None = None   # time.monotonic() after which no new (shape, dtype, op) case starts
    stopped: bool = False           # set when the deadline stopped the run early
    errors: list = dataclasses.field(default_factory=list)
    _copies: dict = dataclasses.field(default_factory=dict)

    def time(self, fn, grad_to_none=None) -> Quantiles:
        return time_call(fn, self.device, grad_to_none=grad_to_none, warmup_ms=self.warmup_ms, rep_ms=self.rep_ms)

    def copy_time(self, nbytes: int) -> Quantiles:
        """Time of a device-to-device copy moving ``nbytes`` (read + write), measured once per size."""
        if nbytes not in self._copies:
            src = torch.empty(byte_model.copy_bytes(nbytes), dtype=torch.uint8, device=self.device)
            src.random_(0, 256)
            dst = torch.empty_like(src)
            t = self.time(lambda: dst.copy_(src))
            self._copies[nbytes] = t
            case = dict(suite="kernels", op="copy", provider="torch", mode="d2d", shape_name="bytes",
                        shape=str(nbytes), dtype="uint8")
            self.out.add(**case, metric="time_us", value=t)
            self.out.add(**case, metric="bytes", value=nbytes)
            self.out.add(**case, metric="gbps", value=t.inverse(nbytes * 1e-3))
            del src, dst
        return self._copies[nbytes]

    def run(self) -> None:
        for shape_name, shapes in self.shapes.items():
            for shape in shapes:
                for dtype_name in self.dtypes:
                    for op_name in self.ops:
                        if self.deadline is not None and time.monotonic() > self.deadline:
                            self.stopped = True
                            return
                        self._run_op(op_name, shape_name, tuple(shape), dtype_name)
                        self.out.flush()

    def _todo(self, base: dict) -> list[str]:
        """The modes of ``base`` (one op, provider, shape, dtype) still to measure."""
        return [m for m in self.modes if not (self.resume and self.out.measured(**base, mode=m))]

    def _run_op(self, op_name: str, shape_name: str, shape: tuple, dtype_name: str) -> None:
        bases = [dict(suite="kernels", op=op_name, provider=provider, shape_name=shape_name, shape=shape_str(shape),
                      dtype=dtype_name) for provider in self.providers]
        todo = [(base, self._todo(base)) for base in bases]
        if not any(modes for _, modes in todo):
            return
        op, dtype = OPS[op_name], DTYPES[dtype_name]
        inputs = op.example(shape, dtype, self.device)
        leaves = [t for t in inputs if t.requires_grad]
        for base, modes in todo:
            if not modes:
                continue
            provider = base["provider"]
            reason = provider_unavailable(provider, self.device)
            if reason is None:
                try:
                    forward = forward_fn(op, provider, inputs, self.compile_mode)
                except Exception as e:  # noqa: BLE001 - recorded, reported, and the suite goes on
                    reason = self._failure(base, e)
            for mode in modes:
                if reason is not None:
                    self.out.skip(**base, mode=mode, reason=reason)
                    continue
                try:
                    self._measure(op, base, mode, forward, leaves, shape, dtype)
                except Exception as e:  # noqa: BLE001
                    self.out.skip(**base, mode=mode, reason=self._failure(dict(base, mode=mode), e))
            for t in leaves:
                t.grad = None
        del inputs, leaves
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _failure(self, case: dict, e: Exception) -> str:
        reason = f"error: {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
        self.errors.append((case, traceback.format_exc()))
        self.log(f"  FAILED {case}: {reason}")
        return reason

    def _measure(self, op: Op, base: dict, mode: str, forward, leaves, shape, dtype) -> None:
        fn = mode_fn(forward, mode)
        fn()  # warm-up: compilation, autotuning, first allocations
        synchronize(self.device)
        for t in leaves:
            t.grad = None
        t = self.time(fn, grad_to_none=leaves)
        nbytes = op.traffic(mode, shape, dtype).nbytes
        copy = self.copy_time(nbytes)
        case = dict(base, mode=mode)
        extra = {"compile_mode": self.compile_mode} if base["provider"] == "compile" else {}
        self.out.add(**case, metric="time_us", value=t, extra=extra)
        self.out.add(**case, metric="bytes", value=nbytes)
        self.out.add(**case, metric="gbps", value=t.inverse(nbytes * 1e-3))  # B / us = 1e-3 GB/s
        self.out.add(**case, metric="pct_copy", value=t.inverse(copy.p50 * 100))
        if base["provider"] in ("triton", "cuda") and self.device.type == "cuda":
            try:
                graphed, note = time_graphed(fn, rep_ms=self.rep_ms, grad_to_none=leaves), {}
            except Exception as e:  # noqa: BLE001 - a capture failure is a finding, not a failed case
                graphed, note = None, {"reason": f"CUDA graph capture failed: {type(e).__name__}: {e}"[:300]}
            self.out.add(**case, metric="time_graphed_us", value=graphed, extra=note)
        peak = peak_memory_mib(fn, self.device, grad_to_none=leaves)
        if peak is not None:
            self.out.add(**case, metric="peak_mem_mib", value=peak)
        self.log(f"  {base['op']:<16} {base['provider']:<8} {mode:<9} {base['shape']:<14} {base['dtype']:<5} "
                 f"p50 {t.p50:10.1f} us")
        del fn
