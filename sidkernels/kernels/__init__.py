"""Triton kernels and their launchers (no autograd, no validation: see :mod:`sidkernels.ops`)."""
