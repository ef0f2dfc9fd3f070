import copy

import torch

from sidkernels.distill.ema import ema_beta, update_ema


def test_beta_schedule():
    assert ema_beta(0, 256, 500, 0.05) == 0.0  # G_ema = G at the start
    assert abs(ema_beta(10**9, 256, 500, 0.05) - 0.5 ** (256 / 500_000)) < 1e-15
    assert abs(ema_beta(1000, 10, 500, None) - 0.5 ** (10 / 500_000)) < 1e-15
    assert abs(ema_beta(1000, 10, 500, 0.05) - 0.5 ** (10 / 50)) < 1e-15


def test_update_is_lerp_over_parameters_only():
    net = torch.nn.BatchNorm1d(3)
    ema = copy.deepcopy(net)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    net.running_mean.add_(5.0)
    update_ema(ema, net, beta=0.25)
    for p_ema, p in zip(ema.parameters(), net.parameters()):
        torch.testing.assert_close(p_ema, 0.25 * (p - 1.0) + 0.75 * p)
    assert torch.equal(ema.running_mean, torch.zeros(3))
