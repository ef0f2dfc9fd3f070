"""A child process that loads checkpoint files one by one and checks, after each, that its own process is
intact; and :class:`LoadWorker`, the parent's handle on it.

Run as ``python -m tests.checkpoint.load_worker`` (the parent does this).  Protocol: one JSON request per
line on stdin (``{"path": ..., "reader": "checkpoint" | "state", "key": ...}``), one JSON reply per line on
stdout.  A reply's ``outcome`` is

* ``loaded``: the reader returned;
* ``refused``: it raised :class:`~sidkernels.checkpoint.CheckpointError` from one of its own checks;
* ``unexpected``: it raised the CheckpointError of its safety net (some other exception, caught and
  wrapped): still within the contract, but a check the loader lacks;
* ``violation``: it raised anything else (the contract is broken).

The parent adds ``crash`` (the child died; its return code and the tail of its stderr, where faulthandler
writes the crashing stack) and ``hang`` (no reply within the timeout; the child is killed).

After every request the child checks its process (``intact``, with the differences in ``changes``):

* a clean reference ``torch.save`` file, read with ``torch.load(weights_only=True)`` and with our own
  reader, and a clean safetensors file read with the safetensors library, must give tensors bit-identical
  to ones built in memory (values, dtype, shape, strides, no conj/neg bit);
* the observable state of the modules a loader touches must be unchanged: the identity of every attribute
  of those modules, and of every function there its code, defaults and ``__dict__``;
* so must ``sys.modules`` (no import happened), the torch RNG state (loading draws no random numbers),
  torch's global settings, numpy's error settings, the environment, the working directory, the open file
  descriptors and the running threads.
"""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.checkpoint.seeds import READERS, write_seeds

REPO = Path(__file__).resolve().parents[2]
WATCHED_MODULES = ("builtins", "collections", "copyreg", "_codecs", "io", "json", "pickle", "struct", "zipfile",
                   "numpy", "numpy._core.multiarray", "torch", "torch._utils", "torch.storage", "torch.serialization",
                   "torch._tensor", "torch.nn.parameter", "torch.nn.modules.module", "torch.nn.modules.container",
                   "safetensors", "safetensors.torch")
WATCHED_PREFIXES = ("sidkernels.checkpoint", "sidkernels.networks", "sidkernels.distill.state")
READY = "ready"


# -- child ----------------------------------------------------------------------------------------------------

def reference_tensors() -> dict:
    """Tensors of several dtypes and layouts, computed (never loaded) in the child."""
    import torch

    base = torch.arange(24, dtype=torch.float64).reshape(4, 6) * 0.37 - 3.0
    return {"f32": base.float(), "f64": base, "bf16": base.to(torch.bfloat16), "f16": base.half(),
            "i64": torch.arange(-5, 7, dtype=torch.int64), "u8": torch.arange(250, 256, dtype=torch.uint8),
            "bool": torch.tensor([True, False, True]), "view": base.float().t()[1:, ::2]}


def _differences(expected: dict, actual, label: str) -> list[str]:
    import torch

    if not isinstance(actual, dict) or sorted(actual) != sorted(expected):
        return [f"{label}: keys {sorted(actual) if isinstance(actual, dict) else type(actual).__name__}"]
    out = []
    for k, e in expected.items():
        a = actual[k]
        if not isinstance(a, torch.Tensor) or a.dtype != e.dtype or a.shape != e.shape:
            out.append(f"{label}[{k}]: {type(a).__name__} {getattr(a, 'dtype', '')} {getattr(a, 'shape', '')}")
        elif a.is_neg() or a.is_conj() or a.requires_grad:
            out.append(f"{label}[{k}]: neg={a.is_neg()} conj={a.is_conj()} requires_grad={a.requires_grad}")
        elif not torch.equal(a.contiguous().view(torch.uint8), e.contiguous().view(torch.uint8)):
            out.append(f"{label}[{k}]: values differ")
    return out


def _function_state(f) -> tuple:
    defaults = tuple(map(id, f.__defaults__ or ()))
    kwdefaults = tuple(sorted((k, id(v)) for k, v in (f.__kwdefaults__ or {}).items()))
    return id(f.__code__), defaults, kwdefaults, tuple(sorted(map(str, vars(f))))


