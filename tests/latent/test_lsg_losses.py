"""The SiD-LSG objectives against SiD-LSG's own formulation written with diffusers' scheduler (epsilon and
v-prediction, alpha 1 and not), the fused ops against the references on the same draws, and every fused op
of the latent path at the latent shape with bf16 inputs."""
import copy

import pytest
import torch

import sidkernels as sk
from sidkernels.latent import tiny
from sidkernels.latent.denoiser import LatentDenoiser
from sidkernels.latent.lsg_losses import Draw, fake_score_loss_on_generator, generate, generator_loss
from tests.helpers import assert_close

T_INIT = 625


def _setup(prediction_type, dtype=torch.float64):
    from diffusers import DDPMScheduler
    sched = DDPMScheduler(**{**tiny.TINY_SCHEDULER, "prediction_type": prediction_type})
    G = LatentDenoiser(tiny.tiny_unet(0).to(dtype), sched.config)
    fake = LatentDenoiser(tiny.tiny_unet(1).to(dtype), sched.config)     # a fake score that has moved away
    teacher = LatentDenoiser(tiny.tiny_unet(2).to(dtype), sched.config).requires_grad_(False)
    fake.requires_grad_(False)
    n = 3
    draw = Draw(z=torch.randn(n, 4, 8, 8, dtype=dtype), cond=torch.randn(n, 8, 16, dtype=dtype),
                t=torch.tensor([20, 500, 979]), eps=torch.randn(n, 4, 8, 8, dtype=dtype))
    return sched, G, fake, teacher, draw, torch.randn(8, 16, dtype=dtype)


def _x0(unet, sched, x_vp, t, cond, uncond=None, w=1.0):
    """SiD-LSG's denoise: CFG on the model output, then the scheduler's pred_original_sample per sample."""
    out = unet(x_vp, t, encoder_hidden_states=cond).sample
    if w != 1.0:
        out_u = unet(x_vp, t, encoder_hidden_states=uncond.expand_as(cond)).sample
        out = out_u + w * (out - out_u)
    return torch.stack([sched.step(out[i:i + 1], int(t[i]), x_vp[i:i + 1]).pred_original_sample[0]
                        for i in range(len(t))]), out


def _official_images(G, sched, draw):
    """SiD-LSG's one-step sampler: the UNet at t_init on add_noise(0, z, t_init), its pred_original_sample."""
    t_init = torch.full((len(draw.t),), T_INIT)
    latents = sched.add_noise(torch.zeros_like(draw.z), draw.z, t_init)
    return _x0(G.unet, sched, latents, t_init, draw.cond)[0]


def _grads(net):
    return [p.grad.clone() for p in net.parameters()]


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("alpha", [1.0, 1.2])
def test_generator_loss_is_sid_lsg(prediction_type, alpha):
    sched, G, fake, teacher, draw, uncond = _setup(prediction_type)
    k_fake, k_real, scale = 2.0, 3.0, 0.25
    G.requires_grad_(True)
    ours = generator_loss(G, teacher, fake, draw, uncond, init_timestep=T_INIT, alpha=alpha, kappa_fake=k_fake,
                          kappa_real=k_real, scale=scale, net_dtype=torch.float64)
    ours.backward()
    g_ours = _grads(G)
    G.zero_grad()

    images = _official_images(G, sched, draw)
    x_vp = sched.add_noise(images, draw.eps, draw.t)
    y_fake = _x0(fake.unet, sched, x_vp, draw.t, draw.cond, uncond, k_fake)[0]
    y_real = _x0(teacher.unet, sched, x_vp, draw.t, draw.cond, uncond, k_real)[0]
    with torch.no_grad():
        w = (images - y_real).abs().mean(dim=(1, 2, 3), keepdim=True).clip(min=1e-5)
    if alpha == 1:
        loss = (y_real - y_fake) * (y_fake - images) / w
    else:
        loss = (y_real - y_fake) * ((y_real - images) - alpha * (y_real - y_fake)) / w
    ref = loss.sum() * scale
    ref.backward()
    assert abs(ours.item() - ref.item()) <= 1e-6 * abs(ref.item())
    for a, b in zip(g_ours, _grads(G)):
        assert_close(a, b, tol=1e-5)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_fake_score_loss_is_sid_lsg(prediction_type):
    sched, G, fake, teacher, draw, uncond = _setup(prediction_type)
    kappa, scale = 2.0, 0.5
    fake.requires_grad_(True)
    ours = fake_score_loss_on_generator(G, fake, draw, uncond, init_timestep=T_INIT, kappa=kappa, scale=scale,
                                        net_dtype=torch.float64)
    ours.backward()
    g_ours = _grads(fake)
    fake.zero_grad()
    assert all(p.grad is None for p in G.parameters())          # no gradient reaches G in this step

    with torch.no_grad():
        images = _official_images(G, sched, draw)
    x_vp = sched.add_noise(images, draw.eps, draw.t)
    pred = _x0(fake.unet, sched, x_vp, draw.t, draw.cond, uncond, kappa)[1]    # the guided model output
    if prediction_type == "epsilon":
        loss = (pred - draw.eps) ** 2
    else:
        abar = sched.alphas_cumprod[draw.t].double().reshape(-1, 1, 1, 1)
        snr = abar / (1 - abar)
        loss = (pred - sched.get_velocity(images, draw.eps, draw.t)) ** 2 * snr / (snr + 1)
    ref = loss.sum() * scale
    ref.backward()
    assert abs(ours.item() - ref.item()) <= 1e-6 * abs(ref.item())
    for a, b in zip(g_ours, _grads(fake)):
        assert_close(a, b, tol=1e-5)


