"""The SiD trainer on the embedded mixture: learning, exact resume, safe checkpoints, clear config errors."""
import json

import pytest
import torch

from sidkernels.checkpoint import save_network
from sidkernels.checkpoint.rebuild import CheckpointError
from sidkernels.distill import SiDTrainer, preset_config
from sidkernels.distill import state as state_io
from sidkernels.distill.metrics import exact_metrics
from sidkernels.distill.mixture_teacher import mixture_network


def config(tmp_path, **kw):
    values = dict(out=str(tmp_path / "run"), teacher_eval_samples=0, eval_samples=1000, device="cpu")
    values.update(kw)
    return preset_config("mixture", **values)


def test_short_run_reduces_exact_frechet_distance(tmp_path, mixture_teacher_path):
    trainer = SiDTrainer(config(tmp_path, teacher=mixture_teacher_path, kimg=4.0, tick_kimg=2.0), progress=False)
    mixture = trainer.mixture
    start = exact_metrics(mixture, trainer.sample(1000))["fd"]
    records = trainer.run()
    end = records[-1]["fd"]
    assert end < start / 3, f"FD {start:.3f} -> {end:.3f}"
    run = tmp_path / "run"
    lines = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["kimg"] for r in lines] == pytest.approx([2.048, 4.032])
    assert {"iteration", "kimg", "images_per_s", "loss_G", "loss_fake", "fd", "nll", "class_kl"} <= set(lines[-1])
    for name in ("metrics.png", "samples-init.png", "samples-latest.png", "config.json"):
        assert (run / name).stat().st_size > 0
    assert state_io.latest_state(run) is not None
    assert list(run.glob("network-snapshot-*.safetensors"))


def _params(trainer):
    nets = {"G": trainer.G, "fake": trainer.fake, "G_ema": trainer.G_ema}
    out = {f"{n}.{k}": v.clone() for n, net in nets.items() for k, v in net.state_dict().items()}
    for n, opt in (("opt_G", trainer.opt_G), ("opt_fake", trainer.opt_fake)):
        for i, st in opt.state_dict()["state"].items():
            out.update({f"{n}.{i}.{k}": v.clone() for k, v in st.items() if isinstance(v, torch.Tensor)})
    return out


