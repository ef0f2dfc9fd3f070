"""The SiDA trainer: warm-up and GAN schedule, value clipping, exact resume, SiD^2A start, real image data,
clear configuration errors, the CLI."""
import argparse

import pytest
import torch

from sidkernels.checkpoint import save_network
from sidkernels.commands import distill as distill_command
from sidkernels.distill import SiDATrainer, sida_config
from tests.distill.test_image_data import make_dataset
from tests.distill.test_trainer import assert_resume_is_bitwise


def config(tmp_path, **kw):
    values = dict(out=str(tmp_path / "run"), teacher="random", teacher_eval_samples=0, eval_samples=200,
                  device="cpu", batch=8, kimg=0.048, tick_kimg=0.024, snap_ticks=1)
    values.update(kw)
    return sida_config("mixture", **values)


def test_generator_waits_for_the_warm_up_then_the_gan_term_joins(tmp_path, monkeypatch):
    clipped = []
    real_clip = torch.nn.utils.clip_grad_value_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_value_", lambda p, v: clipped.append(v) or real_clip(p, v))
    trainer = SiDATrainer(config(tmp_path, g_warmup_kimg=0.016, gan_start_kimg=0.032), progress=False)
    G0 = [p.detach().clone() for p in trainer.G.parameters()]
    fake0 = [p.detach().clone() for p in trainer.fake.parameters()]
    for _ in range(3):  # cur_nimg 0, 8, 16: not past the 16-image warm-up
        loss_fake, loss_G = trainer.step()
        assert loss_G.item() == 0.0 and torch.isfinite(loss_fake)
    assert all(torch.equal(p, q) for p, q in zip(G0, trainer.G.parameters()))
    assert any(not torch.equal(p, q) for p, q in zip(fake0, trainer.fake.parameters()))
    assert clipped == [1.0] * 3
    terms = trainer.diagnostics()
    assert terms["L_D"] > 0 and terms["L_denoise"] > 0 and "L_sid" not in terms
    trainer.step()  # cur_nimg 24: G steps, SiD term only
    assert any(not torch.equal(p, q) for p, q in zip(G0, trainer.G.parameters()))
    assert trainer.diagnostics()["L_gan"] == 0.0
    trainer.step()  # cur_nimg 32: not yet past 32
    trainer.step()  # cur_nimg 40: the GAN term is on
    assert trainer.term_sums["L_gan"] > 0


def test_kill_and_resume_is_bitwise_identical(tmp_path):
    common = dict(g_warmup_kimg=0.0, gan_start_kimg=0.008)  # the GAN term is on after the resume point
    assert_resume_is_bitwise(SiDATrainer, lambda path, **kw: config(path, **common, **kw), tmp_path)


def test_sid2a_starts_the_generator_from_a_sid_model(tmp_path):
    source = SiDATrainer(config(tmp_path / "src"), progress=False)
    with torch.no_grad():
        for p in source.G.parameters():
            p.add_(0.01)
    save_network(source.G, tmp_path / "sid.safetensors")
    trainer = SiDATrainer(config(tmp_path / "dst", sid_model=str(tmp_path / "sid.safetensors")), progress=False)
    for net in (trainer.G, trainer.G_ema):
        assert all(torch.equal(p, q) for p, q in zip(net.parameters(), source.G.parameters()))
    assert all(torch.equal(p, q) for p, q in zip(trainer.fake.parameters(), trainer.teacher.parameters()))


def test_bad_configuration_fails_before_training(tmp_path):
    with pytest.raises(ValueError, match="needs real images: --data"):
        sida_config("cifar10-uncond", teacher="random").validate()
    with pytest.raises(ValueError, match="exact real samples"):
        config(tmp_path, data=str(tmp_path)).validate()
    with pytest.raises(ValueError, match="d_clip > 0"):
        config(tmp_path, d_clip=0.0).validate()
    with pytest.raises(ValueError, match="g_warmup_kimg"):
        config(tmp_path, g_warmup_kimg=-1.0).validate()


def test_conditional_preset_trains_on_labelled_image_data(tmp_path):
    path, _ = make_dataset(tmp_path / "data", n=4, size=32, as_zip=True)  # labels 0..2 of CIFAR-10's 10
    cfg = sida_config("cifar10-cond", teacher="random", data=str(path), data_workers=0, batch=2, batch_gpu=1,
                      g_warmup_kimg=0.0, gan_start_kimg=0.0, out=str(tmp_path / "run"), device="cpu")
    trainer = SiDATrainer(cfg, progress=False)
    assert trainer.rounds == 2
    before = [p.detach().clone() for p in trainer.G.parameters()]
    trainer.step()  # cur_nimg 0: the fake score/discriminator only
    loss_fake, loss_G = trainer.step()
    assert torch.isfinite(loss_fake) and torch.isfinite(loss_G) and trainer.term_sums["L_gan"] > 0
    assert any(not torch.equal(p, q) for p, q in zip(before, trainer.G.parameters()))


def test_cli_runs_sida_and_refuses_other_methods_options(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(SiDATrainer, "evaluate_teacher", lambda self: None)  # 35-NFE Heun of a random teacher
    parser = argparse.ArgumentParser()
    distill_command.add_arguments(parser)
    args = parser.parse_args(["--method", "sida", "--teacher", "random", "--kimg", "0.016", "--batch", "8",
                              "--tick", "0.008", "--out", str(tmp_path / "run"), "--device", "cpu", "--no-progress",
                              "--g-warmup-kimg", "0", "--gan-start-kimg", "0"])
    assert distill_command.run(args) == 0
    assert "done: kimg=0.016" in capsys.readouterr().out
    args = parser.parse_args(["--method", "sid", "--lsg-gan", "0.1"])
    with pytest.raises(SystemExit, match="--lsg-gan do not apply to --method sid"):
        distill_command.run(args)
