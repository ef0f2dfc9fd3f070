"""Choosing backend="cuda" and the extension loader, on any machine (nothing is built here)."""
import pytest
import torch

import sidkernels as sk
from sidkernels import cuda_ext
from sidkernels.ops import OPS


@pytest.mark.parametrize("name", list(OPS))
def test_cuda_backend_rejects_cpu_tensors(name):
    op = OPS[name]
    with pytest.raises(RuntimeError, match="backend='cuda' got tensors on cpu; the CUDA C.. kernels need CUDA"):
        op.call(op.example((2, 3, 4, 4), torch.float32, "cpu"), "cuda")


def test_cuda_is_a_backend():
    assert "cuda" in sk.BACKENDS
    with sk.use_backend("cuda"):
        assert sk.get_backend() == "cuda"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible: the backend can be loaded here")
def test_require_says_why_the_backend_is_unavailable():
    assert not cuda_ext.available()
    assert "no CUDA device is visible" in cuda_ext.unavailable_reason()
    with pytest.raises(RuntimeError, match="backend='cuda' is unavailable: no CUDA device is visible"):
        cuda_ext.require()


def test_importing_sidkernels_loads_no_kernel():
    """The *_cuda ops are defined (schemas, fakes, autograd) but have no kernel until the library is loaded."""
    if cuda_ext.is_loaded():
        pytest.skip("the extension was loaded in this process")
    for kernel in sk.ops.kernel_ops().values():
        assert not torch._C._dispatch_has_kernel_for_dispatch_key(kernel.qualname("cuda"), "CUDA")
        assert not torch._C._dispatch_has_kernel_for_dispatch_key(kernel.qualname("cuda"), "CPU")
