"""The distance reference against hand-computed values."""
import math

import pytest
import torch

from sidkernels.ref import pseudo_huber_c, sample_distance_ref


def test_hand_computed_values():
    a = torch.tensor([[3.0, 0.0, 0.0, 4.0], [1.0, 1.0, 1.0, 1.0]])
    b = torch.zeros(2, 4)
    torch.testing.assert_close(sample_distance_ref(a, b, "l2"), torch.tensor([25 / 4, 1.0]))
    torch.testing.assert_close(sample_distance_ref(a, b, "l1"), torch.tensor([7 / 4, 1.0]))
    c = pseudo_huber_c(4)
    assert c == pytest.approx(0.00108)
    expected = torch.tensor([math.sqrt(25 + c * c) - c, math.sqrt(4 + c * c) - c])
    torch.testing.assert_close(sample_distance_ref(a, b, "pseudo_huber"), expected)
    torch.testing.assert_close(sample_distance_ref(a, b, "pseudo_huber", c=1.0),
                               torch.tensor([math.sqrt(26) - 1, math.sqrt(5) - 1]))


def test_dtypes_and_errors():
    a = torch.randn(2, 3, 4, dtype=torch.bfloat16)
    assert sample_distance_ref(a, a.double(), "l1").dtype == torch.float64
    assert sample_distance_ref(a, a, "l2").dtype == torch.float32
    with pytest.raises(ValueError, match="kind must be one of"):
        sample_distance_ref(a, a, "lpips")
