"""The measured rule that ``backend="auto"`` follows on CUDA tensors: Triton or CUDA C++, per op.

**Rule.** For each op, the fused backend with the lower median forward+backward time in bf16, summed over the
kernel benchmark's named shapes (cifar, 64px, latent), on the GPU of the newest kernel-suite run that measured
both backends on all three shapes.  An op without those measurements stays Triton, and so does a tie.

``sidkernels bench --report`` derives the rule from ``benchmarks/results/results.csv``
(:mod:`sidkernels.bench.backend_rule`) and writes it, with the GPU, date, versions and commit it came from, to
``sidkernels/auto_backend.json``, read here once at import.  A rule that says "cuda" falls back to Triton, with
one warning, where the CUDA extension cannot be loaded.
"""
from __future__ import annotations

import functools
import json
import warnings
from pathlib import Path

from sidkernels import cuda_ext

RULE_FILE = Path(__file__).with_name("auto_backend.json")
# public function -> the kernel benchmark's op name
BENCH_OP = {"add_noise": "add_noise", "edm_precond_in": "precond_in", "edm_precond_out": "precond_out",
            "sid_generator_loss": "sid_loss", "fake_score_loss": "fake_score_loss", "sample_distance": "distance"}


def read_rule(path: Path = RULE_FILE) -> dict:
    """A rule file's content (no file: no measurements, every op Triton)."""
    return json.loads(Path(path).read_text()) if Path(path).is_file() else {"ops": {}}


RULE = read_rule()


def preferred(op: str) -> str:
    """The rule's backend for public function ``op`` on CUDA tensors: ``"cuda"`` or ``"triton"``."""
    return "cuda" if RULE["ops"].get(BENCH_OP[op]) == "cuda" else "triton"


@functools.lru_cache(maxsize=None)
def cuda_loads() -> bool:
    """Whether the CUDA extension loads (building it if needed); warns once when it does not."""
    try:
        cuda_ext.load()
        return True
    except RuntimeError as exc:
        warnings.warn(f"backend='auto': the benchmark rule prefers CUDA C++ for some ops, but {exc}; using "
                      "Triton for them", RuntimeWarning, stacklevel=2)
        return False
