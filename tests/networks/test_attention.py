"""SDPA attention against the official fp32-softmax formulation (docs/networks.md §2.4)."""
import math

import pytest
import torch

from sidkernels.networks.attention import attention_reference, attention_sdpa, qkv_by_projection
from sidkernels.networks.unet_block import UNetBlock
from tests.helpers import assert_close


def textbook_attention(qkv, heads):
    """Per head h: w = softmax over keys of q^T k / sqrt(D), a = v w^T; channel (h, d, [q,k,v]) layout."""
    n, c3, hgt, wid = qkv.shape
    c, d = c3 // 3, c3 // 3 // heads
    out = torch.empty(n, c, hgt * wid, dtype=torch.float64)
    flat = qkv.double().reshape(n, c3, -1)
    for b in range(n):
        for h in range(heads):
            rows = torch.arange(d) * 3 + h * 3 * d
            q, k, v = flat[b, rows], flat[b, rows + 1], flat[b, rows + 2]
            w = torch.softmax(q.t() @ k / math.sqrt(d), dim=1)  # [L_q, L_k]
            out[b, h * d:(h + 1) * d] = v @ w.t()
    return out.reshape(n, c, hgt, wid)


def grouped_input(qkv_official, heads):
    """The same activations with channels regrouped [q,k,v][heads][D], as the SDPA path's conv produces."""
    eye = torch.eye(qkv_official.shape[1])[:, :, None, None]
    w, _ = qkv_by_projection(eye, None, heads)
    return torch.nn.functional.conv2d(qkv_official, w)


@pytest.mark.parametrize("heads, c", [(1, 8), (2, 16), (4, 8)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_sdpa_and_reference_match_the_formula(heads, c, channels_last):
    qkv = torch.randn(2, 3 * c, 4, 5)
    expected = textbook_attention(qkv, heads)
    assert_close(attention_reference(qkv, heads), expected.float(), torch.float32)
    grouped = grouped_input(qkv, heads)
    if channels_last:
        grouped = grouped.contiguous(memory_format=torch.channels_last)
    out = attention_sdpa(grouped, heads)
    assert out.shape == expected.shape
    assert_close(out, expected.float(), torch.float32)


def test_qkv_regrouping_is_a_row_permutation():
    w = torch.arange(12.0).reshape(12, 1, 1, 1)  # 2 heads, D = 2: rows (h, d, qkv)
    regrouped, b = qkv_by_projection(w, torch.arange(12.0), 2)
    # q rows first: (h0 d0), (h0 d1), (h1 d0), (h1 d1) -> official rows 0, 3, 6, 9
    assert regrouped.flatten().tolist() == [0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11]
    assert b.tolist() == regrouped.flatten().tolist()


def _block_pair(impl_kwargs=None):
    torch.manual_seed(0)
    block = UNetBlock(16, 16, emb_channels=8, attention=True, num_heads=2, adaptive_scale=False, **(impl_kwargs or {}))
    with torch.no_grad():
        for p in block.parameters():
            p.normal_(0, 0.3)
    ref = UNetBlock(16, 16, emb_channels=8, attention=True, num_heads=2, adaptive_scale=False,
                    attention_impl="reference")
    ref.load_state_dict(block.state_dict())
    return block, ref


@pytest.mark.parametrize("channels_last", [False, True])
def test_block_sdpa_matches_reference_forward_and_backward(channels_last):
    block, ref = _block_pair()
    x = torch.randn(2, 16, 4, 4)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        block = block.to(memory_format=torch.channels_last)
    emb = torch.randn(2, 8)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y1, y2 = block(x1, emb), ref(x2, emb)
    assert y1.is_contiguous(memory_format=torch.channels_last) == channels_last
    assert_close(y1, y2, torch.float32)
    g = torch.randn_like(y1)
    y1.backward(g)
    y2.backward(g)
    assert_close(x1.grad, x2.grad, torch.float32)
    ref_params = dict(ref.named_parameters())
    for name, p in block.named_parameters():
        assert_close(p.grad, ref_params[name].grad, torch.float32, tol=5e-5)


def test_bf16_sdpa_close_to_fp32_reference():
    block, ref = _block_pair()
    x, emb = torch.randn(2, 16, 4, 4), torch.randn(2, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = block(x.bfloat16(), emb)
    assert y.dtype == torch.bfloat16
    assert_close(y.float(), ref(x, emb), torch.bfloat16, tol=3e-2)


def test_reference_softmax_runs_in_fp32_under_autocast():
    qkv = torch.randn(1, 24, 3, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = attention_reference(qkv.bfloat16(), 2)
    assert out.dtype == torch.bfloat16
    assert_close(out.float(), textbook_attention(qkv.bfloat16().float(), 2).float(), torch.bfloat16)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="the fused SDPA kernels (flash / memory-efficient) need CUDA")
def test_cuda_bf16_channels_last_sdpa_close_to_fp32_reference():
    block, ref = _block_pair()
    block = block.cuda().to(memory_format=torch.channels_last)
    ref = ref.cuda()
    x, emb = torch.randn(2, 16, 8, 8, device="cuda"), torch.randn(2, 8, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        y = block(x.contiguous(memory_format=torch.channels_last), emb)
    assert y.dtype == torch.bfloat16 and y.is_contiguous(memory_format=torch.channels_last)
    assert_close(y.float(), ref(x, emb), torch.bfloat16, tol=3e-2)
