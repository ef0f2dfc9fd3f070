"""backend="auto" on CUDA tensors follows the measured per-op rule (sidkernels.backend_rule); no GPU needed:
only the choice is checked, nothing runs."""
import pytest
import torch

from sidkernels import backend_rule
from sidkernels._backend import resolve_backend

CUDA = torch.device("cuda")
CUDA_LOADS = backend_rule.cuda_loads  # cached: cleared around each test


@pytest.fixture
def rule(monkeypatch):
    monkeypatch.setattr(backend_rule, "RULE", {"ops": {"sid_loss": "cuda", "add_noise": "triton"}})
    CUDA_LOADS.cache_clear()
    yield
    CUDA_LOADS.cache_clear()


def test_each_op_gets_its_measured_backend(rule, monkeypatch):
    monkeypatch.setattr(backend_rule, "cuda_loads", lambda: True)
    assert resolve_backend("auto", CUDA, "sid_generator_loss") == "cuda"
    assert resolve_backend("auto", CUDA, "add_noise") == "triton"
    assert resolve_backend("auto", CUDA, "edm_precond_in") == "triton"  # not measured
    assert resolve_backend("auto", torch.device("cpu"), "sid_generator_loss") == "torch"


def test_cuda_choice_falls_back_to_triton_with_a_warning_when_the_extension_cannot_load(rule):
    with pytest.warns(RuntimeWarning, match="prefers CUDA C.. for some ops, but backend='cuda' is unavailable"):
        assert resolve_backend("auto", CUDA, "sid_generator_loss") == "triton"


def test_every_public_op_has_a_benchmark_name():
    from sidkernels.bench.byte_model import OPS
    assert set(backend_rule.BENCH_OP.values()) <= set(OPS)
