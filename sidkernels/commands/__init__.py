"""Subcommands of the ``sidkernels`` CLI (see :mod:`sidkernels.cli`)."""
