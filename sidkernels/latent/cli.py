"""``sidkernels distill --preset sd15 ...``: SiD-LSG on a latent text-to-image teacher.

The distill command routes latent presets here (:func:`run`); this module adds the latent flags to its
parser (:func:`add_arguments`) and imports neither diffusers nor transformers until a run starts.

    sidkernels distill --preset sd15 --teacher PATH_OR_HUB_ID --prompts FILE [--batch-gpu B] ...
    sidkernels distill --preset sd15 --dry-run [--teacher FOLDER] [--grad-checkpointing all] [--ema gpu]
    sidkernels distill --preset sd15 --teacher PATH --prompts FILE --write-embeddings OUT.safetensors
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from sidkernels.latent.config import CHECKPOINTING, EMA_PLACES, OPTIMIZERS, LatentConfig, latent_config
from sidkernels.latent.presets import LATENT_PRESETS, PRESET_MODELS

LATENT_PRESET_NAMES = sorted(LATENT_PRESETS)
DRY_RUN_BATCHES = (1, 2, 4, 8, 16, 32)
DEFAULT_GPU_GIB = 80.0  # an A100/H100 80 GB
# parser destinations that steer the command rather than set a LatentConfig field
CONTROL = ("preset", "method", "no_progress", "_run", "command", "dry_run", "gpu_gib", "write_embeddings")


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(f"latent teachers, SiD-LSG (--preset {'|'.join(LATENT_PRESET_NAMES)})")
    g.add_argument("--prompts", default=None, help="training prompts: a .txt file (one per line) or a captions "
                   "dataset (.json COCO captions, .jsonl, .csv/.tsv with a caption column)")
    g.add_argument("--embeddings", default=None, help="precomputed text embeddings (--write-embeddings) instead "
                   "of a text encoder")
    g.add_argument("--write-embeddings", default=None, dest="write_embeddings", metavar="OUT",
                   help="encode --prompts with the teacher's text encoder into OUT (safetensors) and exit")
    g.add_argument("--cfg-train-fake", type=float, default=None, dest="cfg_train_fake",
                   help="kappa1: guidance of the fake score in its own loss (sd15: 2)")
    g.add_argument("--cfg-eval-fake", type=float, default=None, dest="cfg_eval_fake",
                   help="kappa2 = kappa3: guidance of the fake score in the generator loss (sd15: 2)")
    g.add_argument("--cfg-eval-real", type=float, default=None, dest="cfg_eval_real",
                   help="kappa4: guidance of the teacher in the generator loss (sd15: 2)")
    g.add_argument("--init-timestep", type=int, default=None, dest="init_timestep",
                   help="the generator is the UNet at this timestep on pure noise (sd15: 625)")
    g.add_argument("--tmin", type=int, default=None, help="loss timesteps t ~ U{tmin..tmax-1} (sd15: 20)")
    g.add_argument("--tmax", type=float, default=None, help="largest loss timestep (exclusive; sd15: 980); "
                   "SiD: the sigma truncation (800)")
    g.add_argument("--ema", choices=EMA_PLACES, default=None, help="generator EMA on the GPU, in host memory "
                   "(default: costs no GPU memory) or off")
    g.add_argument("--grad-checkpointing", choices=CHECKPOINTING, default=None, dest="grad_checkpointing",
                   help="gradient checkpointing of G and the fake score (trained) or of all three UNets (all)")
    g.add_argument("--optimizer", choices=OPTIMIZERS, default=None)
    g.add_argument("--prompt-dropout", type=float, default=None, dest="prompt_dropout")
    g.add_argument("--sample-count", type=int, default=None, dest="sample_count", help="images per sample grid")
    g.add_argument("--fsdp", action="store_true", default=None, help="shard the UNets over torchrun ranks (FSDP2)")
    g.add_argument("--dry-run", action="store_true", default=None, dest="dry_run",
                   help="print the predicted peak GPU memory per --batch-gpu and exit (no weights are loaded)")
    g.add_argument("--gpu-gib", type=float, default=None, dest="gpu_gib",
                   help=f"--dry-run: GPU memory to fit, GiB (default {DEFAULT_GPU_GIB:g})")


def _config(args) -> LatentConfig:
    if args.method != "sid":
        raise SystemExit(f"error: --preset {args.preset} runs SiD-LSG; --method {args.method} does not apply")
    fields = {f.name for f in dataclasses.fields(LatentConfig)}
    given = {k: v for k, v in vars(args).items() if v is not None and k not in CONTROL}
    stray = sorted(set(given) - fields)
    if stray:
        raise SystemExit(f"error: {', '.join('--' + s.replace('_', '-') for s in stray)} do not apply to "
                         f"--preset {args.preset}")
    for name in ("tmin", "tmax"):
        if name in given:
            if float(given[name]) != int(given[name]):
                raise SystemExit(f"error: --{name} must be a whole timestep for --preset {args.preset}, "
                                 f"got {given[name]}")
            given[name] = int(given[name])
    return latent_config(args.preset, **given)


def _folder_configs(folder: Path) -> dict:
    """Model configs of a local pipeline folder (its config.json files; no weights)."""
    def read(sub, name="config.json"):
        path = folder / sub / name
        return json.loads(path.read_text()) if path.is_file() else None
    unet, scheduler = read("unet"), read("scheduler", "scheduler_config.json")
    if unet is None or scheduler is None:
        raise SystemExit(f"error: --teacher {folder}: no unet/config.json or scheduler/scheduler_config.json")
    text = read("text_encoder")
    tokenizer = read("tokenizer", "tokenizer_config.json") or {}
    length = int(tokenizer.get("model_max_length") or (text or {}).get("max_position_embeddings", 77))
    return dict(unet=unet, scheduler=scheduler, text_encoder=text, vae=read("vae"), text_length=min(length, 77))


def dry_run(cfg: LatentConfig, gpu_gib: float, out=print) -> None:
    from sidkernels.latent.memory import GIB, predicted_model
    from sidkernels.latent.teacher import require_diffusers
    require_diffusers()
    folder = Path(cfg.teacher) if cfg.teacher else None
    models = _folder_configs(folder) if folder is not None and folder.is_dir() else PRESET_MODELS[cfg.preset]
    where = str(folder) if folder is not None and folder.is_dir() else f"the {cfg.preset} configs (embedded)"
    embeddings_bytes = None
    if cfg.embeddings:
        from safetensors import safe_open
        with safe_open(cfg.embeddings, framework="pt") as f:
            shape = f.get_slice("cond").get_shape()
        embeddings_bytes = 4 * (shape[0] + 1) * shape[1] * shape[2]
    text_config = models["text_encoder"]
    if text_config is not None:
        from transformers import CLIPTextConfig
        text_config = CLIPTextConfig.from_dict(text_config).to_dict()
    model = predicted_model(cfg, models["unet"], models["scheduler"], text_length=models["text_length"],
                            text_config=text_config, vae_config=models["vae"], embeddings_bytes=embeddings_bytes)
    batches = sorted(set(DRY_RUN_BATCHES) | ({cfg.batch_gpu} if cfg.batch_gpu else set()))
    out(f"SiD-LSG memory model: {where}; {model.notes['precision']}; gradient checkpointing "
        f"{cfg.grad_checkpointing}; EMA {cfg.ema}; guidance kappa1={cfg.cfg_train_fake:g} "
        f"kappa2=kappa3={cfg.cfg_eval_fake:g} kappa4={cfg.cfg_eval_real:g} (a scale != 1 doubles that network's "
        f"batch)")
    out(model.table(batches))
    fit = model.max_batch_gpu(int(gpu_gib * GIB))
    out(f"\nlargest --batch-gpu predicted to fit {gpu_gib:g} GiB: {fit}" if fit else
        f"\nno --batch-gpu fits {gpu_gib:g} GiB: use --grad-checkpointing all, --ema cpu, or --fsdp over ranks")
    out("prediction: exact parameter, gradient, Adam and EMA bytes; activations = the tensors autograd saves "
        "(CUDA bf16 autocast and flash attention emulated on the meta device); allocator reserve, workspaces "
        "and in-flight activation gradients come on top")


def write_embeddings(cfg: LatentConfig, out_path: str, device: str, log=print) -> None:
    import torch

    from sidkernels.latent.data import load_prompts
    from sidkernels.latent.teacher import load_text
    from sidkernels.latent.text import EncoderConditioning, save_embeddings
    if cfg.prompts is None or cfg.teacher is None:
        raise SystemExit("error: --write-embeddings needs --teacher and --prompts")
    prompts = load_prompts(cfg.prompts)
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       "cpu" if device == "auto" else device)
    encoder, tokenizer = load_text(cfg.teacher)
    cond = EncoderConditioning(prompts, encoder, tokenizer, device=dev)
    chunks = [cond.encode(prompts[i:i + 64]).cpu() for i in range(0, len(prompts), 64)]
    save_embeddings(out_path, prompts, torch.cat(chunks), cond.uncond.cpu())
    log(f"wrote {len(prompts)} prompt embeddings to {out_path}")


def run(args) -> int:
    cfg = _config(args)
    if args.dry_run:
        dry_run(cfg, DEFAULT_GPU_GIB if args.gpu_gib is None else args.gpu_gib)
        return 0
    if args.write_embeddings:
        write_embeddings(cfg, args.write_embeddings, cfg.device)
        return 0
    from sidkernels.latent.trainer import SiDLSGTrainer
    trainer = SiDLSGTrainer(cfg, progress=not args.no_progress)
    records = trainer.run()
    if records and trainer.rank == 0:
        last = records[-1]
        print("done: " + " ".join(f"{k}={last[k]:.4g}" for k in ("kimg", "images_per_s", "loss_fake", "loss_G",
                                                                  "peak_mem_gib") if k in last))
        print(f"run directory: {cfg.out}")
    return 0
