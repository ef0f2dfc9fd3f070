"""A small EDMPrecond(SongUNet) under torch.compile(fullgraph=True): one graph, no breaks, forward+backward
in bf16 autocast with channels_last, and eager-equal outputs."""
import pytest
import torch
from torch._dynamo.testing import CompileCounterWithBackend

from sidkernels.networks import build_preset
from tests.helpers import assert_close

SMALL = dict(img_resolution=8, model_channels=16, channel_mult=[1, 2], num_blocks=1, attn_resolutions=[4],
             dropout=0.1)


def test_compiles_into_one_graph_without_breaks():
    torch._dynamo.reset()
    net = build_preset("cifar10-cond", **SMALL).to(memory_format=torch.channels_last)
    counter = CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(net, fullgraph=True, backend=counter)
    x = torch.randn(2, 3, 8, 8).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    sigma, labels, aug = torch.tensor([0.4, 9.0]), torch.eye(10)[[3, 7]], torch.zeros(2, 9)

    net.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        d = compiled(x, sigma, labels, aug)
    d.square().mean().backward()
    assert counter.frame_count == 1
    assert d.dtype == torch.float32 and x.grad is not None
    assert all(p.grad is not None for p in net.parameters())

    net.eval()
    with torch.no_grad():
        assert_close(compiled(x, sigma, labels, aug), net(x, sigma, labels, aug), torch.float32, tol=1e-5)
    assert counter.frame_count == 2  # train -> eval recompiles once (dropout), still one graph


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="Inductor's Triton backend and the fused ops need CUDA")
def test_cuda_inductor_compile_matches_eager():
    torch._dynamo.reset()
    net = build_preset("cifar10-cond", **dict(SMALL, dropout=0.0)).cuda().to(memory_format=torch.channels_last)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.2)
    compiled = torch.compile(net, fullgraph=True)
    x = torch.randn(4, 3, 8, 8, device="cuda").contiguous(memory_format=torch.channels_last)
    sigma, labels = torch.tensor([0.1, 0.5, 2.0, 40.0], device="cuda"), torch.eye(10, device="cuda")[[0, 3, 5, 9]]
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = compiled(x.requires_grad_(True), sigma, labels)
        ref = net(x, sigma, labels)
    assert_close(out, ref, torch.bfloat16, tol=2e-2)
    out.square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
