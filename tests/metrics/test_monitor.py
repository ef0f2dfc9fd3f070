"""FIDMonitor driven the way the distillation loop drives it: FID rows in metrics.jsonl at the due reports,
the best snapshot kept (and only replaced by a better one, also across a resume), the FID panel drawn, the same
value from `sidkernels fid --generator` on the best snapshot, and the same value from two gloo ranks."""
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sidkernels.checkpoint import load_checkpoint
from sidkernels.cli import main
from sidkernels.distill import preset_config
from sidkernels.distill.report import append_jsonl, plot_metrics, read_jsonl
from sidkernels.metrics.detector import load_detector
from sidkernels.metrics.fid import save_statistics
from sidkernels.metrics.generator import generator_statistics
from sidkernels.metrics.monitor import BEST_SNAPSHOT, FIDMonitor
from tests.metrics.standin import standin_detector_file, tiny_generator

NUM = 96
WORKER = Path(__file__).with_name("fid_ddp_worker.py")


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """The stand-in detector and reference statistics of the base generator's images (other seeds)."""
    root = tmp_path_factory.mktemp("monitor")
    detector_path = standin_detector_file(root)
    detector = load_detector(detector_path)
    stats = generator_statistics(tiny_generator(), detector, range(5000, 5000 + 2 * NUM), progress=False)
    ref = save_statistics(root / "ref.npz", *stats.mean_cov())
    return dict(detector_path=detector_path, detector=detector, ref=ref)


def perturbed(net, scale: float, seed: int):
    """``net`` with N(0, scale^2) noise added to every weight (a stand-in for training moving G_ema)."""
    out = copy.deepcopy(net)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in out.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)
    return out


def monitor(assets, out, **kw):
    cfg = preset_config("cifar10-uncond", teacher="random", out=str(out), fid_every_kimg=1.0, fid_num=NUM,
                        detector=str(assets["detector_path"]), fid_ref=str(assets["ref"]))
    cfg.validate()
    return FIDMonitor.from_config(cfg, device="cpu", log=kw.pop("log", lambda *a: None), **kw)


def drive(mon, out, schedule):
    """What the loop does at each report: build the record, let the monitor add FID, append and plot."""
    records = []
    out.mkdir(parents=True, exist_ok=True)  # the loop creates the run directory before it starts
    for kimg, net, final in schedule:
        record = {"kimg": kimg, "loss_G": 0.0, "loss_fake": 1.0}
        mon.report(record, net, final=final)
        append_jsonl(out / "metrics.jsonl", record)
        records.append(record)
    plot_metrics(read_jsonl(out / "metrics.jsonl"), out / "metrics.png")  # the loop redraws it at every report
    return records


