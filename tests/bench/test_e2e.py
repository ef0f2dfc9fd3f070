"""The end-to-end harness in quick mode: two SiD iterations of the mixture preset for the official-recipe
and "ours" rows (record fields, FLOPs from flop_counter), and the row/lever grammar."""
import pytest
import torch

from sidkernels.bench import e2e, env, results
from sidkernels.bench.timing import cpu_threads


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    out = results.ResultsCSV(tmp_path_factory.mktemp("e2e") / "results.csv",
                             env.RunEnv.capture(torch.device("cpu"), quick=True))
    with cpu_threads(1):
        suite = e2e.E2ESuite(out, torch.device("cpu"), presets=("mixture",), rows=("official", "ours"),
                             warmup=1, iters=1, batch=8, matmul_sizes=(64,), log=lambda *a: None)
        recs = suite.run()
    assert not suite.errors
    return recs


def test_record_fields(records):
    assert [r.row for r in records] == ["official", "ours"]
    for r in records:
        assert r.preset == "mixture" and r.batch == 8 and r.batch_gpu == 8
        assert r.images_per_s.p50 > 0 and r.iteration_ms.p50 > 0
        assert r.peak_mem_mib is None  # CPU: no CUDA allocator statistics
        assert r.model_flops > 0 and r.matmul_peak_tflops > 0 and r.mfu_pct.p50 > 0
    official, ours = records
    assert official.levers == () and official.dropped == ()
    assert official.model_flops == ours.model_flops  # one count serves every row
    assert set(ours.levers) == set(e2e.LEVERS) - {"compile"} and ours.dropped == ("compile",)


def test_official_row_is_the_official_recipe():
    with cpu_threads(1):
        trainer = e2e.build_trainer("mixture", e2e.parse_row("official"), torch.device("cpu"), batch=4)
    cfg = trainer.cfg
    assert (cfg.precision, cfg.tf32, cfg.compile, cfg.fused, cfg.channels_last) == ("fp32", False, False, False,
                                                                                     False)
    for opt in (trainer.opt_G, trainer.opt_fake):
        assert opt.defaults["foreach"] and not opt.defaults["fused"]
    from sidkernels.networks import UNetBlock
    blocks = [m for net in (trainer.teacher, trainer.G, trainer.fake) for m in net.modules()
              if isinstance(m, UNetBlock)]
    assert all(b.attention_impl == "reference" for b in blocks)


def test_row_grammar():
    assert e2e.parse_row("official") == frozenset()
    assert e2e.parse_row("ours") == frozenset(e2e.LEVERS)
    assert e2e.parse_row("official+bf16+sdpa") == {"bf16", "sdpa"}
    assert e2e.parse_row("ours-compile") == frozenset(e2e.LEVERS) - {"compile"}
    with pytest.raises(ValueError, match="unknown lever"):
        e2e.parse_row("official+warp")
    with pytest.raises(ValueError):
        e2e.parse_row("fast")
    rows = e2e.expand_rows("default")
    assert rows[0] == "official" and rows[-1] == "ours" and len(rows) == len(e2e.LEVERS) + 2
    assert e2e.expand_rows("ours,ablation") == e2e.ROW_SETS["ablation"]
