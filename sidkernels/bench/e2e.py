"""End-to-end suite: SiD iterations per second of the trainer, official recipe vs ours, lever by lever.

A *row* is a set of speed levers applied to :class:`sidkernels.distill.SiDTrainer` on a preset with a
random-init teacher (``teacher="random"``) and the preset's official batch and micro-batch:

=================  ==============================================================================
lever              off (official recipe, docs/sid.md §2.5)          on
=================  ==============================================================================
``bf16``           fp32, no autocast                          bf16 autocast (``precision="bf16"``)
``tf32``           TF32 off for fp32 matmuls/convs            TF32 on (``tf32=True``)
``compile``        eager                                      ``torch.compile`` of both objectives
``fused_ops``      plain PyTorch references                   sidkernels fused ops (``fused=True``)
``sdpa``           fp32-softmax reference attention           ``scaled_dot_product_attention``
``channels_last``  NCHW                                       channels_last (``channels_last=True``)
``fused_adam``     ``Adam(foreach=True)`` (torch's default)   ``Adam(fused=True)``
=================  ==============================================================================

``official`` has every lever off, ``ours`` every lever on; ``official+X`` turns one lever on, ``ours-X``
turns one off, so the table shows what each lever buys alone and in company.  SDPA and the Adam
implementation have no config field: they are set on the constructed trainer (``set_attention_impl`` on
all four networks; the two optimisers rebuilt with the same hyper-parameters before the first step).

Measurement: ``warmup`` iterations (compilation, cuDNN autotuning, allocator growth), then ``iters``
iterations each timed alone (device synchronised before and after, ``time.perf_counter``); quantiles over
those iterations.  Images/s counts generator-update images (the global batch per iteration, docs/sid.md §2.1).
Peak memory: ``torch.cuda.max_memory_allocated`` over the timed iterations.  Model FLOPs per iteration:
``torch.utils.flop_counter.FlopCounterMode`` over one eager fp32 iteration of the official recipe at one
micro-batch, times the accumulation rounds (FLOPs are linear in the batch); the same count serves every
row, so MFU compares rows on the same work.  MFU = model FLOPs / iteration time / the bf16 dense matmul
peak measured in the same run (best of a few square ``torch.matmul`` sizes), for every row including the
fp32 ones.
"""
from __future__ import annotations

import contextlib
import dataclasses
import gc
import tempfile
import time
import traceback
from typing import Callable

import torch

from sidkernels.bench.env import preserved_torch_flags
from sidkernels.bench.results import ResultsCSV, shape_str
from sidkernels.bench.timing import Quantiles, synchronize, time_call

LEVERS = ("bf16", "tf32", "compile", "fused_ops", "sdpa", "channels_last", "fused_adam")
PRESETS = ("cifar10-uncond", "ffhq64")       # CIFAR-10 and the 64x64 preset of the issue
QUICK_PRESET = "mixture"
DTYPE_NAMES = {torch.bfloat16: "bf16", torch.float32: "fp32", torch.float16: "fp16"}
ROW_SETS = {
    "default": ["official", *(f"official+{lever}" for lever in LEVERS), "ours"],
    "ablation": ["ours", *(f"ours-{lever}" for lever in LEVERS)],
    "quick": ["official", "ours"],
}
ROW_SETS["all"] = ROW_SETS["default"] + ROW_SETS["ablation"][1:]
# Levers that are not applied in CPU smoke runs, and why.
CPU_DROPPED = {"compile": "Inductor compilation of a whole SiD iteration takes minutes on a CPU; "
                          "the compile lever is measured on GPU runs only"}


def parse_row(name: str) -> frozenset[str]:
    """Levers of a row name: ``official``, ``ours``, ``official+a+b``, ``ours-a-b``."""
    if name == "official" or name == "ours":
        return frozenset() if name == "official" else frozenset(LEVERS)
    for base, sign in (("official", "+"), ("ours", "-")):
        if name.startswith(base + sign):
            parts = name[len(base) + 1:].split(sign)
            unknown = set(parts) - set(LEVERS)
            if unknown:
                raise ValueError(f"unknown lever(s) {sorted(unknown)} in row {name!r}; levers: {LEVERS}")
            return frozenset(parts) if sign == "+" else frozenset(LEVERS) - set(parts)
    raise ValueError(f"row {name!r}: expected official, ours, official+LEVER[+...] or ours-LEVER[-...]")


def expand_rows(spec: str) -> list[str]:
    """Comma-separated row names and row-set names (:data:`ROW_SETS`) to a list of row names."""
    rows: list[str] = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        for name in ROW_SETS.get(item, [item]):
            parse_row(name)
            if name not in rows:
                rows.append(name)
    return rows


