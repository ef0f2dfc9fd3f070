"""benchmarks/gpu_first_contact.sh: its dry run fits the GPU's one command, and a stage that overruns is cut
while the rest still run."""
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
import first_contact  # noqa: E402

MAX_OUT_FILES = 8  # what comes back from a device command


def test_dry_run_lists_every_stage_within_510_s():
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_first_contact.sh"), "--dry-run"],
                          env=dict(os.environ, PYTHON=sys.executable), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = re.findall(r"^(\S+)\s+(\d+)\s+(.+)$", done.stdout, re.M)
    stages = {name: int(budget) for name, budget, _ in rows if name != "stage"}
    assert list(stages) == ["install/package", "install/cuda", "correctness/ops", "correctness/memcheck",
                            "correctness/steps", "kernels", "e2e"]
    total = int(re.search(r"total budget: (\d+) s", done.stdout).group(1))
    assert total == sum(stages.values()) <= 510
    assert "84 cases" in done.stdout  # 7 ops x 4 providers x 3 shapes
    files = re.search(r"files in OUT: (.+) \((\d+)\)", done.stdout)
    assert int(files.group(2)) == len(files.group(1).split(", ")) <= MAX_OUT_FILES


def test_an_overrunning_stage_is_cut_and_the_next_still_runs(tmp_path):
    plan = [first_contact.Stage("slow", 2, [sys.executable, "-c", "import time; time.sleep(60)"], "1"),
            first_contact.Stage("quick", 5, [sys.executable, "-c", "print('ran')"], "1"),
            first_contact.Stage("fails", 5, [sys.executable, "-c", "raise SystemExit(4)"], "1"),
            first_contact.Stage("missing", 5, ["/nonexistent/tool"], "1")]
    started = time.monotonic()
    assert first_contact.run_all(plan, tmp_path) == 1
    assert time.monotonic() - started < 30
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [r["status"] for r in summary] == ["cut at its budget", "ok", "failed (exit 4)",
                                              "not started (No such file or directory)"]
    assert summary[2]["budget_s"] > 5  # the quick stage's unused time passed on
    assert "ran" in (tmp_path / "first_contact.log").read_text()
    assert {p.name for p in tmp_path.iterdir()} <= set(first_contact.OUT_FILES)


def test_the_kernel_stage_gets_its_budget_passed_in(tmp_path):
    """``{budget}`` becomes the stage's seconds less 10 (the kernel suite then starts no case past it)."""
    plan = [first_contact.Stage("echo", 40, [sys.executable, "-c", "import sys; print('budget', sys.argv[1])",
                                             "{budget}"], "1")]
    first_contact.run_all(plan, tmp_path)
    assert "budget 30" in (tmp_path / "first_contact.log").read_text()
