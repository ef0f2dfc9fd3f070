"""A training step makes no host synchronisation: no op that reads a device value back to the host
(``.item()``, ``bool(t)``, ``nonzero``, ``equal``) runs in a SiD, SiDA or SIGN iteration, with the fused ops
or the references.  On the CPU nothing waits, but the ops are the same ones a GPU would wait for, and a
dispatch mode sees every one of them.  The optimisers' steps are left out: Adam's step counters are host
tensors (on a GPU, fused and capturable Adam keep them on the device)."""
import traceback

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook
from torch.utils._python_dispatch import TorchDispatchMode

from sidkernels.distill import SiDATrainer, SiDTrainer, preset_config, sida_config
from sidkernels.sign import SIGNTrainer, sign_config

aten = torch.ops.aten
READS_BACK = {aten._local_scalar_dense, aten.is_nonzero, aten.nonzero, aten.equal, aten.item, aten.allclose,
              aten.masked_select, aten.unique_consecutive, aten._unique2}


class HostReads(TorchDispatchMode):
    """Records every op that returns a device value to the host, with where it was called from."""

    def __init__(self):
        super().__init__()
        self.calls, self.in_optimizer = [], False

    def __enter__(self):
        self.hooks = [register_optimizer_step_pre_hook(lambda *_: setattr(self, "in_optimizer", True)),
                      register_optimizer_step_post_hook(lambda *_: setattr(self, "in_optimizer", False))]
        return super().__enter__()

    def __exit__(self, *exc):
        for hook in self.hooks:
            hook.remove()
        return super().__exit__(*exc)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket in READS_BACK and not self.in_optimizer:
            self.calls.append(f"{func}\n" + "".join(traceback.format_stack(limit=14)[:-2]))
        return func(*args, **(kwargs or {}))


COMMON = dict(teacher="random", batch=4, batch_gpu=2, kimg=1.0, device="cpu", teacher_eval_samples=0)
RUNS = {
    "SiD": lambda out, fused: SiDTrainer(preset_config("mixture", out=out, fused=fused, **COMMON), progress=False),
    "SiDA": lambda out, fused: SiDATrainer(sida_config("mixture", out=out, fused=fused, g_warmup_kimg=0,
                                                       gan_start_kimg=0, **COMMON), progress=False),
    "SIGN": lambda out, fused: SIGNTrainer(sign_config("mixture", out=out, fused=fused, lambda_reg=0.25,
                                                       reg_pairs=16, **COMMON), progress=False),
}


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "reference"])
@pytest.mark.parametrize("method", list(RUNS))
def test_a_training_step_reads_nothing_back(method, fused, tmp_path, monkeypatch):
    monkeypatch.setenv("SIDKERNELS_CACHE", str(tmp_path / "cache"))
    trainer = RUNS[method](str(tmp_path / "run"), fused)
    trainer.step()  # first-step work (lazy state) is allowed its reads
    with HostReads() as reads:
        trainer.step()
    assert not reads.calls, f"{len(reads.calls)} host reads in one {method} step; the first:\n{reads.calls[0]}"


def test_augmentation_reads_nothing_back():
    """The fake-score step's augmentation (image presets; the mixture's networks take none) on a CIFAR batch."""
    from sidkernels.distill.augment import augment
    images = torch.randn(4, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    augment(images, 0.5)
    with HostReads() as reads:
        out, labels = augment(images, 0.5)
    assert out.shape == images.shape and labels.shape == (4, 9)
    assert not reads.calls, f"{len(reads.calls)} host reads in augment; the first:\n{reads.calls[0]}"


def test_the_detector_sees_a_host_read():
    """The check itself: ``.item()`` and ``if tensor:`` are caught."""
    with HostReads() as reads:
        t = torch.ones(3)
        t.sum().item()
        if t.any():
            pass
    assert len(reads.calls) == 2
    opt = torch.optim.Adam([torch.nn.Parameter(torch.ones(2))])
    opt.param_groups[0]["params"][0].grad = torch.ones(2)
    with HostReads() as reads:
        opt.step()  # its own reads are left out
        torch.ones(1).item()
    assert len(reads.calls) == 1