# ------------------------------------------------------------------ building a trainer for one row
def build_trainer(preset: str, levers: frozenset[str], device: torch.device, *, batch: int | None = None,
                  batch_gpu: int | None = None, out: str | None = None):
    """A :class:`SiDTrainer` on ``preset`` (random teacher, no evaluation) with exactly ``levers`` on."""
    from sidkernels.distill import SiDTrainer, preset_config
    from sidkernels.networks import set_attention_impl

    cfg = preset_config(preset, teacher="random", batch=batch, batch_gpu=batch_gpu, device=str(device),
                        precision="bf16" if "bf16" in levers else "fp32", tf32="tf32" in levers,
                        compile="compile" in levers, fused="fused_ops" in levers,
                        channels_last="channels_last" in levers, teacher_eval_samples=0, eval_samples=0,
                        out=out or tempfile.mkdtemp(prefix="sidkernels-bench-e2e-"))
    trainer = SiDTrainer(cfg, progress=False, log=lambda *a, **k: None)
    impl = "sdpa" if "sdpa" in levers else "reference"
    for net in (trainer.teacher, trainer.G, trainer.fake, trainer.G_ema):
        set_attention_impl(net, impl)
    trainer.opt_G = _adam_like(trainer.opt_G, trainer.G, fused="fused_adam" in levers)
    trainer.opt_fake = _adam_like(trainer.opt_fake, trainer.fake, fused="fused_adam" in levers)
    return trainer


def _adam_like(opt: torch.optim.Adam, net: torch.nn.Module, *, fused: bool) -> torch.optim.Adam:
    """A fresh Adam with ``opt``'s hyper-parameters, fused or foreach (valid before the first step only)."""
    if opt.state:
        raise RuntimeError("the optimiser has state already; rebuild it before the first step")
    d = opt.defaults
    impl = dict(fused=True) if fused else dict(foreach=True)
    return torch.optim.Adam(net.parameters(), lr=d["lr"], betas=d["betas"], eps=d["eps"], **impl)


def _release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# ------------------------------------------------------------------ measurements
def batch_plan(preset: str, batch: int | None = None, batch_gpu: int | None = None) -> tuple[int, int, int]:
    """(global batch, micro-batch, accumulation rounds) of ``preset`` on one process."""
    from sidkernels.distill import preset_config

    cfg = preset_config(preset, teacher="random", batch=batch, batch_gpu=batch_gpu)
    micro = cfg.batch_gpu or cfg.batch
    return cfg.batch, micro, cfg.batch // micro


def image_shape(preset: str) -> tuple[int, int, int]:
    """(channels, height, width) of ``preset``'s images."""
    if preset == "mixture":
        from sidkernels.distill.mixture_teacher import MIXTURE_NET as kw
    else:
        from sidkernels.networks.presets import preset_kwargs
        kw = preset_kwargs(preset)
    return kw["img_channels"], kw["img_resolution"], kw["img_resolution"]


def count_model_flops(preset: str, device: torch.device, *, batch: int | None = None,
                      batch_gpu: int | None = None) -> int:
    """Model FLOPs of one SiD iteration of ``preset`` (see the module docstring)."""
    from torch.utils.flop_counter import FlopCounterMode

    _, micro, rounds = batch_plan(preset, batch, batch_gpu)
    trainer = build_trainer(preset, frozenset(), device, batch=micro, batch_gpu=micro)
    with FlopCounterMode(display=False) as counter:
        trainer.step()
    synchronize(device)
    del trainer
    _release(device)
    return counter.get_total_flops() * rounds


def matmul_peak(device: torch.device, out: ResultsCSV | None, sizes=(4096, 8192, 16384),
                dtype=torch.bfloat16, **timing) -> float:
    """Best measured dense matmul TFLOP/s over square ``sizes`` (rows written to ``out``)."""
    def time_matmul(n: int) -> Quantiles:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        return time_call(lambda: torch.matmul(a, b), device, **timing)

    best = 0.0
    for n in sizes:
        t = time_matmul(n)
        tflops = t.inverse(2 * n ** 3 * 1e-6)  # FLOP per us = 1e-6 TFLOP/s
        best = max(best, tflops.p50)
        if out is not None:
            case = dict(suite="e2e", op="matmul", provider="torch", mode="forward", shape_name="peak",
                        shape=f"{n}x{n}x{n}", dtype=DTYPE_NAMES.get(dtype, str(dtype)))
            out.add(**case, metric="time_us", value=t)
            out.add(**case, metric="tflops", value=tflops)
    _release(device)
    return best


