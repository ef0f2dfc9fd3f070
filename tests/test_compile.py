"""The fused ops inside a tiny bf16-autocast SiD generator step under torch.compile(fullgraph=True)."""
import pytest
import torch
from torch._dynamo.testing import CompileCounterWithBackend

import sidkernels as sk


class TinyDenoiser(torch.nn.Module):
    """D(x, sigma) = c_skip x + c_out F(c_in x) with F one conv: enough to route gradients like a UNet."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x, net_input, sigma):
        return sk.edm_precond_out(x, self.conv(net_input), sigma, backend="triton")


def generator_loss(G, teacher, fake, z, sigma, seed):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        net_z, _ = sk.edm_precond_in(z, torch.full_like(sigma, 2.5), dtype=torch.bfloat16, backend="triton")
        x_g = G(z, net_z, torch.full_like(sigma, 2.5))
        x_t, net_in = sk.add_noise(x_g, sigma, seed=seed, return_net_input=True, net_dtype=torch.bfloat16,
                                   backend="triton")
        a = teacher(x_t, net_in, sigma)
        b = fake(x_t, net_in, sigma)
        return sk.sid_generator_loss(a, b, x_g, alpha=1.2, loss_scale=100.0, backend="triton")


def train_step(loss_fn, optimizer, *args):
    """Forward (compiled or eager; AOTAutograd compiles its backward too), backward, optimiser step."""
    optimizer.zero_grad()
    loss = loss_fn(*args)
    loss.backward()
    grads = [p.grad.clone() for group in optimizer.param_groups for p in group["params"]]
    optimizer.step()
    return loss.detach(), grads


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_generator_step_compiles_without_graph_breaks(backend):
    torch.manual_seed(0)
    G, teacher, fake = TinyDenoiser(), TinyDenoiser(), TinyDenoiser()
    for net in (teacher, fake):
        net.requires_grad_(False)
    z = 2.5 * torch.randn(2, 3, 8, 8)
    sigma = sk.sample_sigma_sid(2)
    seed = torch.tensor([7])

    start = [p.detach().clone() for p in G.parameters()]
    opt = torch.optim.AdamW(G.parameters(), lr=1e-3)
    eager_loss, eager_grads = train_step(generator_loss, opt, G, teacher, fake, z, sigma, seed)

    with torch.no_grad():
        for p, p0 in zip(G.parameters(), start):
            p.copy_(p0)
    opt = torch.optim.AdamW(G.parameters(), lr=1e-3)
    counter = CompileCounterWithBackend(backend)
    compiled = torch.compile(generator_loss, backend=counter, fullgraph=True)
    compiled_loss, compiled_grads = train_step(compiled, opt, G, teacher, fake, z, sigma, seed)
    assert counter.frame_count == 1
    torch.testing.assert_close(compiled_loss, eager_loss, rtol=2e-2, atol=1e-2)
    for g, g_eager in zip(compiled_grads, eager_grads):
        torch.testing.assert_close(g, g_eager, rtol=5e-2, atol=5e-2)
    assert all(p.grad is None for p in list(teacher.parameters()) + list(fake.parameters()))
    train_step(compiled, opt, G, teacher, fake, z, sigma, seed)  # a second step reuses the graph
    assert counter.frame_count == 1


def test_fake_score_step_compiles():
    torch.manual_seed(1)
    fake = TinyDenoiser()
    y = torch.randn(3, 3, 8, 8)

    def fake_loss(y, sigma, seed):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            x_t, net_in = sk.add_noise(y, sigma, seed=seed, return_net_input=True, net_dtype=torch.bfloat16,
                                       backend="triton")
            return sk.fake_score_loss(fake(x_t, net_in, sigma), y, sigma, backend="triton")

    counter = CompileCounterWithBackend("aot_eager")
    sigma, seed = sk.sample_sigma_lognormal(3), torch.tensor([3])
    opt = torch.optim.SGD(fake.parameters(), lr=0.0)
    loss, grads = train_step(torch.compile(fake_loss, backend=counter, fullgraph=True), opt, y, sigma, seed)
    eager_loss, eager_grads = train_step(fake_loss, opt, y, sigma, seed)
    assert counter.frame_count == 1
    torch.testing.assert_close(loss, eager_loss)
    for g, g_eager in zip(grads, eager_grads):
        torch.testing.assert_close(g, g_eager)


@pytest.mark.parametrize("kind", ["l1", "pseudo_huber"])
def test_sign_distance_step_compiles(kind):
    """SIGN's L_rec with the fused distance: a bf16 autocast output against fp32 data, one graph, eager grads."""
    torch.manual_seed(2)
    f = torch.nn.Conv2d(3, 3, 3, padding=1)
    x = torch.randn(4, 3, 8, 8)

    def rec_loss(x):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return sk.sample_distance(f(x), x, kind, reduction="mean", backend="triton")

    counter = CompileCounterWithBackend("aot_eager")
    opt = torch.optim.SGD(f.parameters(), lr=0.0)
    loss, grads = train_step(torch.compile(rec_loss, backend=counter, fullgraph=True), opt, x)
    eager_loss, eager_grads = train_step(rec_loss, opt, x)
    assert counter.frame_count == 1
    torch.testing.assert_close(loss, eager_loss)
    for g, g_eager in zip(grads, eager_grads):
        torch.testing.assert_close(g, g_eager)
