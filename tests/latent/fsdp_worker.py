"""Run by tests/latent/test_fsdp.py, under ``torchrun --nproc_per_node=2`` (FSDP2 on gloo) or alone (the
single-process reference): SiD-LSG on the tiny teacher with draws fixed by (iteration, group, rank), so that
rank r of the sharded run and accumulation round r of the reference see the same micro-batch.

    python fsdp_worker.py OUT_DIR PROMPTS reference       (one process: OUT_DIR/reference)
    torchrun --nproc_per_node=2 fsdp_worker.py OUT_DIR PROMPTS fsdp
        (OUT_DIR/fsdp: two iterations; OUT_DIR/killed: one iteration, then a new trainer resumes it for one more)
"""
import sys

import torch

from sidkernels.latent.config import latent_config
from sidkernels.latent.lsg_losses import Draw
from sidkernels.latent.trainer import SiDLSGTrainer


class FixedDraws(SiDLSGTrainer):
    """Micro-batch j of an iteration: group j // rounds (the fake step, then the G step), and the virtual rank
    j % rounds of a one-process run or this rank of a sharded run."""

    def draw(self):
        if getattr(self, "_at", None) != self.state.iteration:
            self._at, self._j = self.state.iteration, 0
        group, virtual = divmod(self._j, self.rounds)
        self._j += 1
        rank = self.rank if self.world > 1 else virtual
        gen = torch.Generator().manual_seed(10_000 * self.state.iteration + 100 * group + rank)
        c, h, w = self.teacher.latent_shape
        z = torch.randn((self.micro, c, h, w), generator=gen)
        idx = torch.randint(len(self.conditioning.prompts), (self.micro,), generator=gen)
        t = torch.randint(self.cfg.tmin, self.cfg.tmax, (self.micro,), generator=gen)
        eps = torch.randn((self.micro, c, h, w), generator=gen)
        return Draw(z=z, cond=self.conditioning.embed(idx), t=t, eps=eps)


def train(out, prompts, fsdp: bool, iterations: int, resume: bool = False):
    # adam_eps 1: Adam's update is about lr * g, so comparing runs compares gradients (with eps 1e-8 the first
    # update is lr * sign(g), and entries of g near 0 flip with the order of the reduction)
    cfg = latent_config("sd15", teacher="tiny", prompts=prompts, out=out, batch=4, batch_gpu=2, kimg=0.008,
                        tick_kimg=0.004, snap_ticks=1, device="cpu", lr=1e-2, glr=1e-2, adam_eps=1.0, ema="gpu",
                        prompt_dropout=0.0, sample_count=2, fsdp=fsdp, resume="auto" if resume else None)
    FixedDraws(cfg, progress=False, log=lambda *a: None).run(max_iterations=iterations)


if __name__ == "__main__":
    out, prompts, mode = sys.argv[1:4]
    if mode == "reference":
        train(f"{out}/reference", prompts, False, 2)
    else:
        train(f"{out}/fsdp", prompts, True, 2)
        train(f"{out}/killed", prompts, True, 1)
        train(f"{out}/killed", prompts, True, 1, resume=True)
