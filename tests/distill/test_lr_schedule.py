"""Learning-rate schedules: the closed forms at known points, clipping, and a clear error for unknown names."""
import math

import pytest

from sidkernels.distill.lr_schedule import LR_SCHEDULES, lr_factor


def test_cosine_closed_form():
    assert lr_factor("cosine", 0.0) == 1.0
    assert lr_factor("cosine", 0.5) == pytest.approx(0.5, abs=1e-15)
    assert lr_factor("cosine", 0.25) == pytest.approx((2 + math.sqrt(2)) / 4)
    assert lr_factor("cosine", 1.0) == pytest.approx(0.0, abs=1e-15)
    assert lr_factor("cosine", 1.7) == lr_factor("cosine", 1.0) and lr_factor("cosine", -0.2) == 1.0


def test_constant_and_unknown():
    assert all(lr_factor("constant", p) == 1.0 for p in (0.0, 0.3, 1.0, 2.0))
    assert set(LR_SCHEDULES) == {"constant", "cosine"}
    with pytest.raises(ValueError, match="schedule must be one of"):
        lr_factor("linear", 0.5)
