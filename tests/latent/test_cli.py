"""``sidkernels distill --preset sd15``: routing, the dry-run memory table, embeddings, a short run, refusals."""
import dataclasses
import subprocess
import sys

import pytest

from sidkernels.cli import build_parser, main
from sidkernels.commands import distill
from sidkernels.distill.config import DistillConfig
from sidkernels.latent.text import load_embeddings


def test_dry_run_prints_the_memory_table(tiny_pipeline, capsys):
    assert main(["distill", "--preset", "sd15", "--dry-run", "--teacher", str(tiny_pipeline), "--batch-gpu", "3",
                 "--grad-checkpointing", "all", "--gpu-gib", "1"]) == 0
    out = capsys.readouterr().out
    assert f"memory model: {tiny_pipeline}" in out and "gradient checkpointing all" in out
    assert "resident (GiB): teacher" in out and "Adam (G)" in out
    rows = [line for line in out.splitlines() if line.strip()[:2].strip().isdigit() and "GiB |" in line]
    assert [int(r.split("|")[0]) for r in rows] == [1, 2, 3, 4, 8, 16, 32]
    assert "largest --batch-gpu predicted to fit 1 GiB:" in out


def test_write_embeddings_then_train_from_them(tiny_pipeline, prompt_file, tmp_path, capsys):
    emb = tmp_path / "emb.safetensors"
    assert main(["distill", "--preset", "sd15", "--teacher", str(tiny_pipeline), "--prompts", prompt_file,
                 "--write-embeddings", str(emb), "--device", "cpu"]) == 0
    prompts, cond, uncond = load_embeddings(emb)
    assert prompts == ["a cat on a sofa", "a red car, 4k", "mountains at dawn", "an old man reading"]
    assert tuple(cond.shape) == (4, 8, 16) and tuple(uncond.shape) == (8, 16)
    run = tmp_path / "run"
    assert main(["distill", "--preset", "sd15", "--teacher", str(tiny_pipeline), "--embeddings", str(emb),
                 "--out", str(run), "--kimg", "0.004", "--batch", "2", "--batch-gpu", "1", "--tick", "0.004",
                 "--device", "cpu", "--no-progress", "--lr", "1e-4", "--glr", "1e-4", "--sample-count", "2",
                 "--tmax", "900", "--ema", "off"]) == 0
    out = capsys.readouterr().out
    assert "done: kimg=0.004" in out and (run / "generator-000000" / "unet").is_dir()
    assert (run / "samples-latest.png").is_file()


@pytest.mark.parametrize("argv, message", [
    (["--preset", "cifar10-uncond", "--prompts", "p.txt"], "--prompts do not apply to --method sid"),
    (["--preset", "sd15", "--method", "sign"], "--method sign does not apply"),
    (["--preset", "sd15", "--augment", "0.1"], "--augment do not apply to --preset sd15"),
    (["--preset", "sd15", "--tmax", "900.5"], "--tmax must be a whole timestep"),
])
def test_flags_that_do_not_apply_are_refused(argv, message):
    with pytest.raises(SystemExit, match=message):
        main(["distill", *argv])


def test_nothing_else_needs_diffusers():
    """With diffusers and transformers unimportable the package, its CLI parser and every latent module import,
    and a latent run fails with the install hint."""
    code = ("import sys; sys.modules['diffusers'] = None; sys.modules['transformers'] = None\n"
            "import sidkernels, sidkernels.cli, sidkernels.distill\n"
            "import sidkernels.latent.trainer, sidkernels.latent.memory, sidkernels.latent.cli\n"
            "sidkernels.cli.build_parser()\n"
            "try:\n"
            "    sidkernels.cli.main(['distill', '--preset', 'sd15', '--dry-run'])\n"
            "except ImportError as e:\n"
            "    print('refused:', e)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "refused: latent teachers need diffusers and transformers: pip install 'sidkernels[latent]'" in done.stdout


def test_the_latent_flags_leave_the_other_methods_alone():
    """Every latent flag defaults to None, so a plain SiD/SiDA/SIGN command line passes the stray-flag check."""
    args = build_parser().parse_args(["distill"])
    fields = {f.name for f in dataclasses.fields(DistillConfig)}
    given = {k for k, v in vars(args).items() if v is not None and k not in ("preset", "method", "no_progress")}
    assert given - fields <= {"_run", "command"}
    assert distill.latent_cli.LATENT_PRESET_NAMES == ["sd15"]
