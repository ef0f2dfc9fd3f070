"""The fused ops inside a tiny SiD generator step and fake-score step under torch.compile(fullgraph=True).

Compilation is checked for exactness in fp32 (compiled against eager, tight), and bf16 autocast for accuracy
(eager and compiled each against the fp64 run of the same step, within a bound set by bf16's resolution): eager
bf16 and Inductor bf16 round at different points by design (Inductor keeps fused intermediates in fp32), so
comparing them with each other would test the CPU's vector ISA, not the code.
"""
import contextlib

import pytest
import torch
from torch._dynamo.testing import CompileCounterWithBackend

import sidkernels as sk

BF16_UNIT = 2.0 ** -8   # bf16's unit roundoff
BF16_ROUNDINGS = 12     # bf16 roundings on the gradient's path (net inputs, conv operands, outputs, x_t), with margin


class TinyDenoiser(torch.nn.Module):
    """D(x, sigma) = c_skip x + c_out F(c_in x) with F one conv: enough to route gradients like a UNet."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x, net_input, sigma):
        return sk.edm_precond_out(x, self.conv(net_input), sigma, backend="triton")


def generator_loss(G, teacher, fake, z, sigma, seed, dtype):
    """One SiD generator loss, in bf16 autocast when ``dtype`` is bf16, else in ``dtype`` (fp32, fp64)."""
    with torch.autocast("cpu", dtype=torch.bfloat16) if dtype == torch.bfloat16 else contextlib.nullcontext():
        net_z, _ = sk.edm_precond_in(z, torch.full_like(sigma, 2.5), dtype=dtype, backend="triton")
        x_g = G(z, net_z, torch.full_like(sigma, 2.5))
        x_t, net_in = sk.add_noise(x_g, sigma, seed=seed, return_net_input=True, net_dtype=dtype,
                                   backend="triton")
        a = teacher(x_t, net_in, sigma)
        b = fake(x_t, net_in, sigma)
        return sk.sid_generator_loss(a, b, x_g, alpha=1.2, loss_scale=100.0, backend="triton")


def _nets(dtype):
    torch.manual_seed(0)
    nets = [TinyDenoiser() for _ in range(3)]
    for net in nets[1:]:
        net.requires_grad_(False)
    return [net.to(torch.float64 if dtype == torch.float64 else torch.float32) for net in nets]


def _inputs(dtype):
    gen = torch.Generator().manual_seed(1)
    z = 2.5 * torch.randn(2, 3, 8, 8, generator=gen)
    sigma = torch.exp(torch.randn(2, generator=gen) * 1.2 - 1.2)
    as_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    return z.to(as_dtype), sigma.to(as_dtype), torch.tensor([7])


def loss_and_grads(loss_fn, dtype):
    """The step's loss and G's parameter gradients (fresh networks and inputs for every call)."""
    G, teacher, fake = _nets(dtype)
    loss = loss_fn(G, teacher, fake, *_inputs(dtype), dtype)
    grads = torch.autograd.grad(loss, list(G.parameters()))
    assert all(p.grad is None for p in list(teacher.parameters()) + list(fake.parameters()))
    return loss.detach().double(), [g.double() for g in grads]


def _normalised_error(actual, expected) -> float:
    return ((actual - expected).abs().max() / expected.abs().max().clamp_min(1e-30)).item()


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_generator_step_compiles_exactly_in_fp32(backend):
    eager_loss, eager_grads = loss_and_grads(generator_loss, torch.float32)
    counter = CompileCounterWithBackend(backend)
    compiled = torch.compile(generator_loss, backend=counter, fullgraph=True)
    loss, grads = loss_and_grads(compiled, torch.float32)
    assert counter.frame_count == 1
    assert _normalised_error(loss, eager_loss) < 1e-5
    for g, e in zip(grads, eager_grads):
        assert _normalised_error(g, e) < 1e-4
    loss_and_grads(compiled, torch.float32)  # a second step reuses the graph
    assert counter.frame_count == 1


@pytest.mark.parametrize("backend", [None, "aot_eager", "inductor"])
def test_bf16_step_is_within_bf16_resolution_of_fp64(backend):
    """Eager or compiled, the bf16-autocast step's loss and gradients lie within BF16_ROUNDINGS bf16 unit
    roundoffs (relative to the largest value) of the same step in fp64 with the same noise."""
    ref_loss, ref_grads = loss_and_grads(generator_loss, torch.float64)
    fn = generator_loss if backend is None else torch.compile(generator_loss, backend=backend, fullgraph=True)
    loss, grads = loss_and_grads(fn, torch.bfloat16)
    bound = BF16_ROUNDINGS * BF16_UNIT
    assert _normalised_error(loss, ref_loss) < bound
    for g, e in zip(grads, ref_grads):
        assert _normalised_error(g, e) < bound


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
    compiled = torch.compile(fake_loss, backend=counter, fullgraph=True)
    params = list(fake.parameters())
    loss = compiled(y, sigma, seed)
    grads = torch.autograd.grad(loss, params)
    eager = fake_loss(y, sigma, seed)
    assert counter.frame_count == 1
    torch.testing.assert_close(loss, eager)
    for g, g_eager in zip(grads, torch.autograd.grad(eager, params)):
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
    loss = torch.compile(rec_loss, backend=counter, fullgraph=True)(x)
    grads = torch.autograd.grad(loss, list(f.parameters()))
    eager = rec_loss(x)
    assert counter.frame_count == 1
    torch.testing.assert_close(loss, eager)
    for g, g_eager in zip(grads, torch.autograd.grad(eager, list(f.parameters()))):
        torch.testing.assert_close(g, g_eager)


def test_raw_generator_loss_step_compiles():
    """The trainer's fused path: raw network outputs into sid_generator_loss_raw, one graph, eager values."""
    torch.manual_seed(3)
    G, teacher, fake = (torch.nn.Conv2d(3, 3, 3, padding=1) for _ in range(3))
    for net in (teacher, fake):
        net.requires_grad_(False)
    z, sigma = torch.randn(2, 3, 8, 8), sk.sample_sigma_sid(2)

    def step(z, sigma):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            x_g = G(z).float()
            x_t, net_in = sk.add_noise(x_g, sigma, seed=5, return_net_input=True, net_dtype=torch.bfloat16,
                                       backend="triton")
            return sk.sid_generator_loss_raw(teacher(net_in), fake(net_in), x_t, x_g, sigma, loss_scale=100.0,
                                             backend="triton")

    counter = CompileCounterWithBackend("aot_eager")
    loss = torch.compile(step, backend=counter, fullgraph=True)(z, sigma)
    grads = torch.autograd.grad(loss, list(G.parameters()))
    eager = step(z, sigma)
    assert counter.frame_count == 1
    torch.testing.assert_close(loss, eager)
    for g, g_eager in zip(grads, torch.autograd.grad(eager, list(G.parameters()))):
        torch.testing.assert_close(g, g_eager)