def assert_resume_is_bitwise(trainer_class, make_config, tmp_path):
    """6 iterations in one go vs 3, a kill after the checkpoint, a resume and 3 more (``make_config(dir,
    **overrides)`` must give 6 iterations with a checkpoint every 3): networks and Adam states are equal."""
    whole = trainer_class(make_config(tmp_path / "a"), progress=False)
    whole.run()
    killed = trainer_class(make_config(tmp_path / "b"), progress=False)
    killed.run(max_iterations=3)  # "killed" right after the checkpoint of iteration 3
    del killed
    resumed = trainer_class(make_config(tmp_path / "b", resume="auto"), progress=False)
    assert resumed.iteration == 3
    resumed.run()
    assert resumed.iteration == whole.iteration == 6
    a, b = _params(whole), _params(resumed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_kill_and_resume_is_bitwise_identical(tmp_path):
    common = dict(teacher="random", kimg=0.048, batch=8, tick_kimg=0.024, snap_ticks=1)
    assert_resume_is_bitwise(SiDTrainer, lambda path, **kw: config(path, **common, **kw), tmp_path)


def test_checkpoint_cut_mid_write_is_never_loaded(tmp_path, monkeypatch):
    trainer = SiDTrainer(config(tmp_path, teacher="random", batch=8), progress=False)
    trainer.step()
    good = trainer.save()
    assert state_io.latest_state(tmp_path / "run") == good

    def crash(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(state_io, "save_file", crash)
    trainer.step()
    with pytest.raises(KeyboardInterrupt):
        trainer.save()
    assert state_io.latest_state(tmp_path / "run") == good  # the interrupted write left nothing loadable
    assert sorted(p.name for p in (tmp_path / "run").iterdir() if "training-state" in p.name) == [good.name]
    # a damaged file under a final name (e.g. copied by hand) is refused with a clear error
    bad = state_io.state_path(tmp_path / "run", 99)
    bad.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="not a readable training state"):
        SiDTrainer(config(tmp_path, teacher="random", batch=8, resume=str(bad)), progress=False)


def test_bad_configuration_fails_before_training(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        SiDTrainer(config(tmp_path, teacher=str(tmp_path / "missing.pkl")), progress=False)
    other = tmp_path / "other.safetensors"
    save_network(mixture_network(model_channels=16), other)
    with pytest.raises(ValueError, match="does not fit preset 'mixture'"):
        SiDTrainer(config(tmp_path, teacher=str(other)), progress=False)
    with pytest.raises(ValueError, match="must be divisible by batch_gpu"):
        SiDTrainer(config(tmp_path, teacher="random", batch=12, batch_gpu=5), progress=False)
    with pytest.raises(ValueError, match="precision must be one of"):
        SiDTrainer(config(tmp_path, teacher="random", precision="fp8"), progress=False)
    with pytest.raises(ValueError, match="needs --teacher"):
        preset_config("cifar10-uncond").validate()
    with pytest.raises(ValueError, match="unknown preset"):
        preset_config("cifar100")
    with pytest.raises(FileNotFoundError, match="no training state"):
        SiDTrainer(config(tmp_path / "empty", teacher="random", resume="auto"), progress=False)


def test_cuda_graphs_capture_the_compiled_objectives(tmp_path, monkeypatch):
    """``cuda_graphs`` compiles both objectives whole-graph in Inductor's CUDA-graph mode (the GPU run measures
    it); without ``compile`` it is refused before anything is built."""
    with pytest.raises(ValueError, match="cuda_graphs needs compile=True"):
        SiDTrainer(config(tmp_path, teacher="random", cuda_graphs=True), progress=False)
    seen = []
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: seen.append(kw) or fn)
    SiDTrainer(config(tmp_path, teacher="random", compile=True, cuda_graphs=True), progress=False)
    assert len(seen) == 2 and all(kw["mode"] == "reduce-overhead" and kw["fullgraph"] for kw in seen), seen


PRESET_STEPS = ["cifar10-cond"] + [pytest.param(name, marks=pytest.mark.large)
                                   for name in ("cifar10-uncond", "ffhq64", "afhq64", "imagenet64")]


@pytest.mark.parametrize("preset", PRESET_STEPS)
def test_preset_takes_steps_with_a_random_teacher(preset, tmp_path):
    cfg = preset_config(preset, teacher="random", batch=2, batch_gpu=1, out=str(tmp_path / "run"))
    trainer = SiDTrainer(cfg, progress=False)
    assert trainer.rounds == 2
    before = [p.detach().clone() for p in trainer.G.parameters()]
    losses = [torch.stack(trainer.step()) for _ in range(2)]
    assert all(torch.isfinite(l).all() for l in losses)
    assert any(not torch.equal(p, q) for p, q in zip(before, trainer.G.parameters()))
    assert trainer.cur_nimg == 4


# ---------------------------------------------------------------- study options: exact teacher, width, fake updates, lr
def _cache_stub(monkeypatch, make):
    """Replace the cached network teacher (the start of G and the fake score) by ``make(overrides)``."""
    from sidkernels.distill import teachers as teachers_module
    calls = []

    def cached(mixture, device, *, net_overrides=None, progress=True):
        calls.append(net_overrides)
        return make(net_overrides).to(device)

    monkeypatch.setattr(teachers_module, "cached_teacher", cached)
    return calls


def test_exact_teacher_run_starts_from_the_network_teacher(tmp_path, mixture_teacher_path, monkeypatch):
    from sidkernels.checkpoint import load_checkpoint
    from sidkernels.distill.exact_teacher import ExactTeacher
    calls = _cache_stub(monkeypatch, lambda overrides: load_checkpoint(mixture_teacher_path))
    trainer = SiDTrainer(config(tmp_path, teacher="exact", kimg=2.0, tick_kimg=1.0, teacher_eval_samples=500),
                         progress=False)
    assert isinstance(trainer.teacher, ExactTeacher) and calls == [None]
    start = load_checkpoint(mixture_teacher_path)
    for net in (trainer.G, trainer.fake, trainer.G_ema):
        assert all(torch.equal(a, b) for a, b in zip(net.parameters(), start.parameters()))
    fd_start = exact_metrics(trainer.mixture, trainer.sample(1000))["fd"]
    records = trainer.run()
    assert records[-1]["fd"] < 0.65 * fd_start, (fd_start, records[-1]["fd"])  # measured: 8.24 -> 4.30
    assert trainer.teacher_metrics["nll"] < 0  # the exact ODE's samples sit on the components (a network's: > 3)


def test_student_width_and_fake_updates(tmp_path, mixture_teacher_path, monkeypatch):
    calls = _cache_stub(monkeypatch, lambda overrides: mixture_network(**overrides))
    trainer = SiDTrainer(config(tmp_path, teacher=mixture_teacher_path, student_channels=16, fake_updates=3, batch=8),
                         progress=False)
    assert calls == [{"model_channels": 16}]
    assert trainer.G.init_kwargs["model_channels"] == trainer.fake.init_kwargs["model_channels"] == 16
    assert trainer.teacher.init_kwargs["model_channels"] == 32
    for _ in range(2):
        trainer.step()
    steps = {name: opt.state_dict()["state"][0]["step"].item() for name, opt in
             (("G", trainer.opt_G), ("fake", trainer.opt_fake))}
    assert steps == {"G": 2, "fake": 6}


def test_cosine_schedule_sets_the_learning_rates_and_resumes_bitwise(tmp_path):
    import math
    common = dict(teacher="random", kimg=0.048, batch=8, tick_kimg=0.024, snap_ticks=1, lr_schedule="cosine",
                  fake_updates=2)
    assert_resume_is_bitwise(SiDTrainer, lambda path, **kw: config(path, **common, **kw), tmp_path)
    trainer = SiDTrainer(config(tmp_path / "c", **common), progress=False)
    trainer.run()
    factor = 0.5 * (1 + math.cos(math.pi * 40 / 48))  # the 6th step starts at 40 of 48 images
    for opt, lr in ((trainer.opt_G, 1e-4), (trainer.opt_fake, 3e-4)):  # the mixture preset's glr and lr
        assert opt.param_groups[0]["lr"] == pytest.approx(lr * factor) and opt.param_groups[0]["initial_lr"] == lr


def test_study_options_are_validated(tmp_path):
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        config(tmp_path, lr_schedule="linear").validate()
    with pytest.raises(ValueError, match="fake_updates must be >= 1"):
        config(tmp_path, fake_updates=0).validate()
    with pytest.raises(ValueError, match="student_channels must be a positive width"):
        config(tmp_path, student_channels=0).validate()
    with pytest.raises(ValueError, match="need preset 'mixture'"):
        preset_config("cifar10-uncond", teacher="exact").validate()
