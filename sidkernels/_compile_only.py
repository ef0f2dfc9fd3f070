"""A Triton driver that compiles for a GPU target on a machine without a GPU (the lowering probe and the PTX
instruction count use it; nothing here launches).  It imports only Triton, so a script can load this file
by path and compile another checkout's kernels with it."""
from __future__ import annotations


class CompileOnlyDriver:
    """The parts of a Triton driver that compiling needs: device 0, a null stream, the target ``sm_{arch}``."""

    def __init__(self, arch: int):
        from triton.backends.compiler import GPUTarget
        self.target = GPUTarget("cuda", arch, 32)

    def get_current_device(self):
        return 0

    def get_current_stream(self, device=None):
        return 0

    def get_current_target(self):
        return self.target
