"""The logical byte model, checked against hand-counted bytes for a small shape and mixed dtypes.

Shape [2, 3, 4, 4]: N = 2 samples of D = 48 elements, so a big tensor has 96 elements (fp32 384 B,
bf16 192 B, fp16 192 B, fp64 768 B) and a per-sample vector 2 (fp32 8 B, fp64 16 B).
"""
import pytest
import torch

from sidkernels.bench import byte_model
from sidkernels.ops import OPS

SHAPE = (2, 3, 4, 4)
F32, BF16, F16, F64 = torch.float32, torch.bfloat16, torch.float16, torch.float64

# (op, role dtypes, {mode: (bytes read, bytes written)}), counted by hand from the table in byte_model.
CASES = [
    # x bf16, net fp32.  fwd: x 192 + sigma 8 | x_t 192 + net 384.  bwd: g_x_t 192 + g_net 384 + sigma 8 | g_x 192
    ("add_noise", dict(x=BF16, net=F32), {"forward": (200, 576), "backward": (584, 192)}),
    # x fp32, out bf16.  fwd: x 384 + sigma 8 | y 192 + c_noise 8.  bwd: g_y 192 + sigma 8 | g_x 384
    ("edm_precond_in", dict(x=F32, out=BF16), {"forward": (392, 200), "backward": (200, 384)}),
    # x fp32, F bf16, D fp32.  fwd: x 384 + F 192 + sigma 8 | D 384.  bwd: g_D 384 + sigma 8 | g_x 384 + g_F 192
    ("edm_precond_out", dict(x=F32, F=BF16), {"forward": (584, 384), "backward": (392, 576)}),
    # a bf16, b fp16, x fp32.  fwd: 192 + 192 + 384 | loss 8 + scale 8 + h 192 + 192 + 384.
    # bwd: g_loss 8 + scale 8 + h 768 | g 768
    ("sid_generator_loss", dict(a=BF16, b=F16, x=F32), {"forward": (768, 784), "backward": (784, 768)}),
    # D bf16, y fp32, r fp32.  fwd: D 192 + y 384 + sigma 8 | loss 8 + scale 8 + r 384.
    # bwd: g_loss 8 + scale 8 + r 384 | g_D 192
    ("fake_score_loss", dict(D=BF16, y=F32), {"forward": (584, 400), "backward": (400, 192)}),
    # a bf16, b fp32.  fwd: a 192 + b 384 | dist 8 + scale 8.  bwd: g_dist 8 + scale 8 + a 192 + b 384 | g_a 192
    ("sample_distance", dict(a=BF16, b=F32), {"forward": (576, 16), "backward": (592, 192)}),
    # F_phi, F_psi bf16, x_t, x_g fp32.  fwd: 192 + 192 + 384 + 384 + sigma 8 | loss 8 + scale 8.
    # bwd: g_loss 8 + scale 8 + sigma 8 + the four inputs 1152 | g_F_phi 192 + g_F_psi 192 + g_x_t 384 + g_x_g 384
    ("sid_generator_loss_raw", dict(F_phi=BF16, F_psi=BF16, x_t=F32, x_g=F32),
     {"forward": (1160, 16), "backward": (1176, 1152)}),
    # fp64 anywhere makes the per-sample outputs and D fp64: x fp64, F fp32.
    # fwd: x 768 + F 384 + sigma 8 | D 768.  bwd: g_D 768 + sigma 8 | g_x 768 + g_F 384
    ("edm_precond_out", dict(x=F64, F=F32), {"forward": (1160, 768), "backward": (776, 1152)}),
]


@pytest.mark.parametrize("op, dtypes, expected", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_hand_counted_bytes(op, dtypes, expected):
    for mode, (read, written) in expected.items():
        t = byte_model.traffic(op, mode, SHAPE, **dtypes)
        assert (t.bytes_read, t.bytes_written) == (read, written), mode
        assert byte_model.logical_bytes(op, mode, SHAPE, **dtypes) == read + written
    full = byte_model.logical_bytes(op, "full", SHAPE, **dtypes)
    assert full == sum(r + w for r, w in expected.values())


def test_uniform_dtype_default():
    # sid_generator_loss, all bf16: fwd 3*192 read, 8+8+3*192 written; bwd 8+8+3*192 read, 3*192 written
    assert byte_model.logical_bytes("sid_generator_loss", "forward", SHAPE, BF16) == 576 + 592
    assert byte_model.logical_bytes("sid_generator_loss", "backward", SHAPE, BF16) == 592 + 576
    # fake_score_loss, all fp32: fwd 384+384+8 | 8+8+384; bwd 8+8+384 | 384
    assert byte_model.logical_bytes("fake_score_loss", "full", SHAPE) == 776 + 400 + 400 + 384


def test_every_op_and_mode_is_modelled():
    for op in OPS:
        for mode in byte_model.MODES:
            assert byte_model.logical_bytes(op, mode, SHAPE, BF16) > 0


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown op"):
        byte_model.traffic("nope", "forward", SHAPE)
    with pytest.raises(ValueError, match="unknown mode"):
        byte_model.traffic("sid_generator_loss", "sideways", SHAPE)
    with pytest.raises(ValueError, match="dtype roles"):
        byte_model.traffic("sid_generator_loss", "forward", SHAPE, D=F32)


def test_copy_baseline_moves_the_same_bytes():
    assert byte_model.copy_bytes(1000) * 2 == 1000
    assert byte_model.copy_bytes(1001) == 501


def test_generator_loss_path_hand_counted():
    """F_phi, F_psi bf16; x_t, x_g fp32.  The chain: two edm_precond_out forwards + backwards (1936 B each:
    584 | 384, 392 | 576), the loss on fp32 a, b (fwd 1152 | 1168, bwd 1168 | 1152) and the sum of x_t's two
    gradients (768 | 384): 9664 B.  The fused op reads the four inputs once per pass and writes each gradient once
    (1160 | 16, 1176 | 1152): 3504 B, which is the minimum."""
    assert byte_model.generator_loss_path(SHAPE) == {"chain": 9664, "fused_raw": 3504, "minimum": 3504}


def test_generator_loss_path_grows_with_the_samples():
    small, large = (byte_model.generator_loss_path((n, 3, 32, 32)) for n in (64, 256))
    assert all(large[k] == 4 * small[k] for k in small)
    assert large["fused_raw"] == large["minimum"] < large["chain"] / 2
