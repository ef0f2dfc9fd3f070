"""SiD distillation loop (SID.md section 4): per iteration one fake-score update, then one generator
update, then the generator EMA.

    fake step:  L_psi = ls/B * sum lambda(sigma) |f_psi(y + sigma eps) - y|^2,   y = G(z) (eval, no grad)
    G step:     L_G   = lsg/B * sum SiD(f_phi(x_t), f_psi(x_t), x_g),           x_t = G(z) + sigma eps
    both:       nan_to_num on the gradients, Adam (constant lr, no clipping), accumulation over R rounds

Speed levers, each switchable: fused ops (``fused``), bf16/fp16 autocast (``precision``), ``torch.compile``
of both per-round objectives (``compile``), channels_last, fused Adam on CUDA.  Checkpoints are single
safetensors files written atomically; ``resume`` continues exactly (bitwise on CPU).
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import time
from pathlib import Path

import torch
from tqdm import tqdm

from sidkernels._backend import use_backend
from sidkernels.checkpoint import load_checkpoint, save_network
from sidkernels.distill import dist, state
from sidkernels.distill.augment import AUGMENT_DIM, augment_dim
from sidkernels.distill.config import DistillConfig
from sidkernels.distill.ema import ema_beta, update_ema
from sidkernels.distill.exact_teacher import ExactTeacher
from sidkernels.distill.lr_schedule import lr_factor
from sidkernels.distill.metrics import exact_metrics
from sidkernels.distill.mixture import DigitMixture
from sidkernels.distill.report import append_jsonl, plot_metrics, read_jsonl
from sidkernels.images import save_grid
from sidkernels.distill.sid_losses import fake_score_loss_on_generator, generate, generator_loss
from sidkernels.distill.teacher import cached_teacher, mixture_network

AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _seeded(seed: int):
    """Build something (a random teacher) on its own RNG stream, reproducibly."""
    stack = contextlib.ExitStack()
    stack.enter_context(torch.random.fork_rng(devices=[]))
    torch.manual_seed(seed)
    return stack


class SiDTrainer:
    """Distil ``config.preset``'s teacher into a one-step generator.  ``run()`` trains to ``config.kimg``."""

    method = "SiD"  # the progress bar's label

    def __init__(self, config: DistillConfig, *, progress: bool = True, log=print):
        self.cfg = config
        self.device = _device(config.device)
        self.rank, self.world = dist.init_from_env(self.device)
        config.validate(self.world)
        self.progress = progress and self.rank == 0
        self.log = log if self.rank == 0 else (lambda *a, **k: None)
        self.out = Path(config.out)
        self.batch_rank = config.batch // self.world
        self.micro = config.batch_gpu or self.batch_rank
        self.rounds = self.batch_rank // self.micro
        precision = config.precision
        if precision == "auto":
            precision = "bf16" if self.device.type == "cuda" else "fp32"  # bf16 autocast is slower on CPUs
        self.autocast_dtype = AUTOCAST[precision]
        self.net_dtype = self.autocast_dtype or torch.float32
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = config.tf32
            torch.backends.cudnn.allow_tf32 = config.tf32
            torch.backends.cudnn.benchmark = True

        self.mixture = DigitMixture.from_digits() if config.preset == "mixture" else None
        self.teacher = self._build_teacher().to(self.device).eval().requires_grad_(False)
        if config.augment > 0 and augment_dim(self.teacher) != AUGMENT_DIM:
            raise ValueError(f"augment={config.augment} needs a teacher (and so a fake-score network) with "
                             f"augment_dim {AUGMENT_DIM}; the {config.preset!r} network has augment_dim "
                             f"{augment_dim(self.teacher)}: set augment=0")
        start = self._student_start()
        self.G = copy.deepcopy(start)
        self.fake = copy.deepcopy(start)
        self.G_ema = copy.deepcopy(start)
        if config.channels_last:
            for net in (self.teacher, self.G, self.fake, self.G_ema):
                net.to(memory_format=torch.channels_last)
        dist.broadcast_parameters(self.G)
        dist.broadcast_parameters(self.fake)
        fused_adam = dict(fused=True) if self.device.type == "cuda" else dict(foreach=True)
        eps = 1e-6 if precision == "fp16" else config.adam_eps
        self.opt_fake = torch.optim.Adam(self.fake.parameters(), lr=config.lr, betas=(0.0, 0.999), eps=eps,
                                         **fused_adam)
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=config.glr, betas=(config.g_beta1, 0.999), eps=eps,
                                      **fused_adam)
        scaling = precision == "fp16"
        self.scaler_fake = torch.amp.GradScaler(self.device.type, enabled=scaling)
        self.scaler_G = torch.amp.GradScaler(self.device.type, enabled=scaling)
        self.generator_loss = generator_loss
        self.fake_loss = fake_score_loss_on_generator
        if config.compile:
            self.generator_loss = torch.compile(generator_loss, fullgraph=True)
            self.fake_loss = torch.compile(fake_score_loss_on_generator, fullgraph=True)
        self.iteration = 0
        self.cur_nimg = 0
        self.teacher_metrics = None
        self.term_sums: dict[str, torch.Tensor] = {}  # loss terms summed since the last report (see _track)
        self.term_iterations = 0
        if config.resume:
            self._resume(config.resume)
        else:
            torch.manual_seed(config.seed * self.world + self.rank)

    # ------------------------------------------------------------------ construction
    def _build_teacher(self) -> torch.nn.Module:
        cfg = self.cfg
        dropout = {} if cfg.dropout is None else {"dropout": cfg.dropout}
        if cfg.preset == "mixture":
            if cfg.teacher is None:
                return cached_teacher(self.mixture, self.device, progress=self.progress)
            if cfg.teacher == "random":
                with _seeded(cfg.seed):
                    return mixture_network(**dropout)
            if cfg.teacher == "exact":
                return ExactTeacher(self.mixture)
            return self._load_into(mixture_network(**dropout), cfg.teacher)
        from sidkernels.networks import build_preset
        with _seeded(cfg.seed):
            net = build_preset(cfg.preset, **dropout)
        return net if cfg.teacher == "random" else self._load_into(net, cfg.teacher)

    def _student_start(self) -> torch.nn.Module:
        """What G, the fake score and G_ema start from: the teacher; the cached network teacher of the mixture
        (of width ``student_channels``, default 32) when the teacher is analytic or a width is given."""
        cfg = self.cfg
        if cfg.teacher != "exact" and cfg.student_channels is None:
            return self.teacher
        overrides = None if cfg.student_channels is None else {"model_channels": cfg.student_channels}
        return cached_teacher(self.mixture, self.device, net_overrides=overrides, progress=self.progress)

    def _load_into(self, net: torch.nn.Module, path: str) -> torch.nn.Module:
        loaded = load_checkpoint(path)
        try:
            net.load_state_dict(loaded.state_dict(), strict=True)
        except RuntimeError as e:
            raise ValueError(f"teacher checkpoint {path} does not fit preset {self.cfg.preset!r} "
                             f"(wrong architecture): {str(e).splitlines()[0]} ...") from e
        return net

    # ------------------------------------------------------------------ one iteration
    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _backend(self):
        return contextlib.nullcontext() if self.cfg.fused else use_backend("torch")

    def _memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.cfg.channels_last else torch.contiguous_format

    def _draw(self):
        """Latents and (for conditional teachers) uniformly drawn one-hot labels for one micro-batch."""
        net = self.teacher
        shape = (self.micro, net.img_channels, net.img_resolution, net.img_resolution)
        z = torch.randn(shape, device=self.device).contiguous(memory_format=self._memory_format())
        labels = None
        if net.label_dim:
            classes = torch.randint(net.label_dim, (self.micro,), device=self.device)
            labels = torch.nn.functional.one_hot(classes, net.label_dim).float()
        return z, labels

    def _update(self, net, opt, scaler, loss_of_round, clip: float | None = None,
                clip_value: float | None = None) -> torch.Tensor:
        """Accumulate R rounds, average over ranks, nan_to_num, optional norm clip (``clip``) or value clip
        (``clip_value``), Adam step; returns the summed loss (no host sync)."""
        net.train().requires_grad_(True)
        opt.zero_grad(set_to_none=True)
        total = torch.zeros((), device=self.device)
        for _ in range(self.rounds):
            with self._backend(), self._autocast():
                loss = loss_of_round()
            scaler.scale(loss).backward()
            total += loss.detach()
        net.eval().requires_grad_(False)
        params = [p for p in net.parameters() if p.grad is not None]
        dist.average_gradients(params)
        scaler.unscale_(opt)
        for p in params:
            torch.nan_to_num_(p.grad, nan=0.0, posinf=1e5, neginf=-1e5)
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(params, clip)
        if clip_value is not None:
            torch.nn.utils.clip_grad_value_(params, clip_value)
        self._schedule_lr(opt)
        scaler.step(opt)
        scaler.update()
        return total

    def _schedule_lr(self, opt) -> None:
        """This step's learning rates: the initial ones (kept in the param groups, so resumes see them) times
        ``lr_factor(lr_schedule, cur_nimg / total)``; a constant schedule leaves the optimiser untouched."""
        if self.cfg.lr_schedule == "constant":
            return
        factor = lr_factor(self.cfg.lr_schedule, self.cur_nimg / (self.cfg.kimg * 1000))
        for group in opt.param_groups:
            group["lr"] = group.setdefault("initial_lr", group["lr"]) * factor

    def step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One SiD iteration; returns (fake-score loss, generator loss) as device tensors."""
        cfg = self.cfg
        scale_fake, scale_G = cfg.ls / self.batch_rank, cfg.lsg / self.batch_rank

        def fake_round():
            z, labels = self._draw()
            return self.fake_loss(self.G, self.fake, z, labels, init_sigma=cfg.init_sigma, scale=scale_fake,
                                  net_dtype=self.net_dtype, augment_p=cfg.augment)

        def generator_round():
            z, labels = self._draw()
            return self.generator_loss(self.G, self.teacher, self.fake, z, labels, init_sigma=cfg.init_sigma,
                                       alpha=cfg.alpha, tmax=cfg.tmax, scale=scale_G, net_dtype=self.net_dtype)

        for _ in range(cfg.fake_updates):
            loss_fake = self._update(self.fake, self.opt_fake, self.scaler_fake, fake_round)
        loss_G = self._update(self.G, self.opt_G, self.scaler_G, generator_round)
        self._advance()
        return loss_fake, loss_G

    def _advance(self) -> None:
        """End of an iteration: generator EMA (at the pre-update image count, as the official loop), counters."""
        cfg = self.cfg
        update_ema(self.G_ema, self.G, ema_beta(self.cur_nimg, cfg.batch, cfg.ema_halflife_kimg, cfg.ema_rampup))
        self.cur_nimg += cfg.batch
        self.iteration += 1
        self.term_iterations += 1

    def _track(self, **terms: torch.Tensor) -> None:
        """Add loss terms of this iteration to the per-report sums (device tensors, no host sync)."""
        for name, value in terms.items():
            self.term_sums[name] = self.term_sums.get(name, 0) + value.detach()

    # ------------------------------------------------------------------ evaluation, reports, checkpoints
    @torch.no_grad()
    def sample(self, n: int, seed: int = 0, net=None) -> torch.Tensor:
        """n one-step samples of G_ema from a fixed latent stream (does not touch the training RNG)."""
        net = net or self.G_ema
        gen = torch.Generator().manual_seed(seed)
        out = []
        for start in range(0, n, 500):
            m = min(500, n - start)
            z = torch.randn((m, net.img_channels, net.img_resolution, net.img_resolution), generator=gen)
            labels = None
            if net.label_dim:
                classes = torch.randint(net.label_dim, (m,), generator=gen)
                labels = torch.nn.functional.one_hot(classes, net.label_dim).float().to(self.device)
            with self._backend(), self._autocast():
                out.append(self.one_step(net, z.to(self.device), labels).float().cpu())
        return torch.cat(out)

    def one_step(self, net, z: torch.Tensor, labels) -> torch.Tensor:
        """One-step generation from unit latents z: SiD's ``G(init_sigma z; init_sigma)``."""
        return generate(net, z, labels, self.cfg.init_sigma)

    def evaluate_teacher(self) -> dict | None:
        """Exact metrics of the teacher's deterministic 35-NFE Heun samples (mixture only)."""
        n = self.cfg.teacher_eval_samples
        if self.mixture is None or n < 2:
            return None
        from sidkernels import sample_heun
        gen = torch.Generator().manual_seed(1)
        latents = torch.randn((n, 1, 8, 8), generator=gen, dtype=torch.float64).to(self.device)
        with torch.no_grad(), self._backend():
            x = sample_heun(self.teacher, latents, num_steps=18, progress=self.progress)
        return dict(exact_metrics(self.mixture, x.float()), label="teacher Heun, 35 NFE")

    def _report(self, record: dict) -> dict:
        record.update(self.diagnostics())
        if self.mixture is not None:
            record.update(exact_metrics(self.mixture, self.sample(self.cfg.eval_samples)))
        if self.rank == 0:
            append_jsonl(self.out / "metrics.jsonl", record)
            plot_metrics(read_jsonl(self.out / "metrics.jsonl"), self.out / "metrics.png", self.teacher_metrics)
            save_grid(self.sample(64, seed=2), self.out / "samples-latest.png", columns=8,
                      scale=4 if self.teacher.img_resolution <= 16 else 1)
        return record

    def diagnostics(self) -> dict:
        """Per-report fields: the mean per iteration of each tracked loss term since the last report."""
        record = {k: (v / max(self.term_iterations, 1)).item() for k, v in self.term_sums.items()}
        self.term_sums, self.term_iterations = {}, 0
        return record

    def save(self) -> Path | None:
        """Write the training state (all ranks' RNG states) and a G_ema snapshot; returns the state path."""
        rng = state.rng_states(self.device)
        rngs = [rng]
        if self.world > 1:
            rngs = [None] * self.world
            torch.distributed.all_gather_object(rngs, rng)
        if self.rank != 0:
            return None
        flat = {f"{key}/{r}": t for r, states in enumerate(rngs) for key, t in states.items()}
        counters = {"iteration": self.iteration, "cur_nimg": self.cur_nimg, "world": self.world,
                    "teacher_metrics": self.teacher_metrics}
        path = state.save_state(state.state_path(self.out, self.iteration),
                                nets={"G": self.G, "fake": self.fake, "G_ema": self.G_ema},
                                optimizers={"G": self.opt_G, "fake": self.opt_fake}, rng=flat,
                                counters=counters, run_config=dataclasses.asdict(self.cfg))
        save_network(self.G_ema, self.out / f"network-snapshot-{self.cur_nimg // 1000:06d}.safetensors")
        return path

    def _resume(self, where: str) -> None:
        path = state.latest_state(self.out) if where == "auto" else Path(where)
        if path is None:
            raise FileNotFoundError(f"--resume auto: no training state in {self.out}")
        if not path.is_file():
            raise FileNotFoundError(f"--resume: no such training state: {path}")
        tensors, meta = state.read_state(path)
        counters = meta["counters"]
        if counters["world"] != self.world:
            raise ValueError(f"{path} was written by {counters['world']} ranks; resume with the same number "
                             f"(got {self.world})")
        for name, net in (("G", self.G), ("fake", self.fake), ("G_ema", self.G_ema)):
            state.load_net_state(net, tensors, name, path)
        state.load_optimizer_state(self.opt_G, tensors, meta, "G")
        state.load_optimizer_state(self.opt_fake, tensors, meta, "fake")
        mine = {}
        for key, t in tensors.items():
            if key.startswith("rng/"):
                name, rank = key[len("rng/"):].rsplit("/", 1)
                if int(rank) == self.rank:
                    mine[name] = t
        state.set_rng_states(mine, self.device)
        self.iteration, self.cur_nimg = counters["iteration"], counters["cur_nimg"]
        self.teacher_metrics = counters.get("teacher_metrics")
        self.log(f"resumed from {path} at iteration {self.iteration} ({self.cur_nimg / 1000:.1f} kimg)")

    # ------------------------------------------------------------------ the loop
    def run(self, max_iterations: int | None = None) -> list[dict]:
        """Train until ``kimg`` (or ``max_iterations`` more iterations); returns this call's report records."""
        cfg = self.cfg
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2) + "\n")
        if self.iteration == 0 and self.teacher_metrics is None:
            self.teacher_metrics = self.evaluate_teacher()
            if self.teacher_metrics:
                self.log("teacher (35-NFE Heun): " + _fmt(self.teacher_metrics))
            if self.rank == 0:
                save_grid(self.sample(64, seed=2), self.out / "samples-init.png", columns=8,
                          scale=4 if self.teacher.img_resolution <= 16 else 1)
        total = int(cfg.kimg * 1000)
        tick = int(cfg.tick_kimg * 1000)
        records = []
        bar = tqdm(total=total, initial=min(self.cur_nimg, total), unit="img", unit_scale=True, desc=self.method,
                   disable=not self.progress, dynamic_ncols=True)
        t0, n0 = time.perf_counter(), self.cur_nimg
        sums = torch.zeros(2, device=self.device)
        done, stop = 0, None if max_iterations is None else self.iteration + max_iterations
        while self.cur_nimg < total and (stop is None or self.iteration < stop):
            loss_fake, loss_G = self.step()
            sums += torch.stack([loss_fake, loss_G])
            done += 1
            bar.update(cfg.batch)
            finished = self.cur_nimg >= total
            if self.cur_nimg // tick != (self.cur_nimg - cfg.batch) // tick or finished:
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                elapsed = time.perf_counter() - t0
                per_iter = (sums / max(done, 1)).tolist()
                record = {"iteration": self.iteration, "kimg": self.cur_nimg / 1000,
                          "images_per_s": (self.cur_nimg - n0) / elapsed, "loss_fake": per_iter[0],
                          "loss_G": per_iter[1]}
                if self.device.type == "cuda":
                    record["peak_mem_gib"] = torch.cuda.max_memory_allocated(self.device) / 2 ** 30
                records.append(self._report(record))
                bar.set_postfix_str(_fmt(record, ("images_per_s", "loss_G", "fd", "nll")))
                if (self.cur_nimg // tick) % cfg.snap_ticks == 0 or finished:
                    self.save()
                t0, n0, sums, done = time.perf_counter(), self.cur_nimg, sums.zero_(), 0
        bar.close()
        return records


def _fmt(record: dict, keys=None) -> str:
    keys = keys or [k for k, v in record.items() if isinstance(v, float)]
    return " ".join(f"{k}={record[k]:.4g}" for k in keys if isinstance(record.get(k), (int, float)))
