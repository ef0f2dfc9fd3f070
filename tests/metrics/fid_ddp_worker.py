"""Run by tests/metrics/test_monitor.py under ``torchrun --nproc_per_node=2`` (gloo): one FIDMonitor report of
the tiny generator; each rank writes the FID it got and how many seeds it generated."""
import json
import sys
from pathlib import Path

import torch.distributed as tdist

from sidkernels.metrics.detector import load_detector
from sidkernels.metrics.fid import load_statistics
from sidkernels.metrics.generator import one_step_generate
from sidkernels.metrics.monitor import FIDMonitor
from tests.metrics.standin import tiny_generator

out, detector, ref, num = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
tdist.init_process_group("gloo")
net = tiny_generator()
mu, sigma, _ = load_statistics(ref)
monitor = FIDMonitor(load_detector(detector), mu, sigma, every_kimg=1.0, num=num, out=out, batch=20,
                     log=lambda *a: None)
one_step, generated = one_step_generate(net, 2.5), []


def counting(z, labels):
    generated.append(z.shape[0])
    return one_step(z, labels)


record = monitor.report({"kimg": 1.0}, net, counting)
out.mkdir(parents=True, exist_ok=True)
(out / f"rank{tdist.get_rank()}.json").write_text(json.dumps({"fid": record["fid"], "seeds": sum(generated)}))
tdist.destroy_process_group()
