"""The losses' backward in Triton: a saved per-element gradient scaled by a per-sample factor.

    out[n, i] = coef * grad_out[n] * scale[n] * src[n, i]     (0 where scale[n] == 0: a dropped sample)

``grad_out`` may be a strided view (the expanded gradient of a ``mean`` has stride 0).  ``scale`` is 0
exactly for dropped (NaN) samples, so their gradient is 0 even though ``src`` holds NaN there.
"""
from __future__ import annotations

import triton
import triton.language as tl

from sidkernels._triton import Launch, acc, launch_config, samples


@triton.jit
def _rowscale_kernel(GO, go_stride, SCALE, SRC, OUT, D, coef, ACC: tl.constexpr, BLOCK: tl.constexpr):
    n = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < D
    idx = n * D + offs
    scale = tl.load(SCALE + n).to(ACC)
    factor = tl.load(GO + n * go_stride).to(ACC) * scale * tl.cast(coef, ACC)
    src = tl.load(SRC + idx, mask=mask, other=0.0).to(ACC)
    tl.store(OUT + idx, tl.where(scale == 0.0, 0.0, factor * src).to(OUT.dtype.element_ty), mask=mask)


def launches(grad_out, scale, src, out, coef: float, *, sms=None, block=None) -> list[Launch]:
    n, d = samples(src)
    block, num_warps, n_chunks = launch_config(n, d, sms, block)
    return [Launch(_rowscale_kernel, (n, n_chunks), (grad_out, grad_out.stride(0), scale, src, out, d, coef),
                   dict(ACC=acc(src, out, scale), BLOCK=block, num_warps=num_warps))]