def test_generator_is_the_teacher_at_its_init_timestep():
    sched, G, _, _, draw, _ = _setup("epsilon")
    with torch.no_grad():
        x = generate(G, draw.z, draw.cond, T_INIT)
        ref = _official_images(G, sched, draw)
    assert_close(x, ref, tol=1e-6)


def test_nan_samples_are_dropped():
    sched, G, fake, teacher, draw, uncond = _setup("epsilon")
    kw = dict(init_timestep=T_INIT, alpha=1.0, kappa_fake=2.0, kappa_real=2.0, scale=1.0, net_dtype=torch.float64)
    full = generator_loss(G, teacher, fake, draw, uncond, **kw)
    per_sample = [generator_loss(G, teacher, fake, Draw(draw.z[i:i + 1], draw.cond[i:i + 1], draw.t[i:i + 1],
                                                        draw.eps[i:i + 1]), uncond, **kw) for i in range(3)]
    assert abs(full.item() - sum(p.item() for p in per_sample)) < 1e-9 * abs(full.item())
    bad = copy.copy(draw)
    bad.eps = draw.eps.clone()
    bad.eps[1, 0, 0, 0] = float("nan")
    dropped = generator_loss(G, teacher, fake, bad, uncond, **kw)
    assert abs(dropped.item() - (per_sample[0] + per_sample[2]).item()) < 1e-9 * abs(dropped.item())


def _fp32_setup():
    _, G, fake, teacher, draw, uncond = _setup("epsilon", torch.float32)
    return G, fake, teacher, draw, uncond


def test_fused_ops_and_references_give_the_same_step():
    """One generator and one fake-score objective with backend 'triton' (interpreted on the CPU) and 'torch' on
    the same draws: same loss and same gradients, to fp32 rounding."""
    out = {}
    for backend in ("torch", "triton"):
        torch.manual_seed(0)
        G, fake, teacher, draw, uncond = _fp32_setup()
        with sk.use_backend(backend):
            G.requires_grad_(True)
            lg = generator_loss(G, teacher, fake, draw, uncond, init_timestep=T_INIT, alpha=1.0, kappa_fake=2.0,
                                kappa_real=2.0, scale=1.0, net_dtype=torch.float32)
            lg.backward()
            G.requires_grad_(False)
            fake.requires_grad_(True)
            lf = fake_score_loss_on_generator(G, fake, draw, uncond, init_timestep=T_INIT, kappa=2.0, scale=1.0,
                                              net_dtype=torch.float32)
            lf.backward()
        out[backend] = (lg.item(), lf.item(), _grads(G), _grads(fake))
    (lg0, lf0, gG0, gf0), (lg1, lf1, gG1, gf1) = out["torch"], out["triton"]
    assert abs(lg0 - lg1) <= 2e-5 * abs(lg0) and abs(lf0 - lf1) <= 2e-5 * abs(lf0)
    for a, b in zip(gG0 + gf0, gG1 + gf1):
        assert_close(b, a, tol=2e-4)


@pytest.mark.parametrize("batch, size", [(2, 64), pytest.param(8, 128, marks=pytest.mark.large)])
def test_latent_path_ops_at_the_latent_shape_in_bf16(batch, size):
    """Every fused op of the latent path at B x 4 x 64 x 64 (and B x 4 x 128 x 128 with -m large) with bf16
    inputs, Triton (interpreted on the CPU) against the reference: noise with the networks' input, both output
    combinations, both losses."""
    shape = (batch, 4, size, size)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    x = torch.randn(shape, device=device).bfloat16()
    sigma = torch.linspace(0.03, 14.6, batch, device=device)
    with sk.use_backend("triton"):
        x_t, net_in, eps = sk.add_noise(x, sigma, return_net_input=True, net_dtype=torch.bfloat16, precond="vp",
                                        return_eps=True)
    s = sigma.reshape(-1, 1, 1, 1)
    assert_close(x_t, (x.float() + s * eps.float()).bfloat16(), torch.bfloat16)
    assert_close(net_in, ((x.float() + s * eps.float()) / (s * s + 1).sqrt()).bfloat16(), torch.bfloat16)
    F = torch.randn(shape, device=device).bfloat16()
    a, b, y = (torch.randn(shape, device=device).bfloat16() for _ in range(3))
    cases = [
        lambda: sk.edm_precond_in(x, sigma, precond="vp", dtype=torch.bfloat16)[0],
        lambda: sk.edm_precond_out(x, F, sigma, precond="vp"),
        lambda: sk.edm_precond_out(x, F, sigma, precond="edm", sigma_data=1.0),
        lambda: sk.sid_generator_loss(a, b, y, alpha=1.0, reduction="none"),
        lambda: sk.fake_score_loss(a, y, sigma, sigma_data=1.0, reduction="none"),
    ]
    for case in cases:
        with sk.use_backend("triton"):
            got = case()
        with sk.use_backend("torch"):
            want = case()
        assert_close(got, want, torch.bfloat16)
