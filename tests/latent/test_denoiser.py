"""LatentDenoiser against diffusers' own scheduler math (pred_original_sample), sigma snapping, CFG, errors."""
import pytest
import torch

from sidkernels.latent import tiny
from sidkernels.latent.denoiser import LatentDenoiser

T = torch.tensor([0, 1, 20, 137, 400, 625, 801, 979, 999])  # the ends, SiD-LSG's t range and init timestep


def _scheduler(prediction_type, **kw):
    from diffusers import DDPMScheduler
    return DDPMScheduler(**{**tiny.TINY_SCHEDULER, "prediction_type": prediction_type, **kw})


def _pred_original(unet, sched, x0, eps, t, cond):
    """diffusers' path: x_t = add_noise(x0, eps, t), the UNet on x_t, scheduler.step(...).pred_original_sample."""
    x_vp = sched.add_noise(x0, eps, t)
    out = unet(sched.scale_model_input(x_vp, t), t, encoder_hidden_states=cond).sample
    return torch.stack([sched.step(out[i:i + 1], int(t[i]), x_vp[i:i + 1]).pred_original_sample[0]
                        for i in range(len(t))])


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_denoiser_equals_pred_original_sample(prediction_type):
    sched = _scheduler(prediction_type)
    unet = tiny.tiny_unet().double()
    D = LatentDenoiser(unet, sched.config)
    assert D.prediction_type == prediction_type
    x0 = torch.randn(len(T), 4, 8, 8, dtype=torch.float64)
    eps = torch.randn_like(x0)
    cond = torch.randn(len(T), 8, 16, dtype=torch.float64)
    sigma = D.sigma_of(T, torch.float64)
    with torch.no_grad():
        ours = D(x0 + sigma.reshape(-1, 1, 1, 1) * eps, sigma, cond)
        ref = _pred_original(unet, sched, x0, eps, T, cond)
    # the fused ops take sigma in fp32: agreement to fp32 rounding of sigma, far below any formula error
    err = (ours - ref).abs().amax(dim=(1, 2, 3)) / ref.abs().amax(dim=(1, 2, 3))
    assert ours.dtype == torch.float64 and err.max().item() < 1e-6, err
    # and the same D given the timesteps directly or the precomputed network input
    x = x0 + sigma.reshape(-1, 1, 1, 1) * eps
    with torch.no_grad():
        assert torch.equal(D(x, None, cond, timesteps=T), ours)
        net_in = x / (sigma.reshape(-1, 1, 1, 1) ** 2 + 1).sqrt()
        err = ((D(x, sigma, cond, net_input=net_in) - ours).abs().max() / ours.abs().max()).item()
    assert err < 1e-6


def test_sigma_is_snapped_to_the_grid():
    sched = _scheduler("epsilon")
    unet = tiny.tiny_unet()
    D = LatentDenoiser(unet, sched.config)
    t = torch.tensor([30, 500, 900])
    grid = D.sigma_of(t)
    log_gap = (D.sigma_of(t + 1).log() - grid.log()).abs()
    off = torch.exp(grid.log() + torch.tensor([0.3, -0.2, 0.45]) * log_gap)  # nearer to sigma_t than its neighbours
    assert torch.equal(D.timesteps(off), t)
    x, cond = torch.randn(3, 4, 8, 8), torch.randn(3, 8, 16)
    with torch.no_grad():
        assert torch.equal(D(x, off, cond), D(x, grid, cond))   # every coefficient uses the snapped sigma
        shared = D(x, 2.0, cond[:1])                                   # one sigma and one cond for the batch
        assert torch.equal(shared, D(x, torch.full((3,), 2.0), cond[:1].expand(3, -1, -1)))


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_classifier_free_guidance(prediction_type):
    sched = _scheduler(prediction_type)
    unet = tiny.tiny_unet().double()
    D = LatentDenoiser(unet, sched.config)
    x = torch.randn(3, 4, 8, 8, dtype=torch.float64)
    sigma = D.sigma_of(torch.tensor([100, 500, 950]), torch.float64)
    cond, uncond = torch.randn(3, 8, 16, dtype=torch.float64), torch.randn(8, 16, dtype=torch.float64)
    with torch.no_grad():
        d_c, d_u = D(x, sigma, cond), D(x, sigma, uncond)   # two separate, unbatched calls
        for w in (0.0, 1.5, 4.0):
            guided = D(x, sigma, cond, uncond=uncond, guidance=w)
            err = ((guided - (d_u + w * (d_c - d_u))).abs().max() / d_c.abs().max()).item()
            assert err < 1e-10, (w, err)
        # diffusers' CFG on the model output, then pred_original_sample
        t = D.timesteps(sigma)
        x_vp = x / (sigma.reshape(-1, 1, 1, 1) ** 2 + 1).sqrt()
        out_c = unet(x_vp, t, encoder_hidden_states=cond).sample
        out_u = unet(x_vp, t, encoder_hidden_states=uncond.expand(3, -1, -1)).sample
        out = out_u + 2.0 * (out_c - out_u)
        ref = torch.stack([sched.step(out[i:i + 1], int(t[i]), x_vp[i:i + 1]).pred_original_sample[0]
                           for i in range(3)])
        err = ((D(x, sigma, cond, uncond=uncond, guidance=2.0) - ref).abs().max() / ref.abs().max()).item()
    assert err < 1e-6


def test_bad_inputs_name_the_argument():
    D = LatentDenoiser(tiny.tiny_unet(), _scheduler("epsilon").config)
    cond = torch.randn(2, 8, 16)
    with pytest.raises(ValueError, match=r"x must be latents \[N, 4, 8, 8\].*sample_size 8x8.*\(2, 4, 16, 16\)"):
        D(torch.randn(2, 4, 16, 16), 1.0, cond)      # latents of another resolution than the UNet's
    with pytest.raises(ValueError, match=r"x must be latents \[N, 4, 8, 8\]"):
        D(torch.randn(2, 3, 8, 8), 1.0, cond)
    with pytest.raises(ValueError, match="cond must be text embeddings .*cross_attention_dim 16"):
        D(torch.randn(2, 4, 8, 8), 1.0, torch.randn(2, 8, 32))
    with pytest.raises(ValueError, match="cond has 3 embeddings for 2 samples"):
        D(torch.randn(2, 4, 8, 8), 1.0, torch.randn(3, 8, 16))
    with pytest.raises(ValueError, match="guidance=2.0 needs uncond"):
        D(torch.randn(2, 4, 8, 8), 1.0, cond, guidance=2.0)
    with pytest.raises(ValueError, match="sigma must be a number or have one value per sample"):
        D(torch.randn(2, 4, 8, 8), torch.ones(3), cond)
    with pytest.raises(ValueError, match="prediction_type must be one of"):
        LatentDenoiser(tiny.tiny_unet(), {**tiny.TINY_SCHEDULER, "prediction_type": "flow"})
    with pytest.raises(ValueError, match="scheduler_config has none of"):
        LatentDenoiser(tiny.tiny_unet(), {"num_train_timesteps": 1000})
