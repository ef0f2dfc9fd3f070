"""The memory model against what a run allocates: parameter, gradient and Adam bytes exactly (the trainer's
own tensors after a step), activations by autograd's saved-tensor hooks (meta-device emulation against real
CPU tensors), SD 1.5's exact sizes, and the emulated device policy."""
import copy

import pytest
import torch
import torch.nn.functional as F

from sidkernels.latent import memory, presets, tiny
from sidkernels.latent.config import latent_config
from sidkernels.latent.denoiser import LatentDenoiser
from sidkernels.latent.trainer import SiDLSGTrainer


def _cfg(**kw):
    return latent_config("sd15", teacher="tiny", prompts="unused", **kw)


def _tensor_bytes(tensors):
    seen, total = set(), 0
    for t in tensors:
        key = t.untyped_storage().data_ptr()
        if key not in seen:
            seen.add(key)
            total += t.untyped_storage().nbytes()
    return total


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_static_bytes_are_exact(tmp_path, prompt_file, optimizer):
    cfg = latent_config("sd15", teacher="tiny", prompts=prompt_file, out=str(tmp_path), batch=2, kimg=1,
                        device="cpu", optimizer=optimizer, ema="gpu")
    trainer = SiDLSGTrainer(cfg, progress=False)
    trainer.step()                               # Adam's state exists after the first step
    st = trainer.state
    G, fake = st.G, st.fake
    assert memory.param_bytes(G) == _tensor_bytes(G.parameters())
    assert memory.param_bytes(st.G_ema) == _tensor_bytes(st.G_ema.parameters())
    for net, opt in ((G, st.opt_G), (fake, st.opt_fake)):
        state_tensors = [v for entry in opt.state.values() for v in entry.values() if isinstance(v, torch.Tensor)]
        assert memory.adam_state_bytes(net) == _tensor_bytes(state_tensors)
    # the gradients of one step: the trainable parameters' bytes
    fake.requires_grad_(True)
    fake(torch.randn(2, 4, 8, 8), 1.0, torch.randn(2, 8, 16)).sum().backward()
    assert memory.param_bytes(fake) == _tensor_bytes([p.grad for p in fake.parameters()])
    # the model built on the meta device from the configs alone has the same static bytes
    model = memory.predicted_model(cfg, tiny.TINY_UNET, tiny.TINY_SCHEDULER, text_length=8, text_config=None,
                                   vae_config=None, device_type="cpu")
    assert model.static["G"] == model.static["fake score"] == memory.param_bytes(G) == model.grads["G"]
    assert model.static["teacher"] == memory.param_bytes(trainer.teacher)
    assert model.static["Adam (G)"] == memory.adam_state_bytes(G) and model.static["EMA"] == memory.param_bytes(G)


def _nets(device, frozen_dtype, checkpointing):
    if device == "meta":
        with torch.device("meta"):
            unet = tiny.tiny_unet()
    else:
        unet = tiny.tiny_unet()
    G = LatentDenoiser(unet, tiny.TINY_SCHEDULER).requires_grad_(False)
    fake, teacher = copy.deepcopy(G), copy.deepcopy(G).to(frozen_dtype)
    if checkpointing:
        for n in (G, fake, teacher):
            n.unet.enable_gradient_checkpointing()
    return G, fake, teacher


@pytest.mark.parametrize("checkpointing", [False, True])
@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
def test_meta_measurement_matches_real_cpu_tensors(dtype, checkpointing):
    """The saved-tensor bytes counted on the meta device with the CPU policy emulated equal those of real CPU
    tensors under real autocast: exactly in fp32; in bf16 up to the norm statistics, which the CPU kernels keep
    in other dtypes than the meta kernels (those follow CUDA)."""
    cfg = _cfg()
    real_nets = _nets("cpu", dtype or torch.float32, checkpointing)
    meta_nets = _nets("meta", dtype or torch.float32, checkpointing)
    for batch in (1, 2):
        real = memory.measure_activations(*real_nets, cfg, batch, 8, device_type="cpu", autocast_dtype=dtype,
                                          native=True)
        meta = memory.measure_activations(*meta_nets, cfg, batch, 8, device_type="cpu", autocast_dtype=dtype)
        for phase in ("fake", "G"):
            m, r = meta[phase], real[phase]
            for part in ("saved", "recompute"):
                a, b = getattr(m, part), getattr(r, part)
                if dtype is None:
                    assert a == b, (phase, part, batch)
                else:
                    assert abs(a - b) <= 0.01 * b, (phase, part, batch, a, b)
            assert (m.recompute > 0) == checkpointing and (m.cast_cache == 0) == (dtype is None)


def test_activations_are_linear_in_the_micro_batch():
    cfg = _cfg()
    nets = _nets("meta", torch.float32, False)
    got = {b: memory.measure_activations(*nets, cfg, b, 8, device_type="cpu", autocast_dtype=None) for b in (1, 2, 5)}
    for phase in ("fake", "G"):
        per_sample = got[2][phase].peak - got[1][phase].peak
        assert got[5][phase].peak == got[1][phase].peak + 4 * per_sample
    # guidance doubles the guided networks' batch: no guidance anywhere costs less per sample
    plain = memory.measure_activations(*nets, _cfg(cfg_train_fake=1.0, cfg_eval_fake=1.0, cfg_eval_real=1.0), 1, 8,
                                       device_type="cpu", autocast_dtype=None)
    assert plain["fake"].peak < got[1]["fake"].peak and plain["G"].peak < got[1]["G"].peak


