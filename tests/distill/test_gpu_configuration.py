"""The configuration a GPU trains in, run on the CPU: SiD, SiDA and SIGN on the mixture and SiD on a small
image preset, with the fused ops forced to Triton (interpreted) or to the CUDA C++ kernels (their host
emulation, in test_host_emulation.py's subprocess; a real GPU runs them directly), channels_last, fused Adam,
and a resume in the middle that must continue bitwise.  (On the CPU ``backend="auto"`` picks the PyTorch
references, so without this the fused kernels never ran inside a trainer in CI; test_ddp.py adds a two-rank
torchrun start.)"""
import os

import pytest
import torch

import sidkernels as sk
from sidkernels.distill import SiDATrainer, SiDTrainer, preset_config, sida_config
from sidkernels.sign import SIGNTrainer, sign_config
from tests.cuda_ext.host_emulation.build import LIBRARY_ENV

HOST_EMULATION = os.environ.get(LIBRARY_ENV)
DEVICE = "cuda" if torch.cuda.is_available() and not HOST_EMULATION else "cpu"
RUNS = {
    "SiD-mixture": (SiDTrainer, preset_config, "mixture", {}),
    "SiDA-mixture": (SiDATrainer, sida_config, "mixture", dict(g_warmup_kimg=0, gan_start_kimg=0)),
    "SIGN-mixture": (SIGNTrainer, sign_config, "mixture", dict(reg_pairs=16)),
    "SiD-cifar10-cond": (SiDTrainer, preset_config, "cifar10-cond", dict(augment=0.5)),
}


def _cuda_backend_or_skip():
    from sidkernels import cuda_ext
    if HOST_EMULATION:
        cuda_ext.load_library(HOST_EMULATION, device_type="cpu")
    elif torch.cuda.is_available():
        cuda_ext.require()
    else:
        pytest.skip("the CUDA kernels run on a GPU or on their host emulation (test_host_emulation.py runs this "
                    "file in its sanitizer subprocess)")


def _config(make, preset, out, **kw):
    return make(preset, teacher="random", out=str(out), batch=4, batch_gpu=2, kimg=1.0, device=DEVICE,
                channels_last=True, fused=True, fused_adam=True, teacher_eval_samples=0, **kw)


@pytest.mark.parametrize("backend", ["triton", "cuda"])
@pytest.mark.parametrize("run", list(RUNS))
def test_gpu_configuration_trains_and_resumes_bitwise(run, backend, tmp_path, monkeypatch):
    if backend == "cuda":
        _cuda_backend_or_skip()
    elif HOST_EMULATION:
        pytest.skip("the Triton half runs in the main CI process")
    monkeypatch.setenv("SIDKERNELS_CACHE", str(tmp_path / "cache"))
    trainer_class, make, preset, extra = RUNS[run]
    with sk.use_backend(backend):
        whole = trainer_class(_config(make, preset, tmp_path / "run", **extra), progress=False)
        convs = [p for p in whole.fake.parameters() if p.dim() == 4]
        assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
        whole.step()
        state = whole.save()
        losses = torch.stack(whole.step())
        resumed = trainer_class(_config(make, preset, tmp_path / "run", resume=str(state), **extra), progress=False)
        checked = 0
        for opt in (resumed.opt_G, resumed.opt_fake):  # fused Adam refuses moments in another layout
            for p in (p for group in opt.param_groups for p in group["params"]):
                if not opt.state.get(p):  # never had a gradient (e.g. SiDA's unused heads): no moments
                    continue
                checked += 1
                for name in ("exp_avg", "exp_avg_sq"):
                    assert opt.state[p][name].stride() == p.stride(), (name, p.shape)
        assert checked > len(convs)
        again = torch.stack(resumed.step())
    assert torch.isfinite(losses).all(), losses
    assert torch.equal(losses, again), (losses, again)
    for net in ("G", "fake", "G_ema"):
        for (key, a), b in zip(getattr(whole, net).state_dict().items(), getattr(resumed, net).state_dict().values()):
            assert torch.equal(a, b), f"{net}.{key} differs after the resume"