def module_state() -> dict:
    """``{qualified name: fingerprint}`` of every attribute of the watched modules."""
    import types

    names = set(WATCHED_MODULES) | {m for m in sys.modules if m.startswith(WATCHED_PREFIXES)}
    state = {}
    for mod_name in sorted(names):
        module = sys.modules.get(mod_name)
        if module is None:
            continue
        for name, value in list(vars(module).items()):
            key = f"{mod_name}.{name}"
            state[key] = id(value)
            if isinstance(value, types.FunctionType):
                state[key] = (id(value), _function_state(value))
            elif isinstance(value, type) and getattr(value, "__module__", None) == mod_name:
                state[key] = (id(value), tuple(sorted((k, id(v)) for k, v in vars(value).items())))
    return state


def global_state() -> dict:
    import hashlib
    import threading
    import warnings

    import numpy as np
    import torch

    return {"sys.modules": frozenset(sys.modules), "torch rng": hashlib.sha1(torch.get_rng_state().numpy()).digest(),
            "default dtype": torch.get_default_dtype(), "grad enabled": torch.is_grad_enabled(),
            "threads": torch.get_num_threads(), "deterministic": torch.are_deterministic_algorithms_enabled(),
            "numpy errors": tuple(sorted(np.geterr().items())), "environment": tuple(sorted(os.environ.items())),
            "cwd": os.getcwd(), "open fds": tuple(sorted(os.listdir("/proc/self/fd"))),
            "python threads": threading.active_count(), "warning filters": tuple(map(repr, warnings.filters)),
            "recursion limit": sys.getrecursionlimit()}


class Child:
    def __init__(self, workdir: Path):
        import torch
        from safetensors.torch import save_file

        from sidkernels.checkpoint import official

        self.expected = reference_tensors()
        self.ref_pt, self.ref_st = workdir / "reference.pt", workdir / "reference.safetensors"
        torch.save(self.expected, self.ref_pt)
        save_file({k: v.contiguous() for k, v in self.expected.items()}, str(self.ref_st))
        self.official = official
        # first use: lazy imports and caches happen here, not during a request
        seeds = write_seeds(workdir / "seeds")
        for name, reader in READERS.items():
            self.load({"path": str(seeds[name]), "reader": reader}, check=False)
        self.check()
        self.modules, self.globals = module_state(), global_state()

    def check(self) -> list[str]:
        import torch
        from safetensors.torch import load_file

        out = _differences(self.expected, torch.load(self.ref_pt, weights_only=True), "torch.load")
        out += _differences({k: v for k, v in self.expected.items() if k != "view"},
                            {k: v for k, v in load_file(str(self.ref_st)).items() if k != "view"}, "safetensors")
        try:
            ours = self.official.read_checkpoint_object(self.ref_pt)
        except Exception as err:  # noqa: BLE001 - a failure here is a finding to report, not to raise
            ours = f"{type(err).__name__}: {err}"
        return out + _differences(self.expected, ours, "our reader")

    def changes(self) -> list[str]:
        out = self.check()
        modules, globals_ = module_state(), global_state()
        for key in sorted(set(modules) | set(self.modules)):
            if modules.get(key) != self.modules.get(key):
                out.append(f"module state changed: {key}")
        for key, value in globals_.items():
            if value != self.globals[key]:
                detail = ""
                if key == "sys.modules":
                    detail = f": +{sorted(value - self.globals[key])[:8]} -{sorted(self.globals[key] - value)[:8]}"
                out.append(f"{key} changed{detail}")
        return out

    def load(self, request: dict, check: bool = True) -> dict:
        import resource
        import warnings

        from sidkernels import checkpoint
        from sidkernels.distill import state

        unexpected = getattr(checkpoint, "UnexpectedCheckpointError", ())
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        reply: dict = {}
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                if request["reader"] == "state":
                    state.read_state(request["path"])
                    reply["outcome"] = "loaded"
                else:
                    net = checkpoint.load_checkpoint(request["path"], key=request.get("key"))
                    reply.update(outcome="loaded", type=type(net).__name__)
            except BaseException as err:  # noqa: BLE001 - classify every way out
                if isinstance(err, (KeyboardInterrupt, SystemExit)):
                    raise
                kind = ("unexpected" if unexpected and isinstance(err, unexpected) else
                        "refused" if isinstance(err, checkpoint.CheckpointError) else "violation")
                reply.update(outcome=kind, error=type(err).__name__, message=_short(err))
                del err
        reply["seconds"] = time.perf_counter() - start
        reply["warnings"] = [_short(w.message) for w in caught]
        reply["peak_rss_growth_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
        if check:
            reply["changes"] = self.changes()
            reply["intact"] = not reply["changes"]
        elif reply["outcome"] != "loaded":
            raise RuntimeError(f"a seed file did not load: {reply}")
        return reply


def _short(obj, limit: int = 400) -> str:
    try:
        text = str(obj)
    except Exception as err:  # noqa: BLE001 - str() of a hostile value may itself fail
        text = f"<unprintable: {type(err).__name__}>"
    return text if len(text) <= limit else text[:limit] + "..."


def _limit_memory(extra_mb: int) -> None:
    """Cap the address space at what it is now plus ``extra_mb``: a runaway allocation fails with
    MemoryError inside this child instead of taking memory from everyone on the machine."""
    import resource

    with open("/proc/self/status") as f:
        vm_kb = next(int(line.split()[1]) for line in f if line.startswith("VmSize:"))
    limit = (vm_kb + extra_mb * 1024) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def main() -> None:
    import faulthandler

    faulthandler.enable()  # a crash prints the crashing stack to stderr, which the parent keeps
    os.environ.setdefault("TRITON_INTERPRET", "1")
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="load-worker-") as workdir:
        child = Child(Path(workdir))
        _limit_memory(int(os.environ.get("LOAD_WORKER_EXTRA_MB", "4096")))
        out = sys.stdout
        sys.stdout = sys.stderr  # nothing but replies goes to the parent's pipe
        out.write(READY + "\n")
        out.flush()
        for line in sys.stdin:
            out.write(json.dumps(child.load(json.loads(line))) + "\n")
            out.flush()


