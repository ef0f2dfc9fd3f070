"""Public functions: bad input raises a clear error naming the argument; backend selection."""
import pytest
import torch

import sidkernels as sk

X = torch.randn(2, 3, 4, 4)
SIGMA = torch.tensor([0.5, 1.0])


def _all_calls(**override):
    """One call per public op, with arguments replaced by ``override`` where they apply."""
    def arg(name, default):
        return override.get(name, default)
    return {
        "add_noise": lambda: sk.add_noise(arg("x", X), arg("sigma", SIGMA)),
        "edm_precond_in": lambda: sk.edm_precond_in(arg("x", X), arg("sigma", SIGMA)),
        "edm_precond_out": lambda: sk.edm_precond_out(arg("x", X), arg("F", X), arg("sigma", SIGMA)),
        "sid_generator_loss": lambda: sk.sid_generator_loss(arg("teacher_out", X), arg("fake_out", X), arg("x_g", X)),
        "fake_score_loss": lambda: sk.fake_score_loss(arg("denoised", X), arg("target", X), arg("sigma", SIGMA)),
    }


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("op", list(_all_calls()))
@pytest.mark.parametrize("case", ["sigma_shape", "sigma_nonpositive", "sigma_nan", "empty_batch", "int_dtype"])
def test_bad_input_names_the_argument(op, case, backend):
    overrides = {
        "sigma_shape": dict(sigma=torch.ones(3)),
        "sigma_nonpositive": dict(sigma=torch.tensor([0.5, 0.0])),
        "sigma_nan": dict(sigma=torch.tensor([0.5, float("nan")])),
        "empty_batch": {k: X[:0] for k in ("x", "x_g", "denoised", "F", "teacher_out", "fake_out", "target")},
        "int_dtype": {k: X.long() for k in ("x", "x_g", "denoised")},
    }[case]
    if case.startswith("sigma") and op == "sid_generator_loss":
        pytest.skip("the generator loss takes no sigma")
    expected = {"sigma_shape": (ValueError, "sigma"), "sigma_nonpositive": (ValueError, "sigma must be > 0"),
                "sigma_nan": (ValueError, "sigma must be > 0"), "empty_batch": (ValueError, "empty batch"),
                "int_dtype": (TypeError, "floating dtype")}[case]
    with sk.use_backend(backend), pytest.raises(expected[0], match=expected[1]):
        _all_calls(**overrides)[op]()


@pytest.mark.parametrize("name", ["fake_out", "teacher_out"])
def test_loss_shape_mismatch(name):
    with pytest.raises(ValueError, match=f"{name} must have the shape of x_g"):
        _all_calls(**{name: X[:, :2]})["sid_generator_loss"]()


def test_shape_mismatch_other_ops():
    with pytest.raises(ValueError, match="F must have the shape of x"):
        _all_calls(F=X[:1])["edm_precond_out"]()
    with pytest.raises(ValueError, match="target must have the shape of denoised"):
        _all_calls(target=X[:, :1])["fake_score_loss"]()


def test_tensors_on_different_devices():
    meta = torch.empty(2, 3, 4, 4, device="meta")
    with pytest.raises(ValueError, match="fake_out is on meta but x_g is on cpu"):
        sk.sid_generator_loss(X, meta, X)
    with pytest.raises(ValueError, match="sigma is on meta"):
        sk.add_noise(X, SIGMA.to("meta"))
    with pytest.raises(ValueError, match="F is on meta"):
        sk.edm_precond_out(X, meta, SIGMA)


def test_other_bad_arguments():
    with pytest.raises(ValueError, match="reduction must be one of"):
        sk.sid_generator_loss(X, X, X, reduction="avg")
    with pytest.raises(ValueError, match="precond must be one of"):
        sk.edm_precond_in(X, SIGMA, precond="iddpm")
    with pytest.raises(ValueError, match="backend must be one of"):
        sk.add_noise(X, SIGMA, backend="cuda-graph")
    with pytest.raises(TypeError, match="seed must be an int or an int64 tensor"):
        sk.add_noise(X, SIGMA, seed=torch.tensor([1.0]), backend="triton")
    with pytest.raises(ValueError, match="sigma must not require grad"):
        sk.add_noise(X, SIGMA.clone().requires_grad_(True))
    with pytest.raises(ValueError, match="weight_clip must be > 0"):
        sk.sid_generator_loss(X, X, X, weight_clip=0.0)
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        sk.add_noise(X.numpy(), SIGMA)
    with pytest.raises(ValueError, match="batch dimension"):
        sk.edm_precond_in(torch.tensor(1.0), SIGMA)


def test_value_checks_can_be_switched_off():
    sk.set_value_checks(False)
    try:
        sk.add_noise(X, torch.tensor([0.5, -1.0]), backend="torch")  # no host sync, no error
    finally:
        sk.set_value_checks(True)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_scalar_and_broadcast_sigma_forms_agree(backend):
    forms = [0.5, torch.tensor(0.5), torch.full((2,), 0.5), torch.full((2, 1, 1, 1), 0.5),
             torch.tensor([0.5]).expand(2)]
    outs = [sk.edm_precond_in(X, s, backend=backend) for s in forms]
    for y, c_noise in outs:
        assert torch.equal(y, outs[0][0]) and torch.equal(c_noise, outs[0][1])
    assert torch.allclose(outs[0][1], torch.full((2,), 0.5).log() / 4)


def test_auto_backend_uses_reference_on_cpu():
    assert sk.get_backend() == "auto"
    from sidkernels._backend import resolve_backend
    assert resolve_backend("auto", torch.device("cpu")) == "torch"
    with sk.use_backend("triton"):
        assert resolve_backend("auto", torch.device("cpu")) == "triton"
    assert resolve_backend("auto", torch.device("cuda")) == "triton"


def test_backends_agree_on_the_loss():
    a, b, x = torch.randn(3, 3, 5, 5), torch.randn(3, 3, 5, 5), torch.randn(3, 3, 5, 5)
    torch.testing.assert_close(sk.sid_generator_loss(a, b, x, backend="torch"),
                               sk.sid_generator_loss(a, b, x, backend="triton"))
