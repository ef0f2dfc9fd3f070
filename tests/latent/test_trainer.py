"""SiD-LSG end to end on the tiny models: the loss is finite and the networks move, the run leaves its files,
a killed run resumes bitwise on the CPU, checkpointing changes nothing, bad configurations are refused."""
import json

import pytest
import torch

from sidkernels.distill import dist
from sidkernels.distill import state as state_io
from sidkernels.latent.config import latent_config
from sidkernels.latent.text import save_embeddings
from sidkernels.latent.trainer import SiDLSGTrainer, load_generator


def config(tmp_path, prompts, **kw):
    values = dict(teacher="tiny", prompts=prompts, out=str(tmp_path / "run"), batch=4, batch_gpu=2, kimg=0.012,
                  tick_kimg=0.004, snap_ticks=3, device="cpu", lr=1e-4, glr=1e-4, sample_count=4)
    values.update(kw)
    return latent_config("sd15", **values)


def _weights(net):
    return {k: v.clone() for k, v in net.state_dict().items()}


def test_short_run_moves_the_networks_and_leaves_its_files(tmp_path, prompt_file):
    trainer = SiDLSGTrainer(config(tmp_path, prompt_file), progress=False)
    assert trainer.rounds == 2 and trainer.teacher.unet.config.sample_size == 8
    start = _weights(trainer.state.G)
    records = trainer.run()
    assert [r["iteration"] for r in records] == [1, 2, 3]
    assert all(torch.isfinite(torch.tensor([r["loss_fake"], r["loss_G"]])).all() for r in records)
    st = trainer.state
    for name, net in (("G", st.G), ("fake", st.fake), ("G_ema", st.G_ema)):
        moved = max((v - start[k]).abs().max().item() for k, v in net.state_dict().items())
        assert moved > 0, name
    assert all(torch.equal(a, b) for a, b in zip(trainer.teacher.state_dict().values(), start.values()))
    run = tmp_path / "run"
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["kimg"] for r in lines] == pytest.approx([0.004, 0.008, 0.012])
    for name in ("config.json", "metrics.png", "samples-init.png", "samples-latest.png"):
        assert (run / name).stat().st_size > 0
    assert state_io.latest_state(run).name == "training-state-000000003.safetensors"
    G, t_init = load_generator(run / "generator-000000")
    assert t_init == 625
    assert all(torch.equal(a, b) for a, b in zip(G.unet.state_dict().values(), st.G_ema.unet.state_dict().values()))


def _everything(trainer):
    st = trainer.state
    out = {f"{n}.{k}": v.clone() for n, net in st.nets().items() for k, v in net.state_dict().items()}
    for n, opt in (("opt_G", st.opt_G), ("opt_fake", st.opt_fake)):
        for i, entry in opt.state_dict()["state"].items():
            out.update({f"{n}.{i}.{k}": v.clone() for k, v in entry.items() if isinstance(v, torch.Tensor)})
    return out


def test_resume_is_bitwise(tmp_path, prompt_file):
    def make(d, **kw):
        return config(d, prompt_file, kimg=0.016, snap_ticks=2, **kw)
    whole = SiDLSGTrainer(make(tmp_path / "a"), progress=False)
    whole.run()
    killed = SiDLSGTrainer(make(tmp_path / "b"), progress=False)
    killed.run(max_iterations=2)     # "killed" right after the state of iteration 2
    del killed
    resumed = SiDLSGTrainer(make(tmp_path / "b", resume="auto"), progress=False, log=lambda *a: None)
    assert resumed.state.iteration == 2 and resumed.state.cur_nimg == 8
    resumed.run()
    a, b = _everything(whole), _everything(resumed)
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different[:5]


def test_gradient_checkpointing_gives_the_same_step(tmp_path, prompt_file):
    runs = []
    for mode in ("none", "all"):
        trainer = SiDLSGTrainer(config(tmp_path / mode, prompt_file, grad_checkpointing=mode), progress=False)
        trainer.step()
        runs.append(_everything(trainer))
    for k in runs[0]:
        assert torch.allclose(runs[0][k], runs[1][k], rtol=1e-5, atol=1e-7), k


