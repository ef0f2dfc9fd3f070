"""Where a benchmark run happens: the device label, library versions, git commit and time stamp that go on
every CSV row, and the location of the source checkout's ``benchmarks/`` folder."""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import subprocess
from pathlib import Path
from typing import Iterator

import torch

# Device labels of smoke runs: their rows are never plotted as performance nor written into the README.
CPU_QUICK = "cpu-quick"
QUICK_PREFIX = "quick:"


def is_smoke(gpu: str) -> bool:
    """True for the device label of a ``--quick`` run (CPU or GPU): not a measurement to publish."""
    return gpu == CPU_QUICK or gpu.startswith(QUICK_PREFIX)


def repo_root() -> Path | None:
    """The source checkout holding this package (an editable install), or None for a plain install.

    Recognised by ``pyproject.toml`` and ``benchmarks/`` next to the ``sidkernels`` package folder.
    """
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file() and (root / "benchmarks").is_dir():
        return root
    return None


def results_dir() -> Path | None:
    """``benchmarks/results`` of the source checkout (where published GPU results live), or None."""
    root = repo_root()
    return root / "benchmarks" / "results" if root is not None else None


def git_commit(root: Path | None = None) -> str:
    """Short commit hash of the checkout, with ``-dirty`` when tracked files are modified; ``unknown``
    outside a git checkout."""
    root = root or repo_root()
    if root is None:
        return "unknown"
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def device_label(device: torch.device, quick: bool) -> str:
    """The ``gpu`` column: the CUDA device name, ``quick:NAME`` for a GPU smoke run, ``cpu-quick`` on CPU."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return QUICK_PREFIX + name if quick else name
    return CPU_QUICK


@dataclasses.dataclass(frozen=True)
class RunEnv:
    """The columns shared by every row of one run."""
    gpu: str
    torch: str
    triton: str
    commit: str
    timestamp: str

    @classmethod
    def capture(cls, device: torch.device, quick: bool) -> "RunEnv":
        import triton

        stamp = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()
        return cls(gpu=device_label(device, quick), torch=torch.__version__, triton=triton.__version__,
                   commit=git_commit(), timestamp=stamp)


@contextlib.contextmanager
def preserved_torch_flags() -> Iterator[None]:
    """Restore torch's global backend flags (TF32, cuDNN autotuning, matmul precision) on exit: the suites
    and the trainer set them per row, and a caller (a test session, say) must not inherit them."""
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = (cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32, torch.get_float32_matmul_precision())
    try:
        yield
    finally:
        cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32 = saved[:3]
        torch.set_float32_matmul_precision(saved[3])
