"""Choosing backend="cuda" and the extension loader, on any machine (nothing is built here)."""
import pytest
import torch

import sidkernels as sk
from sidkernels import cuda_ext
from sidkernels._backend import resolve_backend

X = torch.randn(2, 3, 4, 4)
CALLS = {
    "add_noise": lambda: sk.add_noise(X, 0.5, backend="cuda"),
    "edm_precond_in": lambda: sk.edm_precond_in(X, 0.5, backend="cuda"),
    "edm_precond_out": lambda: sk.edm_precond_out(X, X, 0.5, backend="cuda"),
    "sid_generator_loss": lambda: sk.sid_generator_loss(X, X, X, backend="cuda"),
    "fake_score_loss": lambda: sk.fake_score_loss(X, X, 0.5, backend="cuda"),
}


def test_cuda_is_a_backend():
    assert "cuda" in sk.BACKENDS
    with sk.use_backend("cuda"):
        assert sk.get_backend() == "cuda"


@pytest.mark.parametrize("op", list(CALLS))
def test_cuda_backend_rejects_cpu_tensors(op):
    with pytest.raises(RuntimeError, match="backend='cuda' got tensors on cpu; the CUDA C.. kernels need CUDA"):
        CALLS[op]()


def test_auto_stays_triton_on_cuda_tensors():
    """No GPU benchmark results yet: auto keeps Triton (see sidkernels._backend)."""
    assert resolve_backend("auto", torch.device("cuda")) == "triton"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible: the backend can be loaded here")
def test_require_says_why_the_backend_is_unavailable():
    assert not cuda_ext.available()
    assert "no CUDA device is visible" in cuda_ext.unavailable_reason()
    with pytest.raises(RuntimeError, match="backend='cuda' is unavailable: no CUDA device is visible"):
        cuda_ext.require()
