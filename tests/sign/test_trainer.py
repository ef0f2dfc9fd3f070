"""SIGN on the embedded mixture: it learns, becomes idempotent, projects, and two steps beat one."""
import subprocess
import sys

import pytest
import torch

from sidkernels.distill.metrics import exact_metrics
from sidkernels.sign import SIGNTrainer, corrupt, project, renoise_sigmas, sample_steps, sign_config


def config(tmp_path, teacher, **kw):
    values = dict(teacher=teacher, out=str(tmp_path / "run"), kimg=3.0, tick_kimg=1.0, reg_pairs=300,
                  idem_warmup_kimg=0.5, teacher_eval_samples=0, eval_samples=1000, device="cpu")
    values.update(kw)
    return sign_config("mixture", **values)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, mixture_teacher_path):
    tmp = tmp_path_factory.mktemp("sign")
    trainer = SIGNTrainer(config(tmp, mixture_teacher_path), progress=False)
    start = dict(exact_metrics(trainer.mixture, trainer.sample(1000)), **trainer.diagnostics())
    records = trainer.run()
    return trainer, start, records, tmp / "run"


def test_short_run_lowers_fd_and_idempotence_residual(trained):
    trainer, start, records, _ = trained
    assert records[-1]["fd"] < start["fd"] / 3, (start["fd"], records[-1]["fd"])
    # at the teacher initialisation f is nearly constant (trivially idempotent, residual ~ sample spread);
    # training spreads the samples out and the residual relative to that spread falls
    assert records[-1]["idem_residual_rel"] < 0.7 * start["idem_residual_rel"], (start, records[-1])
    assert records[-1]["identity"] > 10  # f is not the trivial identity map on noise
    for key in ("L_rec", "L_idem", "L_flow", "L_dmd", "L_reg", "heldout_rec"):
        assert key in records[-1]


def test_projection_moves_noisy_samples_towards_the_mixture(trained):
    trainer = trained[0]
    gen = torch.Generator().manual_seed(0)
    clean = trainer.mixture.sample(400, generator=gen)[0]
    noisy, _ = corrupt(clean, "noisy", strength=0.4, generator=gen)
    projected = project(trainer.f_ema, noisy)
    before = exact_metrics(trainer.mixture, noisy)["nll"]
    after = exact_metrics(trainer.mixture, projected)["nll"]
    assert after < before - 1.0, (before, after)


def test_two_steps_are_no_worse_than_one_on_every_exact_metric(trained):
    """The mixture preset's 2-step sampler (re-noise 0.2) against its one step, on the trained model's last
    report (same latents), with margin: FD at least 10% lower, NLL 0.3 nats lower, class KL not higher than the
    plug-in estimator resolves (its bias over 10 classes and 1000 samples is (10 - 1) / (2 * 1000) = 0.0045)."""
    last = trained[2][-1]
    assert last["fd_2step"] < 0.9 * last["fd"], last
    assert last["nll_2step"] < last["nll"] - 0.3, last
    assert last["class_kl_2step"] <= last["class_kl"] + (10 - 1) / (2 * 1000), last


def test_multi_step_sampling_renoises_and_reprojects():
    """K-step sampling is x <- f(sigma_max eps), then x <- f(x + sigma_k eps_k): checked on an affine f."""
    f = lambda u, labels=None: 0.5 * u + 1.0
    eps = torch.randn(3, 1, 4, 4)
    got = sample_steps(f, eps, sigmas=[2.0, 0.5], generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(0)
    x = f(80.0 * eps)
    for sigma in (2.0, 0.5):
        x = f(x + sigma * torch.randn(x.shape, generator=gen))
    torch.testing.assert_close(got, x)
    torch.testing.assert_close(sample_steps(f, eps, steps=1), f(80.0 * eps))
    assert not sample_steps(lambda u, labels=None: u * torch.ones((), requires_grad=True), eps).requires_grad
    with pytest.raises(ValueError, match="steps must be one of"):
        sample_steps(f, eps, steps=7)


def test_renoise_schedule_prefers_the_run_lists_over_the_spec_defaults():
    assert renoise_sigmas(2) == [0.8] and renoise_sigmas(4) == [5.0, 1.5, 0.4]
    tuned = {"2": [0.2], "5": [3.0, 1.0, 0.4, 0.2]}  # as read back from config.json
    assert renoise_sigmas(2, tuned) == [0.2] and renoise_sigmas(3, tuned) == [2.0, 0.5]
    assert renoise_sigmas(5, tuned) == [3.0, 1.0, 0.4, 0.2]
    with pytest.raises(ValueError, match="needs 1 positive re-noising levels"):
        renoise_sigmas(2, {2: [0.5, 0.2]})
    with pytest.raises(ValueError, match="needs 1 positive re-noising levels"):
        sign_config("mixture", renoise={2: [0.0]}).validate()
    with pytest.raises(ValueError, match="dmd_renoise"):
        sign_config("mixture", dmd_renoise=1.5).validate()
    with pytest.raises(ValueError, match="0 < lo <= hi"):
        sign_config("mixture", dmd_renoise_range=(1.0, 0.1)).validate()


def test_project_command(trained):
    run_dir = trained[3]
    done = subprocess.run([sys.executable, "-m", "sidkernels", "project", "--run", str(run_dir), "--corruption",
                           "masked", "--n", "8"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "inpainted" in done.stdout and (run_dir / "projection-masked.png").stat().st_size > 0


def test_ign_baseline_variant_runs(tmp_path, mixture_teacher_path):
    trainer = SIGNTrainer(config(tmp_path, mixture_teacher_path, variant="ign", batch=16), progress=False)
    assert trainer.pairs is None  # IGN uses no teacher terms
    trainer.step()
    record = trainer.diagnostics(n=50)
    assert {"L_rec", "L_idem", "L_tight"} <= set(record) and record["L_tight"] <= 0


def test_sign_config_errors():
    with pytest.raises(ValueError, match="dropout 0"):
        sign_config("cifar10-uncond", teacher="random", dropout=0.1).validate()
    with pytest.raises(ValueError, match="score_loss must be one of"):
        sign_config("mixture", score_loss="kl").validate()
    with pytest.raises(ValueError, match="unknown configuration keys"):
        sign_config("mixture", lambda_tight=1.0)
    with pytest.raises(ValueError, match="reg_pair_dtype must be one of"):
        sign_config("mixture", reg_pair_dtype="int8").validate()


def test_half_precision_pairs_feed_float32_regression_inputs(tmp_path, mixture_teacher_path):
    trainer = SIGNTrainer(config(tmp_path, mixture_teacher_path, batch=16, reg_pairs=40, reg_pair_dtype="float16"),
                          progress=False)
    assert trainer.pairs.inputs.dtype == torch.float16
    z_k, y_k, _ = trainer._pair_batch(8)
    assert z_k.dtype == torch.float32 and y_k.dtype == torch.float32
    trainer.step()