def test_sd15_sizes_are_exact():
    m = presets.PRESET_MODELS["sd15"]
    G, fake, teacher = memory.meta_networks(m["unet"], m["scheduler"], torch.bfloat16, "none")
    n = 859_520_964                                    # SD 1.5's UNet
    tensors = len(list(G.parameters()))
    assert memory.param_bytes(teacher) == 2 * n and memory.param_bytes(G) == 4 * n
    assert memory.adam_state_bytes(G) == 8 * n + 4 * tensors
    text, vae = memory.meta_component_bytes(m["text_encoder"], m["vae"], torch.bfloat16)
    assert text == 2 * 123_060_480 and vae == 4 * 83_653_863     # CLIP ViT-L/14 text tower, the SD VAE


def test_model_arithmetic():
    act = {"fake": memory.ActivationFit(2, 7), "G": memory.ActivationFit(1, 6, recompute_per_sample=3, cast_cache=8)}
    model = memory.MemoryModel(static={"a": 10, "b": 5}, grads={"fake": 3, "G": 4}, act=act)
    assert model.resident == 15
    assert model.phase_peak("fake", 2) == 15 + 3 + 2 + 14
    assert model.phase_peak("G", 2) == 15 + 4 + 1 + 12 + 8        # the cast cache outweighs 2 x 3 recomputed
    assert model.phase_peak("G", 3) == 15 + 4 + 1 + 18 + 9        # ... and no longer at 3 x 3
    assert model.peak(2) == 40 and model.max_batch_gpu(40) == 2 and model.max_batch_gpu(39) == 1
    assert model.max_batch_gpu(20) == 0
    fit = memory.ActivationFit.from_measurements(memory.PhaseActivations(10, 4, 9), memory.PhaseActivations(16, 7, 9))
    assert (fit.saved_const, fit.saved_per_sample, fit.recompute_const, fit.recompute_per_sample) == (4, 6, 1, 3)
    table = model.table((1, 2))
    assert "batch_gpu" in table and table.count("GiB |") >= 4


def test_device_policy_casts_like_autocast():
    x = torch.randn(2, 8, 4, 4, device="meta")
    w = torch.randn(8, 8, 3, 3, device="meta", requires_grad=True)
    with memory.DevicePolicy("cuda", torch.bfloat16) as policy:
        y = F.conv2d(x, w, padding=1)
        assert y.dtype == torch.bfloat16
        assert F.group_norm(y, 4).dtype == torch.float32          # CUDA runs norms in fp32
        assert F.silu(y).dtype == torch.bfloat16                  # unlisted ops keep their inputs' dtype
        assert policy._cast(w, torch.bfloat16) is policy._cast(w, torch.bfloat16)   # weight casts are cached
    with memory.DevicePolicy("cpu", torch.bfloat16):
        assert F.group_norm(F.conv2d(x, w, padding=1), 4).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="device_type must be 'cuda' or 'cpu'"):
        memory.DevicePolicy("tpu", None)


def test_attention_keeps_the_fused_kernels_tensors_not_the_weights():
    q = torch.randn(1, 2, 4096, 40, device="meta", dtype=torch.bfloat16, requires_grad=True)
    for device_type in ("cuda", "cpu"):
        counter = memory.SavedTensorCounter()
        with memory.DevicePolicy(device_type, torch.bfloat16), counter:
            F.scaled_dot_product_attention(q, q * 2, q * 3)
        # q, k, v, out (bf16) and the fp32 log-sum-exp, no 4096 x 4096 weights
        assert counter.total < 4 * q.numel() * 2 + 2 * 4096 * 4 + 64, device_type


def test_the_trainers_own_prediction_covers_its_static_bytes(tmp_path, prompt_file):
    """What a CUDA run logs as predicted_peak_gib, here computed for the CPU: at least the exact bytes of the
    networks, Adam states, one network's gradients and the conditioning the trainer holds."""
    from sidkernels.latent.teacher import load_teacher
    cfg = latent_config("sd15", teacher="tiny", prompts=prompt_file, out=str(tmp_path), batch=2, kimg=1,
                        device="cpu")
    trainer = SiDLSGTrainer(cfg, progress=False)
    st = trainer.state
    static = sum(memory.param_bytes(n) for n in (trainer.teacher, st.G, st.fake, st.G_ema, trainer.vae,
                                                  trainer.conditioning.encoder))
    static += memory.adam_state_bytes(st.G) + memory.adam_state_bytes(st.fake)
    predicted = trainer.predict_peak(load_teacher("tiny"))
    assert static + memory.param_bytes(st.G) < predicted < static + 10 * memory.param_bytes(st.G)


def test_autocast_cast_cache_outlives_checkpointed_blocks():
    """Under autocast the bf16 copies of a trained network's weights stay cached for the whole forward: with
    checkpointing (no saved tensor holds most of them) the model counts them, up to the network's bf16 size
    (norm weights stay fp32; a few copies are saved outside the blocks)."""
    cfg = _cfg()
    G, fake, teacher = _nets("meta", torch.bfloat16, True)
    got = memory.measure_activations(G, fake, teacher, cfg, 1, 8, device_type="cuda", autocast_dtype=torch.bfloat16)
    bf16_size = memory.param_bytes(fake) // 2
    assert 0.6 * bf16_size <= got["fake"].cast_cache <= bf16_size
    assert got["fake"].peak == got["fake"].saved + max(got["fake"].recompute, got["fake"].cast_cache)
    plain = memory.measure_activations(*_nets("meta", torch.bfloat16, False), cfg, 1, 8, device_type="cuda",
                                       autocast_dtype=torch.bfloat16)
    assert plain["fake"].cast_cache < 0.05 * bf16_size       # without checkpointing the convolutions hold them
