"""Build script.  The package is pure Python; the optional CUDA C++ extension is built on first use."""
from setuptools import setup

setup()
