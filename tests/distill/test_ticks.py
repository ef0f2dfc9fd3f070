"""The shared tick loop: reports per tick with the tick's mean losses, states at snapshot ticks and at the end,
stops at the image budget or after max_iterations, and continues a resumed run where it stopped."""
from __future__ import annotations

import types

import pytest
import torch

from sidkernels.distill.ticks import run_ticks


class CountingTrainer:
    """Step i returns losses (i, -2 i); records what the loop asked of it."""

    def __init__(self, cur_nimg: int = 0, iteration: int = 0):
        self.state = types.SimpleNamespace(cur_nimg=cur_nimg, iteration=iteration)
        self.device, self.progress, self.method = torch.device("cpu"), False, "test"
        self.reported, self.saved_at = [], []

    def step(self):
        self.state.iteration += 1
        self.state.cur_nimg += 10
        i = float(self.state.iteration)
        return torch.tensor(i), torch.tensor(-2.0 * i)

    def report(self, record):
        self.reported.append(record)
        return dict(record, seen=True)

    def save(self):
        self.saved_at.append(self.state.cur_nimg)


def config(**kw):
    base = dict(kimg=0.1, tick_kimg=0.03, batch=10, snap_ticks=2)
    return types.SimpleNamespace(**dict(base, **kw))


def test_reports_each_tick_with_the_ticks_mean_losses():
    trainer = CountingTrainer()
    records = run_ticks(trainer, config(), None, ("loss_G",))
    # 10 steps of 10 images; ticks of 30 images end after steps 3, 6, 9, and the budget after step 10
    assert [r["iteration"] for r in records] == [3, 6, 9, 10]
    assert [r["kimg"] for r in records] == [0.03, 0.06, 0.09, 0.1]
    assert [r["loss_fake"] for r in records] == [2.0, 5.0, 8.0, 10.0]   # means of (1,2,3), (4,5,6), (7,8,9), (10)
    assert [r["loss_G"] for r in records] == [-4.0, -10.0, -16.0, -20.0]
    assert all(r["seen"] for r in records) and len(trainer.reported) == 4  # the trainer's report() is returned
    assert all(r["images_per_s"] > 0 for r in records)
    assert trainer.saved_at == [60, 100]                                  # tick 2 (snap_ticks=2) and the end


def test_max_iterations_stops_early_and_a_resumed_run_finishes_the_budget():
    trainer = CountingTrainer()
    records = run_ticks(trainer, config(), 4, ())
    assert trainer.state.iteration == 4 and [r["iteration"] for r in records] == [3]
    rest = run_ticks(trainer, config(), None, ())
    assert trainer.state.cur_nimg == 100 and [r["iteration"] for r in rest] == [6, 9, 10]
    assert rest[0]["loss_fake"] == 5.5   # the new call's first tick averages only its own steps (5, 6)


@pytest.mark.parametrize("done", [100, 150])
def test_a_finished_run_does_nothing(done):
    trainer = CountingTrainer(cur_nimg=done, iteration=10)
    assert run_ticks(trainer, config(), None, ()) == [] and trainer.saved_at == []
