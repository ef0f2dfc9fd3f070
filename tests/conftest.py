"""Test setup: without a GPU, Triton kernels run under the interpreter (set before sidkernels is imported)."""
import os
import tempfile
import zlib

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
os.environ["SIDKERNELS_CACHE"] = tempfile.mkdtemp(prefix="sidkernels-test-cache-")  # hermetic teacher/pair caches

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.fixture
def device():
    return DEVICE


@pytest.fixture(autouse=True)
def _seed_per_test(request):
    """Fresh random inputs per test, reproducible from the test's id."""
    torch.manual_seed(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture(scope="session")
def mixture_teacher_path(tmp_path_factory):
    """A briefly trained teacher of the embedded digit mixture, shared by the distillation tests (the
    embedded default trains longer and caches its teacher)."""
    from sidkernels.checkpoint import save_network
    from sidkernels.distill.mixture import DigitMixture
    from sidkernels.distill.mixture_teacher import mixture_network, train_teacher

    net = train_teacher(DigitMixture.from_digits(), mixture_network(), iterations=250, batch=128, lr=2e-3,
                        ema_halflife_kimg=5.0, seed=0, device=torch.device("cpu"), progress=False)
    path = tmp_path_factory.mktemp("teacher") / "teacher.safetensors"
    save_network(net, path)
    return str(path)
