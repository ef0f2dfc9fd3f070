"""Which backend a call runs: the names, the per-thread/task default, and backend="auto" on CUDA tensors following
the measured per-op rule (no GPU needed: only the choice is checked, nothing runs)."""
import asyncio
import threading

import pytest
import torch

import sidkernels as sk
from sidkernels import _backend
from sidkernels._backend import resolve_backend
from sidkernels.ops import OPS

CUDA = torch.device("cuda")
CUDA_LOADS = _backend._cuda_loads  # cached: cleared around each test


@pytest.fixture
def rule(monkeypatch):
    monkeypatch.setattr(_backend, "RULE", {"ops": {"sid_generator_loss": "cuda", "add_noise": "triton"}})
    CUDA_LOADS.cache_clear()
    yield
    CUDA_LOADS.cache_clear()


def test_auto_is_the_reference_on_cpu_and_triton_on_cuda_without_measurements():
    assert sk.get_backend() == "auto"
    assert resolve_backend("auto", torch.device("cpu"), "add_noise") == "torch"
    with sk.use_backend("triton"):
        assert resolve_backend("auto", torch.device("cpu"), "add_noise") == "triton"
    assert all(resolve_backend("auto", CUDA, name) == "triton" for name in OPS)


def test_each_op_gets_its_measured_backend(rule, monkeypatch):
    monkeypatch.setattr(_backend, "_cuda_loads", lambda: True)
    assert resolve_backend("auto", CUDA, "sid_generator_loss") == "cuda"
    assert resolve_backend("auto", CUDA, "add_noise") == "triton"
    assert resolve_backend("auto", CUDA, "edm_precond_in") == "triton"  # not measured
    assert resolve_backend("auto", torch.device("cpu"), "sid_generator_loss") == "torch"


def test_fp64_inputs_never_go_to_the_cuda_kernels(rule, monkeypatch):
    """The CUDA kernels take fp32/fp16/bf16 only: a rule that prefers them is not followed for fp64 inputs."""
    monkeypatch.setattr(_backend, "_cuda_loads", lambda: True)
    assert resolve_backend("auto", CUDA, "sid_generator_loss", fp64=True) == "triton"


def test_cuda_choice_falls_back_to_triton_with_a_warning_when_the_extension_cannot_load(rule):
    with pytest.warns(RuntimeWarning, match="prefers CUDA C.. for some ops, but backend='cuda' is unavailable"):
        assert resolve_backend("auto", CUDA, "sid_generator_loss") == "triton"


def test_the_default_is_per_thread():
    """use_backend in one thread does not change what another thread's calls resolve to."""
    inside, seen = threading.Event(), {}

    def pinned():
        with sk.use_backend("triton"):
            seen["pinned"] = sk.get_backend()
            inside.set()
            done.wait(5)

    done = threading.Event()
    thread = threading.Thread(target=pinned)
    thread.start()
    inside.wait(5)
    seen["other"] = sk.get_backend()
    done.set()
    thread.join()
    assert seen == {"pinned": "triton", "other": "auto"}


def test_the_default_is_per_task():
    async def task(backend, results):
        with sk.use_backend(backend):
            await asyncio.sleep(0.01)  # the other task runs in between
            results[backend] = sk.get_backend()

    async def both():
        results = {}
        await asyncio.gather(task("torch", results), task("triton", results))
        return results

    assert asyncio.run(both()) == {"torch": "torch", "triton": "triton"}


def test_bad_backend_name():
    with pytest.raises(ValueError, match="backend must be one of"):
        sk.add_noise(torch.randn(2, 3), 0.5, backend="cuda-graph")
    with pytest.raises(ValueError, match="backend must be one of"):
        with sk.use_backend("gpu"):
            pass


def test_value_checks_can_be_switched_off_globally_and_for_a_block():
    x, bad = torch.randn(2, 3, 4, 4), torch.tensor([0.5, -1.0])
    with pytest.raises(ValueError, match="sigma must be > 0"):
        sk.add_noise(x, bad, backend="torch")
    with sk.value_checks(False):
        sk.add_noise(x, bad, backend="torch")  # no host sync, no error
    sk.set_value_checks(False)
    try:
        sk.add_noise(x, bad, backend="torch")
    finally:
        sk.set_value_checks(True)


def test_every_op_accepts_every_sigma_form():
    x = torch.randn(2, 3, 4, 4)
    forms = [0.5, torch.tensor(0.5), torch.full((2,), 0.5), torch.full((2, 1, 1, 1), 0.5),
             torch.tensor([0.5]).expand(2)]
    for backend in ("torch", "triton"):
        outs = [sk.edm_precond_in(x, s, backend=backend) for s in forms]
        for y, c_noise in outs:
            assert torch.equal(y, outs[0][0]) and torch.equal(c_noise, outs[0][1])
        assert torch.allclose(outs[0][1], torch.full((2,), 0.5).log() / 4)
