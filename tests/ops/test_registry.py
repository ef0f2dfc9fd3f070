"""Every op of the registry, through its descriptor: schema/fake/autograd registration (opcheck), fp64
gradcheck, compilation without graph breaks, validation, layouts with size-1 dimensions, and the completeness
of each op (its name everywhere, its kernel ops, its tests, its CUDA twin)."""
import importlib
from pathlib import Path

import pytest
import torch
from torch._dynamo.testing import CompileCounterWithBackend
from torch.autograd import gradcheck

import sidkernels as sk
from sidkernels.ops import OPS, kernel_ops
from tests.helpers import TOL, assert_close

ROOT = Path(__file__).resolve().parents[2]
OPCHECK_SHAPE = (2, 3, 5, 5)


def _kernel_cases(device, shape=OPCHECK_SHAPE, dtype=torch.float32):
    return {f"{op.name}-{case}": value for op in OPS.values()
            for case, value in op.kernel_cases(shape, dtype, device).items()}


def _gradcheck_cases(device):
    return {f"{op.name}-{case}": value for op in OPS.values() for case, value in op.gradcheck_cases(device).items()}


@pytest.mark.parametrize("case", list(_kernel_cases("cpu")))
def test_opcheck(case, device):
    kernel, args = _kernel_cases(device)[case]
    torch.library.opcheck(kernel.variant("triton"), args)


@pytest.mark.parametrize("case", list(_gradcheck_cases("cpu")))
def test_gradcheck(case, device):
    fn, inputs = _gradcheck_cases(device)[case]
    assert gradcheck(fn, inputs)


@pytest.mark.parametrize("name", list(OPS))
def test_compiles_without_graph_breaks(name, device):
    """The public op's forward and backward under torch.compile(fullgraph=True): one frame, eager's values."""
    op = OPS[name]
    inputs = op.example((3, 2, 5, 5), torch.float32, device)
    leaves = [t for t in inputs if t.requires_grad]
    if name == "add_noise":  # a fixed seed makes compiled and eager draw the same noise
        def fn(*inputs):
            return sk.add_noise(*inputs, seed=7, return_net_input=True, backend="triton")
    else:
        def fn(*inputs):
            return op.call(inputs, "triton")

    counter = CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(fn, backend=counter, fullgraph=True)
    for out, expected in zip(compiled(*inputs), fn(*inputs)):
        assert_close(out, expected)
    total = sum(o.float().sum() for o in compiled(*inputs) if o.requires_grad)
    eager_total = sum(o.float().sum() for o in fn(*inputs) if o.requires_grad)
    for g, e in zip(torch.autograd.grad(total, leaves), torch.autograd.grad(eager_total, leaves)):
        assert_close(g, e)
    assert counter.frame_count == 1


@pytest.mark.parametrize("shape", [(2, 1, 8, 8), (2, 3, 1, 8), (2, 3, 8, 1), (1, 3, 8, 8)])
@pytest.mark.parametrize("name", list(OPS))
def test_size_one_dimensions_in_both_layouts(name, shape, device):
    """Inputs whose layouts differ only in the strides of size-1 dimensions (a one-channel channels_last tensor
    beside a contiguous one, as a one-channel network's last conv returns) are one layout: the fused op takes
    them as they are and agrees with the reference."""
    op = OPS[name]
    inputs = list(op.example(shape, torch.float32, device))
    big = [i for i, t in enumerate(inputs) if t.shape == shape]
    for i in big[1::2]:
        inputs[i] = inputs[i].detach().contiguous(memory_format=torch.channels_last).requires_grad_(
            inputs[i].requires_grad)
    if name == "add_noise":
        x, sigma = inputs
        xt, net, eps = sk.add_noise(x, sigma, return_net_input=True, return_eps=True, backend="triton")
        assert_close(xt, sk.ref.add_noise_ref(x, sigma, eps)[0])
        return
    for out, expected in zip(op.call(inputs, "triton"), op.call(inputs, "torch")):
        assert_close(out, expected)


