"""Network suite: forward + backward of one EDM network (default the CIFAR-10 DDPM++ EDMPrecond, 55.7M
parameters), ours vs the official recipe.

Rows (same module, same weights):

* ``official``: fp32, TF32 off, NCHW, fp32-softmax reference attention, eager;
* ``bf16+cl``: bf16 autocast, TF32 on, channels_last, SDPA attention, eager;
* ``bf16+cl+compile``: the same under ``torch.compile(fullgraph=True)``.

All rows share the layer code; they differ in precision, memory layout, attention and compilation.  cuDNN
autotuning is on for every row, as in EDM's and SiD's training scripts.

One call: ``D = net(x, sigma, None, augment_labels)`` in train mode (dropout on), loss ``mean((D - y)^2)``,
backward into the parameters and the input (what the SiD fake-score and generator steps need).  Timed
with :func:`sidkernels.bench.timing.time_call` (CUDA: ``do_bench``, L2 flushed, gradients reset between
calls): ``time_ms`` quantiles, ``images_per_s`` from them, ``peak_mem_mib`` of one call.
"""
from __future__ import annotations

import contextlib
import dataclasses
import gc
import traceback
from typing import Callable

import torch

from sidkernels.bench.env import preserved_torch_flags
from sidkernels.bench.results import ResultsCSV, shape_str
from sidkernels.bench.timing import peak_memory_mib, synchronize, time_call

ROWS = ("official", "bf16+cl", "bf16+cl+compile")
PRESETS = ("cifar10-uncond",)
# The quick (CPU smoke) network: the same architecture family, tiny.
QUICK_OVERRIDES = dict(img_resolution=16, model_channels=32, channel_mult=[1, 2], num_blocks=1, attn_resolutions=[8])


def make_inputs(net, batch: int, device, channels_last: bool):
    r, c = net.img_resolution, net.img_channels
    x = torch.randn(batch, c, r, r, device=device)
    y = torch.randn(batch, c, r, r, device=device)
    if channels_last:
        x, y = (t.contiguous(memory_format=torch.channels_last) for t in (x, y))
    sigma = (torch.randn(batch, device=device) * 1.2 - 1.2).exp()
    augment = getattr(getattr(net, "model", None), "map_augment", None)  # EDM's augment-label embedding
    aug = torch.zeros(batch, augment.in_features, device=device) if augment is not None else None
    return x.requires_grad_(True), y, sigma, aug


def make_step(net, inputs, dtype):
    x, y, sigma, aug = inputs
    precision = torch.autocast(x.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()

    def step():
        with precision:
            d = net(x, sigma, None, aug)
        ((d - y) ** 2).mean().backward()
    return step


def configure(row: str, net):
    """Set ``net`` up for ``row``; returns (callable module, autocast dtype or None, channels_last)."""
    from sidkernels.networks import set_attention_impl

    if row not in ROWS:
        raise ValueError(f"unknown network row {row!r}; choose from {ROWS}")
    tf32 = row != "official"
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    if row == "official":
        set_attention_impl(net, "reference")
        return net.to(memory_format=torch.contiguous_format), None, False
    set_attention_impl(net, "sdpa")
    net = net.to(memory_format=torch.channels_last)
    if row.endswith("compile"):
        torch._dynamo.reset()
        return torch.compile(net, fullgraph=True), torch.bfloat16, True
    return net, torch.bfloat16, True


@dataclasses.dataclass
class NetworkSuite:
    """Runs the network rows of each preset into a :class:`ResultsCSV`."""
    out: ResultsCSV
    device: torch.device
    presets: tuple = PRESETS
    rows: tuple = ROWS
    batch: int = 128
    quick: bool = False
    timing: dict = dataclasses.field(default_factory=dict)
    log: Callable[[str], None] = print
    errors: list = dataclasses.field(default_factory=list)

    def run(self) -> None:
        with preserved_torch_flags():  # rows set TF32/cuDNN flags
            self._run()

    def _run(self) -> None:
        from sidkernels.networks import build_preset

        for preset in self.presets:
            torch.manual_seed(0)
            base = build_preset(preset, **(QUICK_OVERRIDES if self.quick else {})).to(self.device).train()
            shape = shape_str((self.batch, base.img_channels, base.img_resolution, base.img_resolution))
            for row in self.rows:
                case = dict(suite="network", op=preset, provider=row, mode="full", shape_name="batch", shape=shape,
                            dtype="fp32" if row == "official" else "bf16")
                if row.endswith("compile") and self.device.type != "cuda":
                    self.out.skip(**case, reason="torch.compile of the network is measured on GPU runs only "
                                                 "(Inductor compilation on a CPU takes minutes)")
                    continue
                try:
                    self._measure(base, row, case)
                except Exception as e:  # noqa: BLE001 - recorded, reported, and the suite goes on
                    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
                    reason = f"error: {type(e).__name__}: {first}"
                    self.errors.append((case, traceback.format_exc()))
                    self.log(f"  FAILED {preset} {row}: {reason}")
                    self.out.skip(**case, reason=reason)
                self.out.flush()
            del base
            gc.collect()
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    def _measure(self, base, row: str, case: dict) -> None:
        net, dtype, channels_last = configure(row, base)
        inputs = make_inputs(base, self.batch, self.device, channels_last)
        step = make_step(net, inputs, dtype)
        params = [*base.parameters(), inputs[0]]
        step()  # warm-up: compilation, cuDNN autotuning
        synchronize(self.device)
        t_ms = time_call(step, self.device, grad_to_none=params, **self.timing).map(lambda us: us / 1e3)
        peak = peak_memory_mib(step, self.device, grad_to_none=params)
        extra = dict(batch=self.batch, quick_config=self.quick)
        self.out.add(**case, metric="time_ms", value=t_ms, extra=extra)
        self.out.add(**case, metric="images_per_s", value=t_ms.inverse(self.batch * 1e3), extra=extra)
        if peak is not None:
            self.out.add(**case, metric="peak_mem_mib", value=peak, extra=extra)
        for p in params:
            p.grad = None
        self.log(f"  {case['op']:<15} {row:<16} p50 {t_ms.p50:9.2f} ms  {self.batch / t_ms.p50 * 1e3:9.1f} images/s")
