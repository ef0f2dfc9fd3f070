"""Data-parallel training over two gloo ranks is the one-process run of the same global batch: the same
samples (per-round seeds do not depend on the world size), gradients averaged over the ranks, identical
parameters on every rank."""
import os
import subprocess
import sys
from pathlib import Path

import torch

WORKER = Path(__file__).with_name("ddp_worker.py")
REPO = Path(__file__).parents[2]


def run_worker(out: Path, ranks: int | None) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["PYTHONPATH"] = str(REPO)
    launcher = [] if ranks is None else ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"]
    done = subprocess.run([sys.executable, *launcher, str(WORKER), str(out)], env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]


def test_two_gloo_ranks_train_as_one_process(tmp_path):
    run_worker(tmp_path / "one", None)
    run_worker(tmp_path / "two", 2)
    one = torch.load(tmp_path / "one" / "rank0-of-1.pt")
    r0, r1 = (torch.load(tmp_path / "two" / f"rank{r}-of-2.pt") for r in (0, 1))
    for method in ("SiD", "SiDA", "SIGN"):
        assert r0[method]["device"] == r1[method]["device"] == "cpu"
        torch.testing.assert_close(r0[method]["losses"], one[method]["losses"], rtol=1e-4, atol=1e-6,
                                   msg=lambda m: f"{method}: 2-rank losses differ from one process: {m}")
        for net in ("G", "fake", "G_ema"):
            for key, value in one[method][net].items():
                assert torch.equal(r0[method][net][key], r1[method][net][key]), f"{method} {net}.{key}: ranks differ"
                # Adam's first step moves each weight by ~lr whatever the gradient's size: compare within it
                torch.testing.assert_close(r0[method][net][key], value, rtol=0, atol=2e-5,
                                           msg=lambda m: f"{method} {net}.{key}: 2 ranks vs 1 process: {m}")
