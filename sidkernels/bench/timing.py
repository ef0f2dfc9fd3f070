"""How a time is measured: median and 20th/80th percentiles of repeated calls, and peak memory.

On a CUDA device (:func:`time_cuda`): ``triton.testing.do_bench``.  It calls the function once, estimates
its time from five more calls, then runs ``warmup_ms`` worth of warm-up calls and ``rep_ms`` worth of timed
calls.  Before every timed call it overwrites a 256 MB buffer (flushing the L2 cache, so no input is served
from cache) and sets ``.grad`` of ``grad_to_none`` to None (so a backward writes its gradients instead of
accumulating into old ones); each call is timed alone with a pair of CUDA events, so neither the flush nor
the reset is in the time.  The quantiles are over those per-call times.

On the CPU (:func:`time_cpu`, quick smoke mode only): ``torch.utils.benchmark.Timer.blocked_autorange`` on
one thread after one warm-up call; the quantiles are over its blocks (each block's mean per-call time).
These are smoke-test numbers and are labelled as such (see :mod:`sidkernels.bench.env`).

Peak memory (:func:`peak_memory_mib`): ``torch.cuda.max_memory_allocated`` over one call after
``reset_peak_memory_stats``, so it includes everything alive during the call (inputs, saved tensors,
outputs), as Liger's harness reports it.  None on the CPU.
"""
from __future__ import annotations

import contextlib
import dataclasses
import statistics
from typing import Callable, Iterable, Iterator

import torch

QUANTILES = (0.5, 0.2, 0.8)


@dataclasses.dataclass(frozen=True)
class Quantiles:
    """p50 (median), p20 and p80 of a per-call quantity, in one unit."""
    p50: float
    p20: float
    p80: float

    def map(self, fn: Callable[[float], float]) -> "Quantiles":
        return Quantiles(fn(self.p50), fn(self.p20), fn(self.p80))

    def inverse(self, numerator: float) -> "Quantiles":
        """``numerator / time`` as quantiles of the rate: its p20 comes from the time's p80 and vice versa."""
        return Quantiles(numerator / self.p50, numerator / self.p80, numerator / self.p20)

    @classmethod
    def of(cls, samples: Iterable[float]) -> "Quantiles":
        xs = sorted(samples)
        if not xs:
            raise ValueError("no samples")
        if len(xs) == 1:
            return cls(xs[0], xs[0], xs[0])
        q = statistics.quantiles(xs, n=10, method="inclusive")  # deciles: q[1] = p20, q[7] = p80
        return cls(statistics.median(xs), q[1], q[7])


def _reset_grads(tensors) -> None:
    for t in tensors or ():
        t.grad = None


def time_cuda(fn: Callable[[], object], *, warmup_ms: float = 25, rep_ms: float = 100,
              grad_to_none: list[torch.Tensor] | None = None) -> Quantiles:
    """Per-call time of ``fn`` on the current CUDA device in microseconds (see the module docstring)."""
    import triton.testing

    ms = triton.testing.do_bench(fn, warmup=warmup_ms, rep=rep_ms, grad_to_none=grad_to_none,
                                 quantiles=list(QUANTILES))
    return Quantiles(*(m * 1e3 for m in ms))


def time_graphed(fn: Callable[[], object], *, rep_ms: float = 100,
                 grad_to_none: list[torch.Tensor] | None = None) -> Quantiles:
    """Per-call time of ``fn`` captured once in a CUDA graph and replayed (``triton.testing.do_bench_cudagraph``),
    in microseconds: the device time without the host's validation, dispatch and launch overhead."""
    import triton.testing

    ms = triton.testing.do_bench_cudagraph(fn, rep=rep_ms, grad_to_none=grad_to_none, quantiles=list(QUANTILES))
    return Quantiles(*(m * 1e3 for m in ms))


def time_cpu(fn: Callable[[], object], *, min_run_time: float = 0.02,
             grad_to_none: list[torch.Tensor] | None = None) -> Quantiles:
    """Per-call CPU time of ``fn`` in microseconds, smoke-test quality (see the module docstring)."""
    from torch.utils.benchmark import Timer

    def call():
        _reset_grads(grad_to_none)
        fn()

    call()
    measurement = Timer(stmt="call()", globals={"call": call}, num_threads=1).blocked_autorange(
        min_run_time=min_run_time)
    return Quantiles.of(t * 1e6 for t in measurement.times)


def time_call(fn: Callable[[], object], device: torch.device, *, grad_to_none=None, warmup_ms: float = 25,
              rep_ms: float = 100, min_run_time: float = 0.02) -> Quantiles:
    """:func:`time_cuda` on a CUDA device, :func:`time_cpu` otherwise; microseconds."""
    if device.type == "cuda":
        return time_cuda(fn, warmup_ms=warmup_ms, rep_ms=rep_ms, grad_to_none=grad_to_none)
    return time_cpu(fn, min_run_time=min_run_time, grad_to_none=grad_to_none)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mib(fn: Callable[[], object], device: torch.device, grad_to_none=None) -> float | None:
    """Peak allocated CUDA memory during one call of ``fn`` in MiB; None off CUDA."""
    if device.type != "cuda":
        return None
    _reset_grads(grad_to_none)
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) / 2 ** 20


@contextlib.contextmanager
def cpu_threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` intra-op CPU threads (None: unchanged), restoring the previous count afterwards.

    The CPU smoke mode uses one thread: on a shared or busy machine, more threads than free cores make
    torch's thread pool spin and a tiny step can take seconds.
    """
    if n is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
