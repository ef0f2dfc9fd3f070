"""NVML device facts never raise: without the package, the library or a GPU they say why."""
import sys

import pytest

from sidkernels.bench import device


def test_unavailable_nvml_is_reported_not_raised():
    facts = device.nvml_facts()
    if facts["nvml"]:
        pytest.skip("NVML works on this machine")
    assert isinstance(facts["reason"], str) and facts["reason"]


def test_missing_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    facts = device.nvml_facts()
    assert facts["nvml"] is False and "nvidia-ml-py" in facts["reason"]


def test_nvml_error_at_init(monkeypatch):
    pynvml = pytest.importorskip("pynvml")

    def fail():
        raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    monkeypatch.setattr(pynvml, "nvmlInit", fail)
    facts = device.nvml_facts()
    assert facts["nvml"] is False and "NVML is unavailable" in facts["reason"]


def test_facts_merge_per_label(tmp_path):
    path = tmp_path / "devices.json"
    device.write_device_facts(path, "GPU A", {"nvml": False, "reason": "x"})
    device.write_device_facts(path, "GPU B", {"nvml": False, "reason": "y"})
    import json
    assert set(json.loads(path.read_text())) == {"GPU A", "GPU B"}
