"""SiD-LSG: distil a latent text-to-image teacher (a diffusers UNet) into a one-step generator.

Per iteration (the objectives are in :mod:`sidkernels.latent.lsg_losses`):

    fake step:  R accumulation rounds of L_psi (G in eval, no grad; prompt dropout when the fake is guided)
    G step:     R rounds of L_G (teacher and fake score frozen, gradients through their inputs)
    both:       nan_to_num on the gradients, Adam/AdamW, then the gradients are freed (set to None)
    then:       the generator EMA (on the device, on the CPU, or off)

The construction has three stages, each a method that can be replaced: the teacher provider
(:func:`sidkernels.latent.teacher.load_teacher`), the networks and conditioning built from it, and the
training state (:class:`sidkernels.latent.training_state.LSGState`); :meth:`SiDLSGTrainer.run` is the loop.
Memory levers: bf16 autocast with the frozen teacher (and text encoder) stored in bf16, gradient
checkpointing, fused Adam, the EMA in host memory, ``batch_gpu`` accumulation, and FSDP2 sharding under
torchrun (``fsdp``; :mod:`sidkernels.latent.fsdp`).  ``sidkernels.latent.memory`` predicts the peak.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

import sidkernels as sk
from sidkernels.distill import dist, state
from sidkernels.distill.config import split_batch
from sidkernels.distill.ema import ema_beta
from sidkernels.distill.report import append_jsonl, plot_metrics, read_jsonl
from sidkernels.distill.ticks import run_ticks
from sidkernels.images import save_grid
from sidkernels.latent.config import LatentConfig
from sidkernels.latent.data import draw_indices, load_prompts
from sidkernels.latent.denoiser import LatentDenoiser
from sidkernels.latent.lsg_losses import Draw, fake_score_loss_on_generator, generate, generator_loss
from sidkernels.latent.teacher import LatentTeacher, load_teacher
from sidkernels.latent.text import EncoderConditioning, FileConditioning, drop_prompts
from sidkernels.latent.training_state import LSGState, make_ema

SNAPSHOT_META = "sid_lsg.json"


class SiDLSGTrainer:
    """Distil ``config.teacher`` with SiD-LSG.  ``run()`` trains to ``config.kimg``."""

    method = "SiD-LSG"  # the progress bar's label

    def __init__(self, config: LatentConfig, *, progress: bool = True, log=print,
                 teacher: LatentTeacher | None = None):
        self.cfg = cfg = config
        self.device = dist.rank_device(cfg.device)
        self.rank, self.world = dist.init_from_env(self.device)
        cfg.validate(self.world)
        self.progress = progress and self.rank == 0
        self.log = log if self.rank == 0 else (lambda *a, **k: None)
        self.out = Path(cfg.out)
        self.batch_rank, self.micro, self.rounds = split_batch(cfg.batch, cfg.batch_gpu, self.world)
        precision = cfg.precision if cfg.precision != "auto" else ("bf16" if self.device.type == "cuda" else "fp32")
        self.autocast_dtype = torch.bfloat16 if precision == "bf16" else None
        self.frozen_dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        self.net_dtype = self.autocast_dtype or torch.float32
        if cfg.resume is None:
            torch.manual_seed(cfg.seed * self.world + self.rank)

        prompts = load_prompts(cfg.prompts) if cfg.prompts is not None else None   # a bad file fails before any load
        source = teacher or self.provide_teacher()
        self.teacher, G, fake = self.build_networks(source)
        cfg.check_timesteps(self.teacher.schedule.num_timesteps)
        self.conditioning = self.build_conditioning(source, prompts)
        self.vae = source.vae.to(self.device).eval().requires_grad_(False) if source.vae is not None else None
        self.vae_scale = source.vae_scaling_factor if source.vae is not None else None
        self.teacher_source = source.source
        G_ema = make_ema(G, cfg)
        if cfg.fsdp:
            from sidkernels.latent.fsdp import shard_denoiser
            for net in (G, fake, G_ema) + ((self.teacher,) if cfg.shard_teacher else ()):
                if net is not None:
                    shard_denoiser(net)
        self.state = self.build_state(G, fake, G_ema)
        self.predicted_peak = self.predict_peak(source) if self.device.type == "cuda" and not cfg.fsdp else None
        if cfg.resume:
            self._resume(cfg.resume)

    # ------------------------------------------------------------------ construction stages
    def provide_teacher(self) -> LatentTeacher:
        """Stage 1: the teacher's models from a folder, a hub id or ``tiny``."""
        return load_teacher(self.cfg.teacher, text=self.cfg.embeddings is None, seed=self.cfg.seed,
                            preset=self.cfg.preset)

    def build_networks(self, source: LatentTeacher) -> tuple[LatentDenoiser, LatentDenoiser, LatentDenoiser]:
        """Stage 2: the frozen teacher (its storage dtype) and G, fake score as fp32 copies of its UNet."""
        unet = source.unet if next(source.unet.parameters()).dtype == torch.float32 else source.unet.float()
        G = LatentDenoiser(unet, source.scheduler_config).to(self.device)
        fake = copy.deepcopy(G)
        teacher = copy.deepcopy(G).to(self.frozen_dtype).eval().requires_grad_(False)
        G.eval().requires_grad_(False)
        fake.eval().requires_grad_(False)
        mode = self.cfg.grad_checkpointing
        for net in ((G, fake) if mode == "trained" else (G, fake, teacher) if mode == "all" else ()):
            net.unet.enable_gradient_checkpointing()
        dist.broadcast_parameters(G)
        dist.broadcast_parameters(fake)
        return teacher, G, fake

    def build_conditioning(self, source: LatentTeacher, prompts: list[str] | None):
        """Stage 2b: text embeddings of the prompts (the teacher's text encoder) or a precomputed file."""
        if prompts is None:
            cond = FileConditioning(self.cfg.embeddings, device=self.device, dtype=torch.float32)
        else:
            cond = EncoderConditioning(prompts, source.text_encoder, source.tokenizer, device=self.device,
                                       dtype=self.frozen_dtype)
        dim = int(self.teacher.unet.config.cross_attention_dim)
        if cond.uncond.shape[-1] != dim:
            raise ValueError(f"the text embeddings have width {cond.uncond.shape[-1]} but the teacher UNet's "
                             f"cross_attention_dim is {dim}: embeddings and teacher do not belong together")
        return cond

    def build_state(self, G: LatentDenoiser, fake: LatentDenoiser, G_ema: LatentDenoiser | None) -> LSGState:
        """Stage 3: optimisers, EMA and counters (after any sharding: the optimisers hold the shards)."""
        return LSGState(G, fake, G_ema, self.cfg, self.device, rank=self.rank)

    def predict_peak(self, source: LatentTeacher) -> int:
        """The memory model's peak for this run (bytes): the networks rebuilt on the meta device from the
        teacher's configs, the text conditioning and the VAE as they sit on the device."""
        from sidkernels.latent import memory
        cond = self.conditioning
        text = (memory.param_bytes(cond.encoder) if isinstance(cond, EncoderConditioning)
                else cond.cond.numel() * cond.cond.element_size() + cond.uncond.numel() * cond.uncond.element_size())
        vae = memory.param_bytes(self.vae) if self.vae is not None else 0
        G, fake, teacher = memory.meta_networks(dict(self.teacher.unet.config), source.scheduler_config,
                                                self.frozen_dtype, self.cfg.grad_checkpointing)
        model = memory.build_memory_model(G, fake, teacher, self.cfg, text_length=int(cond.uncond.shape[0]),
                                          device_type=self.device.type, autocast_dtype=self.autocast_dtype,
                                          text_bytes=text, vae_bytes=vae)
        return model.peak(self.micro)

    # ------------------------------------------------------------------ one iteration
    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _backend(self):
        return contextlib.nullcontext() if self.cfg.fused else sk.use_backend("torch")

    def draw(self) -> Draw:
        """Latents, prompt embeddings and loss timesteps of one micro-batch."""
        c, h, w = self.teacher.latent_shape
        z = torch.randn((self.micro, c, h, w), device=self.device)
        cond = self.conditioning.embed(draw_indices(self.micro, len(self.conditioning.prompts)))
        t = torch.randint(self.cfg.tmin, self.cfg.tmax, (self.micro,), device=self.device)
        return Draw(z=z, cond=cond, t=t)

    def _update(self, net: LatentDenoiser, opt: torch.optim.Optimizer, loss_of_round) -> torch.Tensor:
        """R rounds of accumulation, gradient average over ranks, nan_to_num, one optimiser step, gradients
        freed; returns the summed loss (a device tensor, no host sync)."""
        net.requires_grad_(True)
        opt.zero_grad(set_to_none=True)
        total = torch.zeros((), device=self.device)
        for r in range(self.rounds):
            with self._sync(net, r == self.rounds - 1), self._backend(), self._autocast():
                loss = loss_of_round()
            loss.backward()
            total += loss.detach()
        net.requires_grad_(False)
        params = [p for p in net.parameters() if p.grad is not None]
        if not self.cfg.fsdp:
            _average_gradients(params)
        for p in params:
            torch.nan_to_num_(p.grad, nan=0.0, posinf=1e5, neginf=-1e5)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return total

    def _sync(self, net, last: bool):
        if not self.cfg.fsdp:
            return contextlib.nullcontext()
        from sidkernels.latent.fsdp import gradient_sync
        return gradient_sync(net, last)

    def step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One SiD-LSG iteration; returns (fake-score loss, generator loss) as device tensors."""
        cfg, st = self.cfg, self.state
        uncond = self.conditioning.uncond
        dropout = cfg.prompt_dropout if cfg.guided_fake_step else 0.0

        def fake_round():
            d = self.draw()
            d.cond = drop_prompts(d.cond, uncond, dropout)
            return fake_score_loss_on_generator(st.G, st.fake, d, uncond, init_timestep=cfg.init_timestep,
                                                kappa=cfg.cfg_train_fake, scale=cfg.ls / self.batch_rank,
                                                net_dtype=self.net_dtype)

        def generator_round():
            return generator_loss(st.G, self.teacher, st.fake, self.draw(), uncond, init_timestep=cfg.init_timestep,
                                  alpha=cfg.alpha, kappa_fake=cfg.cfg_eval_fake, kappa_real=cfg.cfg_eval_real,
                                  scale=cfg.lsg / self.batch_rank, net_dtype=self.net_dtype)

        loss_fake = self._update(st.fake, st.opt_fake, fake_round)
        loss_G = self._update(st.G, st.opt_G, generator_round)
        st.update_ema(ema_beta(st.cur_nimg, cfg.batch, cfg.ema_halflife_kimg, cfg.ema_rampup))
        st.cur_nimg += cfg.batch
        st.iteration += 1
        return loss_fake, loss_G

    # ------------------------------------------------------------------ samples, snapshots, states
    @torch.no_grad()
    def sample_latents(self, n: int, seed: int = 2) -> torch.Tensor:
        """One-step latents of the sampled generator (EMA, or G) for the first n prompts, fixed noise."""
        net = self.state.sampler
        device = next(net.parameters()).device
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn((n, *self.teacher.latent_shape), generator=gen)
        indices = torch.arange(n) % len(self.conditioning.prompts)
        cond = self.conditioning.embed(indices).to(device)
        autocast = self._autocast() if device.type == self.device.type else contextlib.nullcontext()
        with self._backend(), autocast:
            return generate(net, z.to(device), cond, self.cfg.init_timestep).float()

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] from latents through the VAE decoder (``x0 / scaling_factor``), one at a time."""
        out = [self.vae.decode(x[None].to(self.device) / self.vae_scale).sample.float().clamp(-1, 1).cpu()
               for x in latents]
        return torch.cat(out)

    def save_samples(self, path) -> Path | None:
        """The sample grid (rank 0 writes it; under FSDP every rank must call this: the forward is collective)."""
        if self.vae is None or self.cfg.sample_count < 1 or (self.rank != 0 and not self.cfg.fsdp):
            return None
        latents = self.sample_latents(self.cfg.sample_count)
        if self.rank != 0:
            return None
        images = self.decode(latents)
        return save_grid(images, path, columns=min(4, len(images)))

    def save_generator(self) -> Path | None:
        """The sampled generator's UNet as a diffusers folder ``generator-KIMG/`` (plus ``sid_lsg.json``:
        init timestep, prediction type, schedule), written to a temporary folder and renamed into place
        (rank 0; under FSDP every rank must call this: the weights are gathered)."""
        net = self.state.sampler
        if self.cfg.fsdp:
            from sidkernels.latent.fsdp import gathered_copy
            net = gathered_copy(net)
        if self.rank != 0:
            return None
        target = self.out / f"generator-{self.state.cur_nimg // 1000:06d}"
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=self.out))
        try:
            net.unet.save_pretrained(tmp / "unet")
            meta = {"init_timestep": self.cfg.init_timestep, "prediction_type": net.prediction_type,
                    "scheduler_config": net.init_kwargs["scheduler_config"], "teacher": self.teacher_source,
                    "kimg": self.state.cur_nimg / 1000}
            (tmp / SNAPSHOT_META).write_text(json.dumps(meta))
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return target

    def save(self) -> Path | None:
        """Training state (every rank's RNG states) and the generator snapshot; returns the state path (rank 0).
        Every rank calls this (the RNG states, and under FSDP the weights, are gathered)."""
        rng = state.rng_states(self.device)
        rngs = [rng]
        if self.world > 1:
            rngs = [None] * self.world
            torch.distributed.all_gather_object(rngs, rng)
        if self.rank != 0 and not self.cfg.fsdp:
            return None
        flat = {f"{key}/{r}": t for r, states in enumerate(rngs) for key, t in states.items()}
        path = self.state.save(state.state_path(self.out, self.state.iteration), rng=flat,
                               run_config=dataclasses.asdict(self.cfg), extra_counters={"world": self.world})
        self.save_generator()
        return path

    def _resume(self, where: str) -> None:
        path = state.latest_state(self.out) if where == "auto" else Path(where)
        if path is None:
            raise FileNotFoundError(f"--resume auto: no training state in {self.out}")
        if not path.is_file():
            raise FileNotFoundError(f"--resume: no such training state: {path}")
        counters, rng = self.state.load(path)
        if counters.get("world") != self.world:
            raise ValueError(f"{path} was written by {counters.get('world')} ranks; resume with the same number "
                             f"(got {self.world})")
        mine = {name.rsplit("/", 1)[0]: t for name, t in rng.items() if int(name.rsplit("/", 1)[1]) == self.rank}
        state.set_rng_states(mine, self.device)
        self.log(f"resumed from {path} at iteration {self.state.iteration} ({self.state.cur_nimg / 1000:.1f} kimg)")

    # ------------------------------------------------------------------ the loop
    def run(self, max_iterations: int | None = None) -> list[dict]:
        """Train until ``kimg`` (or ``max_iterations`` more iterations); returns this call's report records."""
        cfg, st = self.cfg, self.state
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2) + "\n")
        if st.iteration == 0:
            self.save_samples(self.out / "samples-init.png")
        return run_ticks(self, cfg, max_iterations, ("images_per_s", "loss_fake", "loss_G"))

    def report(self, record: dict) -> dict:
        """Complete a tick's ``record`` (the predicted peak beside the measured one), log it, refresh the samples."""
        if "peak_mem_gib" in record and self.predicted_peak is not None:
            record["predicted_peak_gib"] = self.predicted_peak / 2 ** 30
        if self.rank == 0:
            append_jsonl(self.out / "metrics.jsonl", record)
            plot_metrics(read_jsonl(self.out / "metrics.jsonl"), self.out / "metrics.png")
        self.save_samples(self.out / "samples-latest.png")
        return record


def _average_gradients(params: list[torch.nn.Parameter]) -> None:
    """Average ``.grad`` over ranks, one all-reduce per tensor (no flattened copy of a multi-GB gradient)."""
    world = dist.world_size()
    if world == 1:
        return
    for p in params:
        torch.distributed.all_reduce(p.grad)
        p.grad /= world


def load_generator(folder, device="cpu") -> tuple[LatentDenoiser, int]:
    """A saved one-step generator (``generator-KIMG/``) as ``(denoiser, init_timestep)``; generate images with
    :func:`sidkernels.latent.lsg_losses.generate` and the teacher's VAE."""
    from sidkernels.latent.teacher import require_diffusers
    require_diffusers()
    from diffusers import UNet2DConditionModel
    folder = Path(folder)
    meta_path = folder / SNAPSHOT_META
    if not meta_path.is_file():
        raise FileNotFoundError(f"{folder}: not a SiD-LSG generator folder (no {SNAPSHOT_META})")
    meta = json.loads(meta_path.read_text())
    unet = UNet2DConditionModel.from_pretrained(folder / "unet")
    net = LatentDenoiser(unet, meta["scheduler_config"], meta["prediction_type"]).to(device).eval()
    return net.requires_grad_(False), int(meta["init_timestep"])
