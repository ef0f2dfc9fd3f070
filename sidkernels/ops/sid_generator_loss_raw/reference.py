"""Plain PyTorch reference of the SiD generator loss taken from the networks' raw outputs: both denoisers are
formed by the EDM output combination, then the SiD generator loss is applied to them."""
from __future__ import annotations

from sidkernels._abi import SIGMA_DATA, acc_dtype
from sidkernels.ops.edm_precond_out.reference import edm_precond_out_ref
from sidkernels.ops.sid_generator_loss.reference import sid_generator_loss_ref


def sid_generator_loss_raw_ref(teacher_raw, fake_raw, x_t, x_g, sigma, alpha=1.2, *, precond="edm",
                               sigma_data=SIGMA_DATA, weight_clip=1e-5, normalize=True):
    """Per-sample loss ``[N]`` of ``a = c_skip x_t + c_out F_phi`` and ``b = c_skip x_t + c_out F_psi``:
    ``sum (a - b) ((a - x_g) - alpha (a - b)) / w``, ``w = max(mean|x_g - a|, weight_clip)`` (stop-gradient).

    x_t is upcast once, so its two gradient paths (through a and through b, which nearly cancel) are added in
    fp32 before the gradient is rounded to x_t's dtype.
    """
    x_t = x_t.to(acc_dtype(teacher_raw.dtype, fake_raw.dtype, x_t.dtype, x_g.dtype))
    a = edm_precond_out_ref(x_t, teacher_raw, sigma, precond, sigma_data)
    b = edm_precond_out_ref(x_t, fake_raw, sigma, precond, sigma_data)
    return sid_generator_loss_ref(a, b, x_g, alpha, weight_clip=weight_clip, normalize=normalize)
