"""Fixtures of the checkpoint tests: the seed files of every format and a load worker (a child process that
loads files and checks its own process afterwards)."""
import pytest

from tests.checkpoint.load_worker import LoadWorker
from tests.checkpoint.seeds import write_seeds


@pytest.fixture(scope="session")
def seed_files(tmp_path_factory):
    return write_seeds(tmp_path_factory.mktemp("seeds"))


@pytest.fixture(scope="session")
def load_worker():
    with LoadWorker(timeout_s=60.0) as worker:
        yield worker