def time_iterations(step: Callable[[], object], device: torch.device, warmup: int, iters: int) -> Quantiles:
    """Milliseconds per call of ``step`` over ``iters`` timed calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        step()
    synchronize(device)
    times = []
    for _ in range(iters):
        synchronize(device)
        t0 = time.perf_counter()
        step()
        synchronize(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return Quantiles.of(times)


@dataclasses.dataclass
class E2ERecord:
    """One row's result (also written to the CSV)."""
    preset: str
    row: str
    levers: tuple[str, ...]
    dropped: tuple[str, ...]
    batch: int
    batch_gpu: int
    iteration_ms: Quantiles
    images_per_s: Quantiles
    peak_mem_mib: float | None
    model_flops: int
    matmul_peak_tflops: float
    mfu_pct: Quantiles


@dataclasses.dataclass
class E2ESuite:
    """Runs the end-to-end rows of each preset into a :class:`ResultsCSV`."""
    out: ResultsCSV
    device: torch.device
    presets: tuple = PRESETS
    rows: tuple = tuple(ROW_SETS["default"])
    warmup: int = 2
    iters: int = 5
    batch: int | None = None
    batch_gpu: int | None = None
    matmul_sizes: tuple = (4096, 8192, 16384)
    timing: dict = dataclasses.field(default_factory=dict)
    log: Callable[[str], None] = print
    errors: list = dataclasses.field(default_factory=list)
    records: list = dataclasses.field(default_factory=list)

    def run(self) -> list[E2ERecord]:
        with preserved_torch_flags():  # the trainer sets TF32/cuDNN flags per row
            return self._run()

    def _run(self) -> list[E2ERecord]:
        peak = matmul_peak(self.device, self.out, self.matmul_sizes, **self.timing)
        self.log(f"  bf16 matmul peak measured: {peak:.1f} TFLOP/s")
        self.out.flush()
        for preset in self.presets:
            flops = count_model_flops(preset, self.device, batch=self.batch, batch_gpu=self.batch_gpu)
            for row in self.rows:
                self._run_row(preset, row, flops, peak)
                self.out.flush()
        return self.records

    def _run_row(self, preset: str, row: str, flops: int, peak_tflops: float) -> None:
        levers = parse_row(row)
        dropped = {k: v for k, v in CPU_DROPPED.items() if k in levers} if self.device.type != "cuda" else {}
        levers = levers - set(dropped)
        batch, micro, rounds = batch_plan(preset, self.batch, self.batch_gpu)
        case = dict(suite="e2e", op=preset, provider=row, mode="step", shape_name="batch",
                    shape=shape_str((batch, *image_shape(preset))), dtype="bf16" if "bf16" in levers else "fp32")
        try:
            ms, peak_mem = self._measure(preset, levers)
        except Exception as e:  # noqa: BLE001 - recorded, reported, and the suite goes on
            reason = f"error: {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
            self.errors.append(((preset, row), traceback.format_exc()))
            self.log(f"  FAILED {preset} {row}: {reason}")
            self.out.skip(**case, reason=reason)
            return
        images = ms.inverse(batch * 1e3)                       # images per ms -> per s
        achieved = ms.inverse(flops / 1e12 * 1e3)               # TFLOP per ms -> per s
        mfu = achieved.map(lambda x: 100 * x / peak_tflops)
        extra = dict(levers=sorted(levers), batch=batch, batch_gpu=micro, rounds=rounds, warmup=self.warmup,
                     iters=self.iters, matmul_peak_tflops=round(peak_tflops, 3))
        if dropped:
            extra["dropped_levers"] = dropped
        for metric, value in (("time_ms", ms), ("images_per_s", images), ("model_tflop", flops / 1e12),
                              ("tflops", achieved), ("mfu_pct", mfu), ("peak_mem_mib", peak_mem)):
            if value is not None:
                self.out.add(**case, metric=metric, value=value, extra=extra)
        self.records.append(E2ERecord(preset, row, tuple(sorted(levers)), tuple(sorted(dropped)), batch, micro,
                                      ms, images, peak_mem, flops, peak_tflops, mfu))
        self.log(f"  {preset:<15} {row:<24} p50 {ms.p50:9.1f} ms/iter  {images.p50:9.1f} images/s")

    def _measure(self, preset: str, levers: frozenset[str]) -> tuple[Quantiles, float | None]:
        """(iteration ms, peak MiB over the timed iterations or None) of a fresh trainer with ``levers``."""
        trainer = build_trainer(preset, levers, self.device, batch=self.batch, batch_gpu=self.batch_gpu)
        try:
            for _ in range(self.warmup):
                trainer.step()
            synchronize(self.device)
            if self.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(self.device)
            ms = time_iterations(trainer.step, self.device, 0, self.iters)
            peak = torch.cuda.max_memory_allocated(self.device) / 2 ** 20 if self.device.type == "cuda" else None
            return ms, peak
        finally:
            del trainer
            _release(self.device)
            with contextlib.suppress(Exception):
                torch._dynamo.reset()
