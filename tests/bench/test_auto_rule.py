"""Deriving the backend="auto" rule from benchmark rows (sidkernels.bench.auto_rule)."""
import json
from pathlib import Path

from sidkernels._backend import RULE_FILE, read_rule
from sidkernels.bench.auto_rule import SHAPES, derive_rule, write_rule
from sidkernels.bench.results import COLUMNS, read_rows

ROOT = Path(__file__).resolve().parents[2]


def _rows(gpu, times, timestamp="2026-12-01T10:00:00", **overrides):
    """times: {(op, provider): µs per shape}; one full-mode bf16 time_us row per named shape."""
    return [{**{column: "" for column in COLUMNS},
             **dict(suite="kernels", op=op, provider=provider, mode="full", shape_name=shape, dtype="bf16",
                    metric="time_us", p50=str(us), gpu=gpu, torch="2.11.0", triton="3.6.0", commit="abc1234",
                    timestamp=timestamp), **overrides}
            for (op, provider), us in times.items() for shape in SHAPES]


def test_faster_backend_per_op_on_the_newest_gpu_run():
    rows = _rows("NVIDIA H100 80GB HBM3", {("sid_generator_loss", "triton"): 30.0, ("sid_generator_loss", "cuda"): 20.0,
                                          ("add_noise", "triton"): 10.0, ("add_noise", "cuda"): 12.0,
                                          ("fake_score_loss", "triton"): 5.0, ("fake_score_loss", "cuda"): 5.0,
                                          ("edm_precond_in", "triton"): 9.0})  # no cuda rows: not decided
    rows += _rows("NVIDIA A100", {("add_noise", "triton"): 50.0, ("add_noise", "cuda"): 1.0},
                  timestamp="2026-11-01T10:00:00")  # older run
    rows += _rows("cpu-quick", {("add_noise", "triton"): 50.0, ("add_noise", "cuda"): 1.0},
                  timestamp="2026-12-31T10:00:00")  # smoke rows never count
    rule = derive_rule(rows)
    assert rule["ops"] == {"add_noise": "triton", "fake_score_loss": "triton", "sid_generator_loss": "cuda"}  # tie: triton
    assert rule["source"]["gpu"] == "NVIDIA H100 80GB HBM3" and rule["source"]["triton"] == "3.6.0"
    assert rule["times_us"]["sid_generator_loss"] == {"triton": 90.0, "cuda": 60.0}  # summed over the three shapes


def test_other_modes_dtypes_and_missing_shapes_do_not_count():
    rows = _rows("H100", {("sid_generator_loss", "triton"): 30.0}) + _rows("H100", {("sid_generator_loss", "cuda"): 1.0}, dtype="fp32")
    rows += [dict(r, mode="forward") for r in _rows("H100", {("sid_generator_loss", "cuda"): 1.0})]
    rows += [r for r in _rows("H100", {("sid_generator_loss", "cuda"): 1.0}) if r["shape_name"] != "latent"]
    assert derive_rule(rows) == {"rule": derive_rule([])["rule"], "source": None, "ops": {}, "times_us": {}}


def test_write_and_read_round_trip(tmp_path):
    import csv
    rows = _rows("H100", {("sid_generator_loss", "triton"): 30.0, ("sid_generator_loss", "cuda"): 20.0})
    path = tmp_path / "results.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    written = write_rule(path, tmp_path / "auto_backend.json")
    assert read_rule(tmp_path / "auto_backend.json") == written and written["ops"] == {"sid_generator_loss": "cuda"}


def test_shipped_rule_is_the_one_the_committed_results_give():
    """Whoever adds GPU results regenerates the rule (sidkernels bench --report) and commits both."""
    shipped = json.loads(RULE_FILE.read_text())
    assert shipped == derive_rule(read_rows(ROOT / "benchmarks" / "results" / "results.csv"))
