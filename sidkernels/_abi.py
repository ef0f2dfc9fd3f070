"""The one source of truth for what the Python ops, the Triton kernels and the CUDA C++ kernels share.

* enum codes passed to the kernel ops as ints: the preconditioning kind and the distance kind;
* the storage dtypes the CUDA kernels read and write, and their codes;
* the VP schedule constants of EDM's variance-preserving preconditioner (docs/ops.md, "Preconditioning");
* the accumulation rule: every op computes in fp64 when an input is fp64 (so ``gradcheck`` works) and in fp32
  otherwise, whatever the storage dtypes.

``csrc/abi.h`` is generated from this module (``python -m sidkernels.cuda_ext.abi_header`` rewrites it);
``tests/cuda_ext/test_build.py`` checks that the committed header is the one this module generates, and the
Triton kernels read the same values through :mod:`sidkernels._triton`.
"""
from __future__ import annotations

import torch

PRECONDS = ("edm", "vp", "ve")                 # code = position
DISTANCES = ("l2", "l1", "pseudo_huber")       # code = position
PRECOND_CODE = {name: code for code, name in enumerate(PRECONDS)}
DISTANCE_CODE = {name: code for code, name in enumerate(DISTANCES)}

# Storage dtypes of the CUDA kernels' tensors, with their codes in csrc/abi.h.
CUDA_DTYPE_CODE = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}

# EDM's VP preconditioner: sigma_vp(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1), c_noise = (M - 1) t(sigma).
VP_BETA_D = 19.9
VP_BETA_MIN = 0.1
VP_M = 1000

# EDM's data standard deviation, the default sigma_data of every op and network.
SIGMA_DATA = 0.5


def acc_dtype(*dtypes: torch.dtype) -> torch.dtype:
    """The dtype of an op's math and of its per-sample outputs: fp64 when any input is fp64, else fp32."""
    return torch.float64 if torch.float64 in dtypes else torch.float32
