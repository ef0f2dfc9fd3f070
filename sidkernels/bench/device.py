"""Device facts from NVML (``nvidia-ml-py``): GPU name, driver, clocks, power and memory, written beside
the results so every number can be read against the state of the GPU that produced it.

:func:`nvml_facts` never raises: without the package, the library or a GPU it returns
``{"nvml": False, "reason": ...}``; a single query the GPU does not support is recorded as None.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable


def _query(fn: Callable, *args, scale: float | None = None):
    import pynvml

    try:
        value = fn(*args)
    except pynvml.NVMLError:
        return None
    if isinstance(value, bytes):
        value = value.decode()
    return value * scale if scale is not None and value is not None else value


def _gpu_facts(pynvml, index: int) -> dict[str, Any]:
    h = pynvml.nvmlDeviceGetHandleByIndex(index)
    mem = _query(pynvml.nvmlDeviceGetMemoryInfo, h)
    clock = pynvml.nvmlDeviceGetClockInfo
    max_clock = pynvml.nvmlDeviceGetMaxClockInfo
    sm, memclk = pynvml.NVML_CLOCK_SM, pynvml.NVML_CLOCK_MEM
    mig = _query(pynvml.nvmlDeviceGetMigMode, h)
    return {
        "index": index,
        "name": _query(pynvml.nvmlDeviceGetName, h),
        "memory_total_mib": mem.total / 2 ** 20 if mem else None,
        "memory_used_mib": mem.used / 2 ** 20 if mem else None,
        "sm_clock_mhz": _query(clock, h, sm),
        "mem_clock_mhz": _query(clock, h, memclk),
        "sm_clock_max_mhz": _query(max_clock, h, sm),
        "mem_clock_max_mhz": _query(max_clock, h, memclk),
        "sm_clock_app_mhz": _query(pynvml.nvmlDeviceGetApplicationsClock, h, sm),
        "memory_bus_width_bits": _query(getattr(pynvml, "nvmlDeviceGetMemoryBusWidth", lambda h: None), h),
        "power_draw_w": _query(pynvml.nvmlDeviceGetPowerUsage, h, scale=1e-3),
        "power_limit_w": _query(pynvml.nvmlDeviceGetEnforcedPowerLimit, h, scale=1e-3),
        "power_default_limit_w": _query(pynvml.nvmlDeviceGetPowerManagementDefaultLimit, h, scale=1e-3),
        "temperature_c": _query(pynvml.nvmlDeviceGetTemperature, h, pynvml.NVML_TEMPERATURE_GPU),
        "performance_state": _query(pynvml.nvmlDeviceGetPerformanceState, h),
        "persistence_mode": _query(pynvml.nvmlDeviceGetPersistenceMode, h),
        "mig_mode_current": mig[0] if mig else None,
        "compute_capability": _query(pynvml.nvmlDeviceGetCudaComputeCapability, h),
    }


def nvml_facts() -> dict[str, Any]:
    """Driver and per-GPU facts from NVML, or ``{"nvml": False, "reason": ...}``; never raises."""
    try:
        import pynvml
    except ImportError as e:
        return {"nvml": False, "reason": f"nvidia-ml-py is not installed ({e}); pip install nvidia-ml-py"}
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        return {"nvml": False, "reason": f"NVML is unavailable: {e}"}
    except OSError as e:  # a broken driver library can surface as an OSError from ctypes
        return {"nvml": False, "reason": f"NVML is unavailable: {e}"}
    try:
        facts = {
            "nvml": True,
            "driver_version": _query(pynvml.nvmlSystemGetDriverVersion),
            "cuda_driver_version": _query(pynvml.nvmlSystemGetCudaDriverVersion_v2),
            "nvml_version": _query(pynvml.nvmlSystemGetNVMLVersion),
        }
        count = _query(pynvml.nvmlDeviceGetCount) or 0
        gpus = []
        for i in range(count):
            try:
                gpus.append(_gpu_facts(pynvml, i))
            except pynvml.NVMLError as e:
                gpus.append({"index": i, "error": str(e)})
        facts["gpus"] = gpus
        return facts
    except pynvml.NVMLError as e:
        return {"nvml": False, "reason": f"NVML query failed: {e}"}
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass


def torch_device_facts() -> dict[str, Any]:
    """What torch reports about the visible CUDA device (complements NVML; empty without CUDA)."""
    import torch

    if not torch.cuda.is_available():
        return {}
    p = torch.cuda.get_device_properties(torch.cuda.current_device())
    return {"name": p.name, "total_memory_mib": p.total_memory / 2 ** 20, "multi_processor_count":
            p.multi_processor_count, "capability": f"{p.major}.{p.minor}", "cuda_runtime": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version()}


def write_device_facts(path: Path, label: str, facts: dict[str, Any]) -> Path:
    """Merge ``facts`` under ``label`` (the run's ``gpu`` column) into the JSON file at ``path``."""
    path = Path(path)
    merged = json.loads(path.read_text()) if path.is_file() else {}
    merged[label] = facts
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(merged, indent=2, sort_keys=True, default=str) + "\n")
    tmp.replace(path)
    return path
