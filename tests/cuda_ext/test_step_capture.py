"""One full SiD iteration captured for device ``cuda`` in a CUDA build of torch without a GPU or driver: the
fake-score and generator objectives forward and backward, with the networks and the fused Triton ops, bf16
autocast and channels_last, on fake CUDA tensors (step_capture_probe.py, run in ``$SIDKERNELS_CUDA_TORCH_PYTHON``).

Established here: the iteration traces to one ATen graph on cuda:0 with the fused custom ops (forward and
backward) and no host synchronisation; dynamo captures each objective as the trainer compiles it
(``fullgraph=True``) in one graph with no break.  Inductor's lowering is reported, not required: without a
driver it stops where it asks the CUDA runtime (constant folding runs ``aten.full`` on the device; the
convolution lowering reads the device properties), before any Triton code is generated.
"""
import json
import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.cuda_build

ROOT = Path(__file__).resolve().parents[2]
PYTHON = os.environ.get("SIDKERNELS_CUDA_TORCH_PYTHON")

if not PYTHON:
    pytest.skip("needs a CUDA build of torch in another interpreter: set SIDKERNELS_CUDA_TORCH_PYTHON (.ci/run "
                "installs torch==2.14.1 into .ci-cuda-venv for it)", allow_module_level=True)

FORWARD_OPS = ("add_noise_triton", "edm_precond_in_triton", "edm_precond_out_triton", "fake_score_loss_triton",
               "sid_generator_loss_raw_triton")
BACKWARD_OPS = ("sid_generator_loss_raw_bwd_triton", "edm_precond_out_bwd_triton", "edm_precond_in_bwd_triton")


@pytest.fixture(scope="module")
def report():
    # TRITON_INTERPRET off: nothing launches on fake tensors, and Inductor's Triton path needs the real jit
    env = dict(os.environ, PYTHONPATH=str(ROOT), TRITON_INTERPRET="0", TORCHINDUCTOR_COMPILE_THREADS="1",
               OMP_NUM_THREADS="1")
    proc = subprocess.run([PYTHON, "-m", "tests.cuda_ext.step_capture_probe"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_probe_runs_in_a_cuda_build_without_a_driver(report):
    assert report["torch_cuda"] is not None
    assert report["cuda_available"] is False  # the point: no GPU, no driver
    assert report["autocast"]["ok"], report["autocast"]  # bf16 autocast runs on the fake CUDA tensors


def test_full_iteration_captures_on_cuda_without_host_sync(report):
    stage = report["a_capture"]
    assert stage["ok"], stage["detail"]
    detail = stage["detail"]
    assert detail["host_sync_ops"] == {}
    assert detail["value_devices"] == ["cuda:0"]
    ops = {name.split(".")[1] for name in detail["custom_ops"]}
    assert set(FORWARD_OPS) | set(BACKWARD_OPS) <= ops, detail["custom_ops"]
    assert set(detail["convolution_dtypes"]) == {"torch.bfloat16"}  # autocast reached every convolution
    assert detail["outputs"]["devices"] == ["cuda:0"] and detail["outputs"]["grads_match_params"]
    for graph in report["forward_graphs"].values():
        assert graph["host_sync_ops"] == {} and graph["custom_op_calls"] >= 4


def test_objectives_compile_fullgraph_without_graph_breaks(report):
    stage = report["b_dynamo"]
    assert stage["ok"], stage["detail"]
    for name, attempts in stage["detail"].items():
        explain = attempts["explain_ambient"]
        assert explain["ok"], (name, explain)
        assert (explain["graph_count"], explain["graph_break_count"]) == (1, 0), (name, explain)
        compiled = attempts["compile_fullgraph"]
        assert compiled["ok"], (name, compiled)
        assert compiled["graphs"] == 1 and compiled["custom_op_calls"] >= 4, (name, compiled)
        assert compiled["loss"] == [[], "torch.float32", "cuda:0"]


def test_inductor_lowering_is_reported(report):
    """Either Inductor compiles, or it stops where it needs the driver (recorded, not a failure)."""
    stage = report["c_inductor"]
    assert stage["ok"], stage["detail"]
    for attempt in stage["detail"]["attempts"].values():
        assert attempt["ok"] or "NVIDIA driver" in attempt["first_line"], attempt
