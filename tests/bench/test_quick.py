"""`sidkernels bench --quick` on the CPU: the three suites at tiny sizes, the CSV schema, skip reasons, the
device facts and the figures drawn from the CSV.  (Smoke test: no timing is asserted on.)"""
import csv
import json

import pytest
import torch

from sidkernels import cli
from sidkernels.bench import byte_model, env, kernels, results

pytestmark = [
    pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU smoke mode"),
    # torch.utils.benchmark's Timer imports TorchScript helpers that warn on import
    pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"),
]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-quick")
    rc = cli.main(["bench", "--quick", "--out", str(out)])
    return rc, out


@pytest.fixture(scope="module")
def rows(quick_run):
    return results.read_rows(quick_run[1] / "results.csv")


def test_exit_code_and_files(quick_run):
    rc, out = quick_run
    assert rc == 0
    assert (out / "results.csv").is_file()
    pngs = sorted(p.name for p in out.glob("*.png"))
    for name in ("kernels-gbps-cpu-quick-bf16.png", "kernels-speedup-cpu-quick-fp32.png",
                 "e2e-levers-cpu-quick.png", "network-cpu-quick.png"):
        assert name in pngs
    for p in out.glob("*.png"):
        assert p.stat().st_size > 1000 and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_schema_and_smoke_label(quick_run, rows):
    header = (quick_run[1] / "results.csv").read_text().splitlines()[0].split(",")
    assert tuple(header) == results.COLUMNS
    assert rows and all(r["gpu"] == env.CPU_QUICK for r in rows)
    assert {r["suite"] for r in rows} == {"kernels", "network", "e2e"}
    for r in rows:
        assert r["torch"] == torch.__version__ and r["timestamp"] and r["commit"]
        assert r["unit"] == results.METRICS[r["metric"]]
        json.loads(r["extra"])


def test_kernel_suite_covers_eager_and_compile(rows):
    measured = {(r["op"], r["provider"], r["mode"], r["dtype"]) for r in rows
                if r["suite"] == "kernels" and r["metric"] == "time_us" and r["op"] != "copy"}
    expected = {(op, p, m, d) for op in kernels.OPS for p in ("eager", "compile") for m in kernels.MODES
                for d in ("bf16", "fp32")}
    assert measured == expected
    for r in rows:
        if r["suite"] == "kernels" and r["metric"] in ("time_us", "gbps", "pct_copy"):
            assert results.value(r) > 0 and results.value(r, "p20") <= results.value(r, "p80")


def test_triton_and_cuda_are_skipped_with_reasons(rows):
    skipped = [r for r in rows if r["suite"] == "kernels" and r["provider"] in ("triton", "cuda")]
    assert skipped and all(r["metric"] == "skipped" for r in skipped)
    assert all("CUDA GPU" in results.extra(r)["reason"] for r in skipped)
    assert len(skipped) == 2 * len(kernels.OPS) * len(kernels.MODES) * 2


def test_bytes_rows_follow_the_byte_model(rows):
    for r in rows:
        if r["suite"] == "kernels" and r["metric"] == "bytes" and r["op"] != "copy":
            shape = tuple(int(s) for s in r["shape"].split("x"))
            expected = byte_model.logical_bytes(r["op"], r["mode"], shape, kernels.DTYPES[r["dtype"]])
            assert int(r["p50"]) == expected
    copies = {int(r["shape"]) for r in rows if r["op"] == "copy" and r["metric"] == "time_us"}
    needed = {int(r["p50"]) for r in rows if r["metric"] == "bytes" and r["op"] != "copy"}
    assert needed <= copies  # every op's byte count has its copy baseline from the same run


def test_e2e_and_network_rows(rows):
    e2e = {(r["provider"], r["metric"]) for r in rows if r["suite"] == "e2e" and r["op"] == "mixture"}
    for row in ("official", "ours"):
        for metric in ("time_ms", "images_per_s", "model_tflop", "tflops", "mfu_pct"):
            assert (row, metric) in e2e
    assert any(r["op"] == "matmul" and r["metric"] == "tflops" for r in rows)
    network = {(r["provider"], r["metric"]) for r in rows if r["suite"] == "network"}
    assert ("official", "images_per_s") in network and ("bf16+cl", "images_per_s") in network
    assert ("bf16+cl+compile", "skipped") in network


def test_device_facts_written_without_nvml(quick_run):
    facts = json.loads((quick_run[1] / "devices.json").read_text())
    assert facts[env.CPU_QUICK]["nvml"]["nvml"] is False
    assert facts[env.CPU_QUICK]["nvml"]["reason"]


def test_quick_refuses_the_published_results_folder(tmp_path):
    published = env.results_dir()
    if published is None:
        pytest.skip("not a source checkout")
    with pytest.raises(SystemExit, match="never go under"):
        cli.main(["bench", "--quick", "--out", str(published / "x")])


def test_full_run_needs_a_gpu(tmp_path, capsys):
    assert cli.main(["bench", "--suite", "kernels", "--out", str(tmp_path)]) == 2
    assert "CUDA GPU" in capsys.readouterr().err
    assert not (tmp_path / "results.csv").exists()


def test_plots_only_redraws_from_the_csv(quick_run, tmp_path):
    rc = cli.main(["bench", "--plots-only", "--csv", str(quick_run[1] / "results.csv"), "--out", str(tmp_path)])
    assert rc == 0
    assert (tmp_path / "kernels-gbps-cpu-quick-fp32.png").stat().st_size > 1000


def test_budget_stops_and_resume_continues(tmp_path):
    """--budget-s stops between cases with exit status 3 and keeps what it measured; --resume measures only
    the cases this GPU label lacks at this commit (a finished case keeps its stored row)."""
    csv_path = tmp_path / "results.csv"
    base = ["bench", "--quick", "--suite", "kernels", "--ops", "sample_distance,edm_precond_in", "--providers", "eager",
            "--no-plots", "--out", str(tmp_path)]

    def timed():
        return {(r["op"], r["mode"], r["dtype"]): r["p50"] for r in results.read_rows(csv_path)
                if r["metric"] == "time_us" and r["op"] != "copy"}

    assert cli.main(base + ["--budget-s", "0"]) == 3
    assert timed() == {}
    assert cli.main(base + ["--resume", "--dtypes", "bf16"]) == 0
    assert set(timed()) == {(op, m, "bf16") for op in ("sample_distance", "edm_precond_in") for m in kernels.MODES}
    stored = results.read_rows(csv_path)
    marked = next(r for r in stored if r["metric"] == "time_us" and r["op"] == "sample_distance")
    marked["p50"] = "-1"  # a value no timing gives
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=results.COLUMNS)
        writer.writeheader()
        writer.writerows(stored)
    assert cli.main(base + ["--resume"]) == 0
    after = timed()
    assert set(after) == {(op, m, d) for op in ("sample_distance", "edm_precond_in") for m in kernels.MODES
                          for d in ("bf16", "fp32")}
    assert after[marked["op"], marked["mode"], marked["dtype"]] == "-1"  # not measured again
    assert sum(v == "-1" for v in after.values()) == 1