def test_precomputed_embeddings_without_ema(tmp_path):
    prompts = ["a", "b", "c"]
    path = save_embeddings(tmp_path / "e.safetensors", prompts, torch.randn(3, 8, 16), torch.randn(8, 16))
    cfg = config(tmp_path, None, embeddings=str(path), ema="off", kimg=0.008, snap_ticks=2)
    trainer = SiDLSGTrainer(cfg, progress=False)
    assert trainer.state.G_ema is None and trainer.state.sampler is trainer.state.G
    trainer.run()
    _, meta = state_io.read_state(state_io.latest_state(tmp_path / "run"))
    assert set(meta["nets"]) == {"G", "fake"}
    with pytest.raises(ValueError, match="holds networks .*resume with the same --ema setting"):
        SiDLSGTrainer(config(tmp_path, None, embeddings=str(path), ema="gpu", resume="auto"), progress=False)


def test_bad_configurations_are_refused(tmp_path, prompt_file):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(ValueError, match="prompts .*empty.txt contains no prompts"):
        SiDLSGTrainer(config(tmp_path, str(empty)), progress=False)
    with pytest.raises(ValueError, match="exactly one of prompts .* and embeddings"):
        config(tmp_path, prompt_file, embeddings="e.safetensors").validate()
    with pytest.raises(ValueError, match="needs --teacher"):
        config(tmp_path, prompt_file, teacher=None).validate()
    with pytest.raises(ValueError, match=r"divisible by batch_gpu \(3\)"):
        config(tmp_path, prompt_file, batch_gpu=3).validate()
    with pytest.raises(ValueError, match="init_timestep must be in"):
        SiDLSGTrainer(config(tmp_path, prompt_file, init_timestep=1000), progress=False)
    with pytest.raises(ValueError, match="exceeds the teacher's 1000 timesteps"):
        SiDLSGTrainer(config(tmp_path, prompt_file, tmax=1001), progress=False)
    wide = save_embeddings(tmp_path / "w.safetensors", ["a"], torch.randn(1, 8, 32), torch.randn(8, 32))
    with pytest.raises(ValueError, match="width 32 but the teacher UNet's cross_attention_dim is 16"):
        SiDLSGTrainer(config(tmp_path, None, embeddings=str(wide)), progress=False)
    with pytest.raises(ValueError, match="ema must be one of"):
        config(tmp_path, prompt_file, ema="disk").validate()
    with pytest.raises(ValueError, match="unknown LatentConfig fields"):
        latent_config("sd15", augment=0.1)


def test_bf16_autocast_with_a_bf16_teacher(tmp_path, prompt_file):
    """The GPU configuration (bf16 autocast, frozen teacher and text encoder stored in bf16, checkpointing) on
    the CPU: it runs, and the losses are those of the fp32 run to bf16 accuracy."""
    losses = {}
    for precision in ("fp32", "bf16"):
        trainer = SiDLSGTrainer(config(tmp_path / precision, prompt_file, precision=precision,
                                       grad_checkpointing="all"), progress=False)
        if precision == "bf16":
            assert trainer.teacher.unet.dtype == torch.bfloat16 and trainer.conditioning.uncond.dtype == torch.bfloat16
            assert trainer.state.G.unet.dtype == torch.float32
        losses[precision] = torch.stack(trainer.step())
    assert torch.isfinite(losses["bf16"]).all()
    assert abs(losses["bf16"][0] - losses["fp32"][0]) < 0.05 * abs(losses["fp32"][0])   # the fake-score loss


def test_each_rank_places_itself_like_the_sid_trainer(tmp_path, prompt_file, monkeypatch):
    """The device comes from the torchrun-aware placement (a rank's cuda:LOCAL_RANK), not from 'auto' alone."""
    asked = []
    monkeypatch.setattr(dist, "rank_device", lambda name: asked.append(name) or torch.device("cpu"))
    trainer = SiDLSGTrainer(config(tmp_path, prompt_file, device="auto"), progress=False)
    assert asked == ["auto"] and trainer.device == torch.device("cpu")
