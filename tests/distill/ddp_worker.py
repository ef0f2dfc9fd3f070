"""Run by tests/distill/test_ddp.py under ``torchrun --nproc_per_node=2``: two SiD iterations on the mixture
with a random teacher, then each rank saves its parameters and its last losses."""
import sys

import torch

from sidkernels.distill import SiDTrainer, preset_config

out = sys.argv[1]
cfg = preset_config("mixture", teacher="random", batch=8, batch_gpu=2, kimg=1.0, out=out, device="cpu",
                    teacher_eval_samples=0)
trainer = SiDTrainer(cfg, progress=False)
losses = [torch.stack(trainer.step()) for _ in range(2)]
torch.save({"G": trainer.G.state_dict(), "fake": trainer.fake.state_dict(), "G_ema": trainer.G_ema.state_dict(),
            "losses": torch.stack(losses)}, f"{out}/rank{trainer.rank}.pt")