@pytest.mark.parametrize("name", list(OPS))
@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_bad_input_names_the_argument(name, backend, device):
    """A non-float input, an empty batch and (for ops that take one) a wrong or non-positive sigma are refused
    with an error that names the argument."""
    op = OPS[name]
    inputs = op.example((2, 3, 4, 4), torch.float32, device)
    with sk.use_backend(backend):
        with pytest.raises(TypeError, match="must have a floating dtype"):
            op.call((inputs[0].detach().long(), *inputs[1:]), backend)
        with pytest.raises(ValueError, match="empty batch"):
            op.call(tuple(t[:0] if t.dim() > 1 else t for t in inputs), backend)
        sigma = [i for i, t in enumerate(inputs) if t.dim() == 1]
        for i in sigma:
            for bad, message in ((torch.ones(3, device=device), "sigma must be a scalar or have one value"),
                                 (torch.tensor([0.5, 0.0], device=device), "sigma must be > 0"),
                                 (torch.tensor([0.5, float("nan")], device=device), "sigma must be > 0")):
                with pytest.raises(ValueError, match=message):
                    op.call((*inputs[:i], bad, *inputs[i + 1:]), backend)


def test_kernel_ops_reject_mixed_layouts():
    x = torch.randn(2, 3, 4, 4)
    with pytest.raises(ValueError, match="must share one contiguous or channels_last layout"):
        OPS["edm_precond_out"].kernels[0].variant("triton")(x, x.contiguous(memory_format=torch.channels_last),
                                                           torch.ones(2), 0, 0.5)
    with pytest.raises(ValueError, match="must share one"):
        OPS["add_noise"].kernels[0].variant("triton")(x[..., ::2], torch.ones(2), torch.tensor([1]), 0, 0.5, None,
                                                      False)


def test_every_kernel_op_is_exercised_by_the_cases():
    exercised = {kernel.name for kernel, _ in _kernel_cases("cpu").values()}
    owned = {kernel.name for op in OPS.values() for kernel in op.kernels}
    assert exercised == owned == set(kernel_ops())


@pytest.mark.parametrize("name", list(OPS))
def test_one_name_and_every_piece(name):
    """Public name = op name = module name = forward kernel op name; the op has its test file, its CUDA twin
    (kernels and binding), a byte model for every mode and example inputs its call accepts."""
    op = OPS[name]
    assert op.public.__name__ == op.kernels[0].name == name == getattr(sk, name).__name__
    assert importlib.import_module(f"sidkernels.ops.{name}").OP is op
    assert (ROOT / "tests" / "ops" / f"test_{name}.py").is_file()
    assert (ROOT / "csrc" / f"{name}.cu").is_file() and (ROOT / "csrc" / "bindings" / f"{name}.cpp").is_file()
    for kernel in op.kernels:
        binding = ROOT / "csrc" / "bindings" / f"{kernel.name.removesuffix('_bwd')}.cpp"
        assert f'm.impl("{kernel.name}_cuda"' in binding.read_text()
    for mode in ("forward", "backward", "full"):
        assert op.traffic(mode, (2, 3, 4, 4), torch.bfloat16).nbytes > 0
    assert len(op.call(op.example((2, 3, 4, 4), torch.float32, "cpu"), "torch")) >= 1
    assert sk.ref.__dict__[op.reference.__name__] is op.reference


def test_backward_nones_come_from_the_schema():
    """A backward returns only its leading gradients; the registry pads the rest from the schema."""
    x = torch.randn(2, 3, 4, requires_grad=True)
    y, _ = OPS["edm_precond_in"].kernels[0].variant("triton")(x, torch.ones(2), 0, 0.5, torch.float32)
    (g,) = torch.autograd.grad(y.sum(), [x])
    assert_close(g, torch.full_like(x, 1.25 ** -0.5), tol=TOL[torch.float32])  # c_in at sigma 1
