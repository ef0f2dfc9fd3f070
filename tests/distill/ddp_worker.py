"""One iteration of SiD, SiDA and SIGN on the mixture (random teacher, global batch 4 in micro-batches of 1) in
the GPU configuration (fused ops on Triton, channels_last, fused Adam, ``device="auto"``: each rank's own GPU
where there are GPUs), then the parameters and losses of each; run by tests/distill/test_ddp.py under
``torchrun --nproc_per_node=2`` and as one plain process.  ``python ddp_worker.py OUT``: writes
``OUT/rank{R}-of-{W}.pt``."""
import os
import sys
from pathlib import Path

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported

import sidkernels as sk  # noqa: E402
from sidkernels.distill import SiDATrainer, SiDTrainer, preset_config, sida_config  # noqa: E402
from sidkernels.sign import SIGNTrainer, sign_config  # noqa: E402

out = sys.argv[1]
Path(out).mkdir(parents=True, exist_ok=True)
common = dict(teacher="random", batch=4, batch_gpu=1, kimg=1.0, device="auto", teacher_eval_samples=0,
              channels_last=True, fused=True, fused_adam=True)
runs = {
    "SiD": (SiDTrainer, preset_config("mixture", out=f"{out}/sid", **common)),
    "SiDA": (SiDATrainer, sida_config("mixture", out=f"{out}/sida", g_warmup_kimg=0, gan_start_kimg=0, **common)),
    "SIGN": (SIGNTrainer, sign_config("mixture", out=f"{out}/sign", lambda_reg=0.0, **common)),
}
result = {}
for name, (trainer_class, cfg) in runs.items():
    with sk.use_backend("triton"):
        trainer = trainer_class(cfg, progress=False)
        losses = torch.stack(trainer.step())
    # each rank's loss is the mean over its share of the batch: averaged over the ranks, the global one
    if trainer.world > 1:
        torch.distributed.all_reduce(losses)
        losses /= trainer.world
    result[name] = {"G": trainer.G.state_dict(), "fake": trainer.fake.state_dict(),
                    "G_ema": trainer.G_ema.state_dict(), "losses": losses, "device": str(trainer.device)}
torch.save(result, f"{out}/rank{trainer.rank}-of-{trainer.world}.pt")
