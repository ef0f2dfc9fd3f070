"""FSDP2 (fully_shard) on two gloo CPU ranks: the sharded SiD-LSG step equals the one-process step with the
same micro-batches as accumulation rounds, and a sharded run saves full tensors and resumes bitwise."""
import os
import subprocess
import sys
from pathlib import Path

import torch

from sidkernels.distill import state as state_io
from tests.helpers import assert_close

WORKER = Path(__file__).with_name("fsdp_worker.py")
ROOT = Path(__file__).parents[2]


def _run(*args, ranks: int):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"] \
        if ranks > 1 else [sys.executable]
    done = subprocess.run([*launch, str(WORKER), *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]


def _final(run: Path) -> dict[str, torch.Tensor]:
    tensors, meta = state_io.read_state(state_io.latest_state(run))
    assert meta["counters"]["iteration"] == 2
    return tensors


def test_sharded_run_matches_one_process_and_resumes_bitwise(tmp_path, prompt_file):
    _run(tmp_path, prompt_file, "reference", ranks=1)
    _run(tmp_path, prompt_file, "fsdp", ranks=2)       # an uninterrupted run, and one killed and resumed
    ref, sharded, resumed = (_final(tmp_path / d) for d in ("reference", "fsdp", "killed"))
    nets = [k for k in ref if k.startswith("net/")]
    assert {k.split("/")[1] for k in nets} == {"G", "fake", "G_ema"}
    weights = [k for k in ref if k.startswith(("net/", "opt/"))]
    assert set(weights) == {k for k in sharded if k.startswith(("net/", "opt/"))}
    for k in weights:
        assert ref[k].shape == sharded[k].shape, k                           # full tensors, not shards
        assert_close(sharded[k], ref[k], tol=2e-4)                         # fp32 sums in another order
    init, _ = state_io.read_state(sorted((tmp_path / "reference").glob("training-state-*.safetensors"))[0])
    moved = max((ref[k] - init[k]).abs().max().item() for k in nets if k.startswith("net/G/"))
    assert moved > 0
    assert resumed.keys() == sharded.keys()
    assert all(torch.equal(resumed[k], sharded[k]) for k in sharded if not k.startswith("rng/"))
    assert (tmp_path / "fsdp" / "generator-000000" / "unet").is_dir()
