"""Self-attention over the pixels of a feature map (docs/networks.md §2.4).

The official ``qkv`` 1x1 conv has ``3C`` output channels laid out as ``[heads][C/heads][q, k, v]`` (q/k/v
fastest).  Per head ``h`` with ``D = C/heads`` channels and ``L = H*W`` pixels:

    w = softmax_k(q^T k / sqrt(D))      ([L, L], softmax over keys)
    a = v w^T                           ([D, L])

and the heads are stacked back into ``C`` channels (``channel = h*D + d``).

Two implementations of the same math:

* ``"sdpa"`` (default): the qkv weight rows are regrouped to ``[q, k, v][heads][D]`` on the fly (a view-sized
  op on the weights), so the conv output splits into q/k/v views that are already token-major in
  channels_last, and ``F.scaled_dot_product_attention`` (flash / memory-efficient kernels on CUDA, whose
  softmax accumulates in fp32) does the rest.
* ``"reference"``: the official formulation on the official layout, with the logits and softmax in fp32 and
  the result cast back to the input dtype; unfused (materialises the ``L x L`` weights).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from sidkernels.networks.layers import without_autocast

ATTENTION_IMPLS = ("sdpa", "reference")


def check_attention_impl(impl: str) -> str:
    if impl not in ATTENTION_IMPLS:
        raise ValueError(f"attention_impl must be one of {ATTENTION_IMPLS}, got {impl!r}")
    return impl


def qkv_by_projection(weight: torch.Tensor, bias: torch.Tensor | None, num_heads: int):
    """Regroup the rows of the official qkv conv (``[heads][D][3]``) into ``[3][heads][D]``."""
    c3 = weight.shape[0]
    d = c3 // (3 * num_heads)
    w = weight.reshape(num_heads, d, 3, -1).permute(2, 0, 1, 3).reshape(weight.shape)
    b = bias.reshape(num_heads, d, 3).permute(2, 0, 1).reshape(c3) if bias is not None else None
    return w, b


def attention_sdpa(qkv: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Attention from a ``[N, 3C, H, W]`` tensor whose channels are grouped ``[q, k, v][heads][D]``.

    Returns ``[N, C, H, W]`` in channels_last layout (the layout SDPA produces); the copy to token-major
    order is free when ``qkv`` is channels_last.
    """
    n, c3, h, w = qkv.shape
    c = c3 // 3
    tokens = qkv.permute(0, 2, 3, 1).reshape(n, h * w, 3, num_heads, c // num_heads)
    q, k, v = (t.transpose(1, 2) for t in tokens.unbind(2))  # [N, heads, L, D]
    a = F.scaled_dot_product_attention(q, k, v)
    return a.transpose(1, 2).reshape(n, h, w, c).permute(0, 3, 1, 2)


def attention_reference(qkv: torch.Tensor, num_heads: int) -> torch.Tensor:
    """The official formulation on the official ``[heads][D][q, k, v]`` channel layout: fp32 logits and
    softmax, the attention weights cast back to the input dtype before ``v w^T``.  Returns contiguous
    ``[N, C, H, W]``."""
    n, c3, h, w = qkv.shape
    c = c3 // 3
    d = c // num_heads
    q, k, v = qkv.reshape(n * num_heads, d, 3, h * w).unbind(2)  # [N*heads, D, L]
    with without_autocast(qkv.device.type):
        logits = torch.einsum("ncq,nck->nqk", q.float(), k.float() / math.sqrt(d))
        weights = logits.softmax(dim=2).to(q.dtype)
    a = torch.einsum("nqk,nck->ncq", weights, v)
    return a.reshape(n, c, h, w)
