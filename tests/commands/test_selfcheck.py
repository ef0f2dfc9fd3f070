"""``sidkernels selfcheck`` runs every op of every available backend against the fp64 reference."""
import subprocess
import sys

from sidkernels.ops import OPS


def test_selfcheck_passes_and_prints_a_row_per_case():
    done = subprocess.run([sys.executable, "-m", "sidkernels", "selfcheck", "--batch", "2", "--shape", "1", "5", "7"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "all checks passed" in done.stdout
    rows = [line for line in done.stdout.splitlines() if line.split()[:1] and line.split()[0] in OPS]
    assert len(rows) == len(OPS) * 2 * 2  # ops x {torch, triton} x {fp32, bf16} on a CPU
