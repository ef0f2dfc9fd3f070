"""The results CSV (upserts, skips) and the README block generated from it.  The rows here are made-up
test data under a fake GPU label, written to temporary files only."""
import json

import pytest

from sidkernels.bench import report, results
from sidkernels.bench.env import RunEnv
from sidkernels.bench.timing import Quantiles

FAKE = RunEnv(gpu="Test GPU", torch="t", triton="tr", commit="abc", timestamp="2026-01-02T03:04:05+00:00")
SMOKE = RunEnv(gpu="cpu-quick", torch="t", triton="tr", commit="abc", timestamp="2026-01-02T03:04:05+00:00")
CASE = dict(suite="kernels", op="sid_generator_loss", mode="full", shape_name="cifar", shape="256x3x32x32", dtype="bf16")


def _fill(csv):
    for provider, us in (("eager", 40.0), ("compile", 20.0), ("triton", 10.0)):
        csv.add(**CASE, provider=provider, metric="time_us", value=Quantiles(us, us * 0.9, us * 1.1))
        csv.add(**CASE, provider=provider, metric="gbps", value=Quantiles(1e3 / us, 1e3 / us / 1.1, 1e3 / us / .9))
        csv.add(**CASE, provider=provider, metric="pct_copy", value=50.0)
    csv.skip(**CASE, provider="cuda", reason="no extension")
    e2e = dict(suite="e2e", op="cifar10-uncond", mode="step", shape_name="batch", shape="256x3x32x32")
    csv.add(**e2e, provider="official", dtype="fp32", metric="images_per_s", value=100.0)
    csv.add(**e2e, provider="ours", dtype="bf16", metric="images_per_s", value=400.0)
    csv.add(**e2e, provider="ours", dtype="bf16", metric="mfu_pct", value=30.0)
    return csv


def test_upsert_and_skip_superseded(tmp_path):
    path = tmp_path / "r.csv"
    csv = results.ResultsCSV(path, FAKE)
    csv.skip(**CASE, provider="cuda", reason="not built")
    csv.flush()
    csv = results.ResultsCSV(path, FAKE)  # reopen: rows persist
    assert [r["metric"] for r in csv.rows.values()] == ["skipped"]
    csv.add(**CASE, provider="cuda", metric="time_us", value=Quantiles(3.0, 2.0, 4.0))
    csv.add(**CASE, provider="cuda", metric="time_us", value=Quantiles(5.0, 4.0, 6.0))  # same key: replaced
    csv.flush()
    rows = results.read_rows(path)
    assert [(r["metric"], r["p50"], r["p20"], r["p80"]) for r in rows] == [("time_us", "5", "4", "6")]
    other = results.ResultsCSV(path, RunEnv(**{**FAKE.__dict__, "gpu": "Other GPU"}))
    other.add(**CASE, provider="cuda", metric="time_us", value=1.0)
    other.flush()
    assert len(results.read_rows(path)) == 2  # another GPU's row lives beside it


def test_unknown_metric_and_foreign_csv(tmp_path):
    csv = results.ResultsCSV(tmp_path / "r.csv", FAKE)
    with pytest.raises(ValueError, match="unknown metric"):
        csv.add(**CASE, provider="eager", metric="speed", value=1.0)
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a sidkernels results CSV"):
        results.read_rows(tmp_path / "x.csv")


def test_quantile_rates():
    q = Quantiles.of([1.0, 2.0, 3.0, 4.0, 5.0])
    assert q.p50 == 3.0 and q.p20 < q.p50 < q.p80
    rate = q.inverse(60.0)
    assert rate.p50 == 20.0 and rate.p20 == 60.0 / q.p80 and rate.p80 == 60.0 / q.p20


def _readme(tmp_path):
    path = tmp_path / "README.md"
    path.write_text(f"# T\n\nbefore\n{report.START}\nold text\n{report.END}\nafter\n")
    return path


def test_report_without_gpu_rows(tmp_path):
    readme = _readme(tmp_path)
    csv = _fill(results.ResultsCSV(tmp_path / "results.csv", SMOKE))  # smoke rows only
    csv.flush()
    block = report.update_readme(readme, tmp_path / "results.csv")
    assert block == report.NO_RESULTS
    text = readme.read_text()
    assert "old text" not in text and "No GPU results yet" in text
    assert text.startswith("# T\n\nbefore\n") and text.endswith(f"{report.END}\nafter\n")


def test_report_with_gpu_rows(tmp_path):
    readme = _readme(tmp_path)
    csv = _fill(results.ResultsCSV(tmp_path / "results.csv", FAKE))
    csv.flush()
    block = report.update_readme(readme, tmp_path / "results.csv")
    assert "### Test GPU (2026-01-02)" in block
    assert "| `sid_generator_loss` | cifar 256x3x32x32 | 40.0 | 20.0 | 10.0 | – | triton |" in block
    assert "| 4.00 | 2.00 |" in block  # speed-ups of the best fused provider over eager and compile
    assert "`cuda` skipped" in block and "no extension" in block
    assert "| cifar10-uncond | ours | 400.0 | 4.00 |" in block
    assert "cpu-quick" not in block


def test_report_needs_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    with pytest.raises(ValueError, match="bench:start"):
        report.update_readme(readme, tmp_path / "missing.csv")
    assert readme.read_text() == "# no markers\n"


def test_report_command_without_a_csv(tmp_path):
    from sidkernels import cli

    readme = _readme(tmp_path)
    assert cli.main(["bench", "--report", "--csv", str(tmp_path / "none.csv"), "--readme", str(readme)]) == 0
    assert report.NO_RESULTS in readme.read_text()
    (tmp_path / "sidkernels").mkdir()  # in a checkout the command also writes the backend="auto" rule
    assert cli.main(["bench", "--report", "--csv", str(tmp_path / "none.csv"), "--readme", str(readme)]) == 0
    assert json.loads((tmp_path / "sidkernels" / "auto_backend.json").read_text())["ops"] == {}
