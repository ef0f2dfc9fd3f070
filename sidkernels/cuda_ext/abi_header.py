"""``csrc/abi.h``, the C++ view of :mod:`sidkernels._abi` (``python -m sidkernels.cuda_ext.abi_header`` rewrites it;
tests/cuda_ext/test_build.py checks that the committed header is the one generated here)."""
from __future__ import annotations

import torch

from sidkernels import _abi
from sidkernels.cuda_ext.build import CSRC

HEADER = CSRC / "abi.h"


def abi_header() -> str:
    """The text of ``csrc/abi.h``: the constants of :mod:`sidkernels._abi` as C enums and ``constexpr`` values."""
    dtype_names = {torch.float32: "FLOAT32", torch.float16: "FLOAT16", torch.bfloat16: "BFLOAT16"}

    def enum(prefix: str, codes: dict) -> str:
        return "enum { " + ", ".join(f"SK_{prefix}{name} = {code}" for name, code in codes.items()) + " };"

    return "\n".join([
        "// Generated from sidkernels/_abi.py by `python -m sidkernels.cuda_ext.abi_header`.",
        "// Do not edit: change sidkernels/_abi.py and regenerate (tests/cuda_ext/test_build.py checks it).",
        "#pragma once",
        "",
        "// Storage dtypes of the kernels' buffers.",
        enum("", {dtype_names[t]: c for t, c in _abi.CUDA_DTYPE_CODE.items()}),
        "// Preconditioning kinds (the `kind` argument of the preconditioning, noise and raw-loss ops).",
        enum("PRECOND_", {n.upper(): c for n, c in _abi.PRECOND_CODE.items()}),
        "// Distance kinds (the `kind` argument of the distance ops).",
        enum("DISTANCE_", {n.upper(): c for n, c in _abi.DISTANCE_CODE.items()}),
        "",
        "// EDM's VP schedule.",
        f"constexpr float SK_VP_BETA_D = {_abi.VP_BETA_D!r}f;",
        f"constexpr float SK_VP_BETA_MIN = {_abi.VP_BETA_MIN!r}f;",
        f"constexpr float SK_VP_M = {float(_abi.VP_M)!r}f;",
        "",
    ])


if __name__ == "__main__":
    HEADER.write_text(abi_header())
    print(f"wrote {HEADER}")
