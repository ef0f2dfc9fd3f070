"""The fuzz harness, bounded for CI: one minute of mutants of every format (a long run is
``python -m tests.checkpoint.fuzz --cases N``; docs/checkpoint-formats.md has the numbers of one)."""
import pytest

from tests.checkpoint import fuzz
from tests.checkpoint.seeds import READERS

CI_SECONDS = 60


def test_cases_are_reproducible(seed_files):
    seeds = [fuzz.Seed(name, seed_files[name].read_bytes()) for name in READERS]
    pool = fuzz._hostile_snippets()
    first = [fuzz.make_case(seeds, 7, i, pool) for i in range(40)]
    again = [fuzz.make_case(seeds, 7, i, pool) for i in range(40)]
    assert [(s.name, d, k) for s, d, k in first] == [(s.name, d, k) for s, d, k in again]
    assert {s.name for s, _, _ in first} == set(READERS)  # every format is mutated
    assert all(d != s.data for s, d, _ in first[:10])


@pytest.mark.slow
def test_every_mutant_loads_or_is_refused():
    """Every case loads or raises CheckpointError from the loader's own checks: no crash, hang, other
    exception, safety-net refusal, changed process state or memory growth."""
    result = fuzz.run(seed=0, seconds=CI_SECONDS, progress=False)
    print(result)
    assert all(result[k] == 0 for k in fuzz.FINDINGS), result
    assert result["cases"] >= 50 and result["loaded"] > 0 and result["refused"] > 0, result