def same_weights(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_loop_logs_fid_and_keeps_the_best_snapshot_across_a_resume(assets, tmp_path, capsys):
    out = tmp_path / "run"
    base = tiny_generator()
    far, near, worse = perturbed(base, 0.08, 1), perturbed(base, 0.01, 2), perturbed(base, 0.1, 3)
    lines = []
    mon = monitor(assets, out, log=lines.append)
    records = drive(mon, out, [(0.5, far, False), (1.024, far, False), (1.5, near, False), (2.048, near, False),
                               (2.5, worse, False), (3.072, worse, False), (3.2, worse, True)])
    fids = {r["kimg"]: r["fid"] for r in records if "fid" in r}
    assert sorted(fids) == [1.024, 2.048, 3.072, 3.2]  # every 1 kimg and at the end
    assert fids[2.048] < fids[1.024] and fids[3.072] > fids[2.048]
    rows = [r for r in read_jsonl(out / "metrics.jsonl") if "fid" in r]
    assert [r["fid"] for r in rows] == list(fids.values())
    assert all(r["fid_num"] == NUM and r["fid_detector_sha256"] == assets["detector"].sha256 for r in rows)
    assert len(lines) == 4 and assets["detector"].sha256 in lines[0] and "saved " + BEST_SNAPSHOT in lines[1]
    best = load_checkpoint(out / BEST_SNAPSHOT)
    assert same_weights(best, near) and (out / "network-snapshot-best.json").is_file()
    assert (out / "metrics.png").stat().st_size > 0

    # the same FID from the command, for the best snapshot (same seeds 0..NUM-1, same one-step generator)
    assert main(["fid", "--generator", str(out / BEST_SNAPSHOT), "--num", str(NUM), "--detector",
                 str(assets["detector_path"]), "--ref", str(assets["ref"]), "--device", "cpu", "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["fid"] == pytest.approx(fids[2.048], rel=1e-9)

    # resume at 3.2 kimg: the best value comes back from metrics.jsonl; a worse network does not replace it
    resumed = monitor(assets, out, start_kimg=3.2)
    assert resumed.best == pytest.approx(fids[2.048]) and not resumed.due(3.9) and resumed.due(4.0)
    drive(resumed, out, [(4.0, far, False)])
    assert same_weights(load_checkpoint(out / BEST_SNAPSHOT), near)
    # a run directory without the best snapshot starts afresh
    (out / BEST_SNAPSHOT).unlink()
    assert monitor(assets, out, start_kimg=4.0).best == float("inf")


def test_a_failed_square_root_is_logged_and_recorded_as_nan(assets, tmp_path, monkeypatch):
    import sidkernels.metrics.monitor as monitor_module

    def failing(*args, **kwargs):
        raise ValueError("sqrtm(sigma1 @ sigma2) failed even with 1e-06 added to both diagonals")

    monkeypatch.setattr(monitor_module, "frechet_distance", failing)
    lines = []
    record = drive(monitor(assets, tmp_path / "run", log=lines.append), tmp_path / "run",
                   [(1.0, tiny_generator(), False)])[0]
    assert record["fid"] != record["fid"] and "FID at 1 kimg failed: sqrtm" in lines[0]  # NaN
    assert not (tmp_path / "run" / BEST_SNAPSHOT).exists()


def test_fid_configuration_errors_come_before_training(assets, tmp_path):
    def cfg(**kw):
        values = dict(teacher="random", out=str(tmp_path), fid_every_kimg=10.0)
        values.update(kw)
        return preset_config("cifar10-uncond", **values)

    with pytest.raises(ValueError, match="--fid-every needs --detector PATH"):
        cfg(fid_ref=str(assets["ref"])).validate()
    with pytest.raises(ValueError, match="--fid-every needs --fid-ref REF.npz"):
        cfg(detector=str(assets["detector_path"])).validate()
    with pytest.raises(ValueError, match="--fid-every must be > 0"):
        cfg(fid_every_kimg=0.0, detector="d", fid_ref="r").validate()
    with pytest.raises(ValueError, match="--fid-num must be >= 2"):
        cfg(fid_num=1, detector="d", fid_ref="r").validate()
    with pytest.raises(ValueError, match="mixture preset has exact metrics"):
        preset_config("mixture", fid_every_kimg=4.0, detector="d", fid_ref="r").validate()
    preset_config("cifar10-uncond", teacher="random").validate()  # off by default
    assert FIDMonitor.from_config(preset_config("cifar10-uncond", teacher="random"), device="cpu") is None
    with pytest.raises(FileNotFoundError, match="detector: no such file"):
        FIDMonitor.from_config(cfg(detector=str(tmp_path / "none.pt"), fid_ref=str(assets["ref"])), device="cpu")
    save_statistics(tmp_path / "ref8.npz", torch.zeros(8).numpy(), torch.eye(8).numpy())
    with pytest.raises(ValueError, match="fid_ref: the reference statistics have 8 feature dimensions"):
        FIDMonitor.from_config(cfg(detector=str(assets["detector_path"]), fid_ref=str(tmp_path / "ref8.npz")),
                               device="cpu")


def test_distill_command_takes_the_fid_flags():
    from sidkernels.cli import build_parser

    args = build_parser().parse_args(["distill", "--preset", "cifar10-uncond", "--fid-every", "50", "--fid-num",
                                      "10000", "--detector", "inception.pt", "--fid-ref", "ref.npz"])
    assert (args.fid_every_kimg, args.fid_num, args.detector, args.fid_ref) == (50.0, 10000, "inception.pt", "ref.npz")


def test_two_gloo_ranks_give_the_single_process_fid(assets, tmp_path):
    net = tiny_generator()
    single = monitor(assets, tmp_path / "one").evaluate(net)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2]), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(WORKER),
           str(tmp_path / "two"), str(assets["detector_path"]), str(assets["ref"]), str(NUM)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = [json.loads((tmp_path / "two" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert results[0]["fid"] == results[1]["fid"] == pytest.approx(single, rel=1e-9)
    assert results[0]["seeds"] + results[1]["seeds"] == NUM and results[0]["seeds"] == NUM // 2
    assert same_weights(load_checkpoint(tmp_path / "two" / BEST_SNAPSHOT), net)