# -- parent ---------------------------------------------------------------------------------------------------

class LoadWorker:
    """The parent's side: starts the child on first use, sends it files, detects crashes and hangs and
    restarts it after either."""

    def __init__(self, timeout_s: float = 30.0, start_timeout_s: float = 300.0, extra_memory_mb: int = 4096):
        self.timeout_s, self.start_timeout_s, self.extra_memory_mb = timeout_s, start_timeout_s, extra_memory_mb
        self.proc: subprocess.Popen | None = None
        self._stderr = None
        self._buffer = b""
        self.restarts = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _start(self) -> None:
        env = dict(os.environ, OMP_NUM_THREADS="1", LOAD_WORKER_EXTRA_MB=str(self.extra_memory_mb))
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.checkpoint.load_worker"], cwd=REPO, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr)
        self._buffer = b""
        line = self._read_line(self.start_timeout_s)
        if line != READY:
            raise RuntimeError(f"load worker did not start ({line!r}): {self._stderr_tail()}")

    def _read_line(self, timeout_s: float) -> str | None:
        """One line from the child, or None on timeout or end of file."""
        deadline = time.monotonic() + timeout_s
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    def _stderr_tail(self, limit: int = 4000) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-limit:]

    def _stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self.proc.stdin.close()
            self.proc.stdout.close()
            self._stderr.close()
            self.proc = None

    def load(self, path, reader: str = "checkpoint", key: str | None = None) -> dict:
        """Have the child load ``path``; the child's reply, or ``{"outcome": "crash" | "hang", ...}``."""
        if self.proc is None:
            self._start()
        try:
            self.proc.stdin.write((json.dumps({"path": str(path), "reader": reader, "key": key}) + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass  # the child is gone: reported as a crash below
        line = self._read_line(self.timeout_s)
        if line is not None:
            return json.loads(line)
        if self.proc.poll() is None:
            reply = {"outcome": "hang", "timeout_s": self.timeout_s}
        else:
            rc = self.proc.returncode
            reply = {"outcome": "crash", "returncode": rc,
                     "signal": signal.Signals(-rc).name if rc < 0 else None, "stderr": self._stderr_tail()}
        self.restart()
        return reply

    def restart(self) -> None:
        """Stop the child; the next :meth:`load` starts a fresh one."""
        self._stop()
        self.restarts += 1

    def close(self) -> None:
        self._stop()


if __name__ == "__main__":
    main()
