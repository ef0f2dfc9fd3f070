"""What the Triton kernels share: the launch geometry and the one place that launches them (inside the tensors'
CUDA device, since Triton launches on the current device and its stream)."""
import ast
from pathlib import Path

import torch

import sidkernels
from sidkernels import _triton
from sidkernels._triton import Launch, launch_config

PACKAGE = Path(sidkernels.__file__).resolve().parent


def test_launch_config_splits_long_samples_and_keeps_two_warps():
    block, num_warps, chunks = launch_config(1, 3 * 256 * 256, None)
    assert block * chunks >= 3 * 256 * 256 and chunks > 1 and 2 <= num_warps <= 8
    assert launch_config(4, 17, None)[:2] == (32, 2)
    assert launch_config(4, 1, None)[0] == 16   # never below 16: the noise kernel draws normals by fours
    block, num_warps, _ = launch_config(256, 3072, 132)  # an H100 at CIFAR-10 size: halved to fill 4 programs/SM
    assert block == 1024 and num_warps == 2


def test_run_enters_the_tensors_device(monkeypatch):
    """A launch for tensors on cuda:1 happens inside torch.cuda.device(cuda:1)."""
    entered = []

    class Guard:
        def __init__(self, device):
            self.device = device

        def __enter__(self):
            entered.append(("enter", self.device))

        def __exit__(self, *exc):
            entered.append(("exit", self.device))

    class Kernel:
        def __getitem__(self, grid):
            return lambda *args, **kwargs: entered.append(("launch", grid))

    monkeypatch.setattr(torch.cuda, "device", Guard)
    _triton.run([Launch(Kernel(), (2, 1), (), {})], torch.device("cuda", 1))
    assert entered == [("enter", torch.device("cuda", 1)), ("launch", (2, 1)), ("exit", torch.device("cuda", 1))]


def test_every_kernel_launch_goes_through_run():
    """No module with Triton kernels launches one itself (``kernel[grid](...)``): launchers return Launch records
    and the registry runs them with _triton.run, which enters the device."""
    launches = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "_triton.py" or "import triton" not in path.read_text():
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Subscript):
                launches.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not launches
