"""Forward + backward of the CIFAR-10 DDPM++ network (EDMPrecond, 55.7M parameters), ours vs the official
recipe.

Rows (same module, same weights):

* ``official``: fp32, TF32 off, NCHW, unfused fp32-softmax attention (``attention_impl="reference"``), eager;
* ``bf16+cl``: bf16 autocast, channels_last, SDPA attention, eager;
* ``bf16+cl+compile``: the same under ``torch.compile(fullgraph=True)``.

All rows share the layer code (e.g. the exact average-pool / nearest-neighbour forms of the [1,1]
resampling filter); they differ in precision, memory layout, attention and compilation.  cuDNN autotuning is
on for every row, as in EDM's and SiD's training scripts.

One iteration: ``D = net(x, sigma, labels, augment_labels)`` in train mode (dropout on), loss
``mean((D - y)^2)``, backward into the parameters and the input (what the SiD fake-score and generator steps
need).  Timed with ``triton.testing.do_bench`` (CUDA events, L2 flushed; gradients reset between reps):
median and p20/p80 in ms, images/s from the median, and the peak allocated memory of one iteration.

Usage::

    python benchmarks/bench_network.py                 # GPU: batch 128, the table above
    python benchmarks/bench_network.py --quick         # tiny smoke config (CPU ok, numbers meaningless)

Without a GPU the full benchmark refuses (a GPU is needed for meaningful numbers); ``--quick`` still runs
the eager rows on the CPU as a smoke test.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time

import torch

from sidkernels.networks import build_preset, set_attention_impl

QUICK = dict(img_resolution=16, model_channels=32, channel_mult=[1, 2], num_blocks=1, attn_resolutions=[8])


def make_inputs(net, batch: int, device, channels_last: bool):
    r, c = net.img_resolution, net.img_channels
    x = torch.randn(batch, c, r, r, device=device)
    y = torch.randn(batch, c, r, r, device=device)
    if channels_last:
        x, y = (t.contiguous(memory_format=torch.channels_last) for t in (x, y))
    sigma = (torch.randn(batch, device=device) * 1.2 - 1.2).exp()
    aug = torch.zeros(batch, 9, device=device)
    return x.requires_grad_(True), y, sigma, aug


def make_step(net, inputs, dtype):
    x, y, sigma, aug = inputs
    precision = torch.autocast(x.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()

    def step():
        with precision:
            d = net(x, sigma, None, aug)
        ((d - y) ** 2).mean().backward()
    return step


def configure(provider: str, net, device):
    """Set up ``net`` for one row; returns (callable module, autocast dtype or None, channels_last)."""
    tf32 = provider != "official"
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    if provider == "official":
        set_attention_impl(net, "reference")
        return net.to(memory_format=torch.contiguous_format), None, False
    set_attention_impl(net, "sdpa")
    net = net.to(memory_format=torch.channels_last)
    if provider.endswith("compile"):
        return torch.compile(net, fullgraph=True), torch.bfloat16, True
    return net, torch.bfloat16, True


def time_cuda(step, params, warmup: int, rep: int):
    import triton.testing

    med, p20, p80 = triton.testing.do_bench(step, warmup=warmup, rep=rep, grad_to_none=params,
                                            quantiles=[0.5, 0.2, 0.8])
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    step()
    torch.cuda.synchronize()
    return med, p20, p80, torch.cuda.max_memory_allocated() / 2 ** 20


def time_cpu(step, params, warmup: int, rep: int):
    for _ in range(warmup):
        step()
    times = []
    for _ in range(rep):
        for p in params:
            p.grad = None
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1e3)
    q = statistics.quantiles(times, n=10) if len(times) > 1 else times * 9
    return statistics.median(times), q[1], q[7], float("nan")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=None, help="batch size (default 128; --quick: 4)")
    parser.add_argument("--quick", action="store_true", help="tiny smoke config; runs on the CPU")
    parser.add_argument("--providers", default="official,bf16+cl,bf16+cl+compile")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up (ms on GPU, iterations on CPU)")
    parser.add_argument("--rep", type=int, default=None, help="repetition (ms on GPU, iterations on CPU)")
    args = parser.parse_args(argv)

    cuda = torch.cuda.is_available()
    if not cuda and not args.quick:
        print("bench_network: a CUDA GPU is needed for this benchmark (CPU timings of a 55.7M-parameter U-Net "
              "say nothing about the GPU); run with --quick for a CPU smoke test.", file=sys.stderr)
        return 2
    device = torch.device("cuda" if cuda else "cpu")
    batch = args.batch or (4 if args.quick else 128)
    providers = [p for p in args.providers.split(",") if p]
    if not cuda:
        providers = [p for p in providers if not p.endswith("compile")]  # Inductor-on-CPU timings are moot
    timer = time_cuda if cuda else time_cpu
    warmup = args.warmup or (25 if cuda else 1)
    rep = args.rep or (100 if cuda else 3)

    import triton

    name = torch.cuda.get_device_name() if cuda else "CPU (smoke test, not a measurement)"
    print(f"# CIFAR-10 DDPM++ EDMPrecond fwd+bwd, batch {batch}{' (quick config)' if args.quick else ''}")
    print(f"# device: {name} | torch {torch.__version__} | triton {triton.__version__}")
    print(f"| {'provider':<17} | {'median ms':>9} | {'p20 ms':>8} | {'p80 ms':>8} | {'img/s':>8} | "
          f"{'peak MiB':>8} | {'speed-up':>8} |")
    print("|" + "|".join("-" * w for w in (19, 11, 10, 10, 10, 10, 10)) + "|")
    torch.manual_seed(0)
    base = build_preset("cifar10-uncond", **(QUICK if args.quick else {})).to(device).train()
    reference_ms = None
    for provider in providers:
        net, dtype, channels_last = configure(provider, base, device)
        inputs = make_inputs(base, batch, device, channels_last)
        step = make_step(net, inputs, dtype)
        med, p20, p80, peak = timer(step, [*base.parameters(), inputs[0]], warmup, rep)
        reference_ms = reference_ms or med
        print(f"| {provider:<17} | {med:9.2f} | {p20:8.2f} | {p80:8.2f} | {batch / med * 1e3:8.0f} | "
              f"{peak:8.0f} | {reference_ms / med:7.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
