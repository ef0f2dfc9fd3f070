"""Benchmark harness behind ``sidkernels bench`` (the scripts, results and figures live in ``benchmarks/``).

One job per module:

=================  ============================================================================
``timing``         median/p20/p80 of repeated calls (CUDA: ``do_bench``; CPU smoke: ``torch.utils.benchmark``)
``byte_model``     logical bytes read + written per op and mode (the numerator of GB/s)
``kernels``        kernel suite: op x provider (eager/compile/triton/cuda) x mode x shape x dtype
``network``        network forward+backward, official recipe vs ours
``e2e``            SiD iterations with each speed lever toggled; FLOPs, MFU, bf16 matmul peak
``device``         NVML device facts (``nvidia-ml-py``)
``env``            the run's device label, versions, commit, time stamp; the checkout's results folder
``results``        the long-format results CSV (schema, upserts)
``plots``          figures drawn from the CSV
``report``         the README results block generated from the CSV
``runner``         ``sidkernels bench``: runs suites, writes facts, CSV and figures
=================  ============================================================================
"""
