"""Plain PyTorch references: the ``backend="torch"`` path, the oracle of the tests and the eager baseline
of the benchmarks."""
from sidkernels.ref.distance import DISTANCES, pseudo_huber_c, sample_distance_ref
from sidkernels.ref.losses import edm_loss_weight, fake_score_loss_ref, nan_free_rows, sid_generator_loss_ref
from sidkernels.ref.noise import add_noise_ref
from sidkernels.ref.precond import PRECOND_KINDS, coefficients, precond_in_ref, precond_out_ref

__all__ = [
    "DISTANCES", "PRECOND_KINDS", "add_noise_ref", "coefficients", "edm_loss_weight", "fake_score_loss_ref",
    "nan_free_rows", "precond_in_ref", "precond_out_ref", "pseudo_huber_c", "sample_distance_ref",
    "sid_generator_loss_ref",
]
