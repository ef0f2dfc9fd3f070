"""SiD distillation loop (docs/sid.md): per iteration one fake-score update, then one generator update, then the
generator EMA.

    fake step:  L_psi = ls/B * sum lambda(sigma) |f_psi(y + sigma eps) - y|^2,   y = G(z) (eval, no grad)
    G step:     L_G   = lsg/B * sum SiD(f_phi(x_t), f_psi(x_t), x_g),           x_t = G(z) + sigma eps
    both:       accumulation over R rounds, nan_to_num on the gradients, Adam (no clipping; static loss scales)

A run is built in three stages, each taking only what it needs, so SiD, SiDA, SIGN and other teachers plug in
without reaching into each other: the teacher provider (:func:`sidkernels.distill.teachers.provide_teacher`,
overridable as :meth:`SiDTrainer.provide_teacher` or by passing ``teacher=``), the training state
(:class:`sidkernels.distill.state.TrainingState`: G, the fake score, G_ema, optimisers, counters) and the loop
(this class: :meth:`step`, :meth:`run`, reports, checkpoints).

Randomness: every accumulation round reseeds torch's generators from (seed, iteration, phase, the round's
index in the global batch), so a run's draws do not depend on the world size, the split into micro-batches
or a resume: one process and any number of torchrun ranks train on the same samples.

Speed levers, each switchable: fused ops (``fused``; the generator loss is then fused from the networks' raw
outputs), bf16/fp16 autocast (``precision``), ``torch.compile`` of both per-round objectives (``compile``, with
``cuda_graphs`` for CUDA graphs and capturable Adam), channels_last, fused Adam.  A step makes no host
synchronisation outside the optimisers' bookkeeping (the value checks of the ops are off: sigma is positive by
construction).  Checkpoints are single safetensors files written atomically; ``resume`` continues exactly
(bitwise on CPU) and drops report rows written after the state it resumes from.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from sidkernels._backend import use_backend
from sidkernels._checks import value_checks
from sidkernels.checkpoint import save_network
from sidkernels.distill import dist, state
from sidkernels.distill.augment import AUGMENT_DIM, augment_dim
from sidkernels.distill.config import DistillConfig, split_batch
from sidkernels.distill.ema import ema_beta, update_ema
from sidkernels.distill.image_data import ImageDataset
from sidkernels.distill.lr_schedule import lr_factor
from sidkernels.distill.metrics import exact_metrics
from sidkernels.distill.report import append_jsonl, keep_rows, plot_metrics, read_jsonl
from sidkernels.distill.sid_losses import fake_score_loss_on_generator, generate, generator_loss
from sidkernels.distill.teachers import Teacher, load_into, provide_teacher
from sidkernels.distill.ticks import run_ticks
from sidkernels.images import save_grid
from sidkernels.metrics.monitor import FIDMonitor
from sidkernels.networks.precond import Preconditioner

AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
FAKE_PHASE, GENERATOR_PHASE = 0, 1


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` is bf16 on CUDA and fp32 on the CPU (bf16 autocast is slower there)."""
    return ("bf16" if device.type == "cuda" else "fp32") if precision == "auto" else precision


class SiDTrainer:
    """Distil ``config.preset``'s teacher into a one-step generator.  ``run()`` trains to ``config.kimg``."""

    method = "SiD"  # the progress bar's label

    def __init__(self, config: DistillConfig, *, progress: bool = True, log=print, teacher: Teacher | None = None):
        self.cfg = cfg = config
        self.device = dist.rank_device(cfg.device)
        self.rank, self.world = dist.init_from_env(self.device)
        cfg.validate(self.world)
        self.progress = progress and self.rank == 0
        self.log = log if self.rank == 0 else (lambda *a, **k: None)
        self.out = Path(cfg.out)
        self.batch_rank, self.micro, self.rounds = split_batch(cfg.batch, cfg.batch_gpu, self.world)
        precision = resolve_precision(cfg.precision, self.device)
        self.autocast_dtype = AUTOCAST[precision]
        self.net_dtype = self.autocast_dtype or torch.float32
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = cfg.tf32
            torch.backends.cudnn.allow_tf32 = cfg.tf32
            torch.backends.cudnn.benchmark = True

        source = teacher or self.provide_teacher()
        self.teacher, self.mixture = source.score, source.mixture
        if cfg.augment > 0 and augment_dim(source.init) != AUGMENT_DIM:
            raise ValueError(f"augment={cfg.augment} needs a teacher (and so a fake-score network) with "
                             f"augment_dim {AUGMENT_DIM}; the {cfg.preset!r} network has augment_dim "
                             f"{augment_dim(source.init)}: set augment=0")
        fused_adam = self.device.type == "cuda" if cfg.fused_adam is None else cfg.fused_adam
        self.state = state.TrainingState.start(
            source.init, lr=cfg.lr, glr=cfg.glr, g_beta1=cfg.g_beta1, eps=1e-6 if precision == "fp16" else cfg.adam_eps,
            fused_adam=fused_adam, capturable=cfg.cuda_graphs and self.device.type == "cuda",
            memory_format=self._memory_format())
        self.teacher.to(memory_format=self._memory_format())
        for net in (self.G, self.fake):
            dist.broadcast_parameters(net)
        self.G_train = dist.data_parallel(self.G, self.device)
        self.fake_train = dist.data_parallel(self.fake, self.device)
        self.label_pool = self._label_pool()
        self.raw_outputs = cfg.fused and all(isinstance(n, Preconditioner) for n in (self.teacher, self.fake))
        self.generator_loss = self._compiled(generator_loss)
        self.fake_loss = self._compiled(fake_score_loss_on_generator)
        self.term_sums: dict[str, torch.Tensor] = {}  # loss terms summed since the last report (see _track)
        self.term_iterations = 0
        if cfg.resume:
            self._resume(cfg.resume)
        self.fid = FIDMonitor.from_config(cfg, device=self.device, start_kimg=self.cur_nimg / 1000, log=self.log,
                                          progress=self.progress)

    # ------------------------------------------------------------------ the state (its parts by name)
    G = property(lambda self: self.state.G)
    fake = property(lambda self: self.state.fake)
    G_ema = property(lambda self: self.state.G_ema)
    opt_G = property(lambda self: self.state.opt_G, lambda self, opt: setattr(self.state, "opt_G", opt))
    opt_fake = property(lambda self: self.state.opt_fake, lambda self, opt: setattr(self.state, "opt_fake", opt))
    iteration = property(lambda self: self.state.iteration)
    cur_nimg = property(lambda self: self.state.cur_nimg)
    teacher_metrics = property(lambda self: self.state.teacher_metrics)

    # ------------------------------------------------------------------ construction
    def provide_teacher(self) -> Teacher:
        """The teacher provider stage (override to distil another kind of teacher)."""
        cfg = self.cfg
        return provide_teacher(cfg.preset, cfg.teacher, device=self.device, dropout=cfg.dropout, seed=cfg.seed,
                               student_channels=cfg.student_channels, progress=self.progress)

    def _load_into(self, net: torch.nn.Module, path: str) -> torch.nn.Module:
        return load_into(net, path, self.cfg.preset)

    def _compiled(self, objective):
        cfg = self.cfg
        if not cfg.compile:
            return objective
        return torch.compile(objective, fullgraph=True, backend=cfg.compile_backend,
                             mode="reduce-overhead" if cfg.cuda_graphs else None)

    def _label_pool(self) -> torch.Tensor | None:
        """The data set's class labels when ``data`` is given (G's labels then follow its empirical prior)."""
        cfg, label_dim = self.cfg, self.teacher.label_dim
        if cfg.data is None or not label_dim:
            return None
        data = ImageDataset(cfg.data, resolution=None, channels=None)
        if data.labels is None or data.labels.min() < 0 or data.labels.max() >= label_dim:
            raise ValueError(f"data: the teacher is class-conditional (label_dim={label_dim}); {cfg.data} needs "
                             f"labels in [0, {label_dim}) in its dataset.json")
        return torch.from_numpy(data.labels).to(self.device)

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
        """Latents and (for conditional teachers) one-hot labels for one micro-batch: the data set's labels
        (its empirical class prior) when ``data`` is given, uniform classes otherwise."""
        net = self.teacher
        shape = (self.micro, net.img_channels, net.img_resolution, net.img_resolution)
        z = torch.randn(shape, device=self.device).contiguous(memory_format=self._memory_format())
        labels = None
        if net.label_dim:
            if self.label_pool is None:
                classes = torch.randint(net.label_dim, (self.micro,), device=self.device)
            else:
                classes = self.label_pool[torch.randint(len(self.label_pool), (self.micro,), device=self.device)]
            labels = torch.nn.functional.one_hot(classes, net.label_dim).float()
        return z, labels

    def _seed_round(self, phase: int, update: int, micro: int) -> None:
        """Reseed torch's generators for round ``micro`` of this rank (module docstring)."""
        index = self.rank * self.rounds + micro
        words = np.random.SeedSequence([self.cfg.seed, self.iteration, phase, update, index]).generate_state(2)
        torch.manual_seed(int(words[0]) << 32 | int(words[1]))

    def _update(self, net, train_net, opt, loss_of_round, *, phase: int, update: int = 0,
                clip: float | None = None, clip_value: float | None = None) -> torch.Tensor:
        """Accumulate R rounds of ``loss_of_round(train_net)`` (gradients all-reduced in the last), nan_to_num,
        optional norm clip (``clip``) or value clip (``clip_value``), the learning-rate schedule, an Adam step;
        returns the summed loss (no host sync)."""
        net.train().requires_grad_(True)
        opt.zero_grad(set_to_none=True)
        total = torch.zeros((), device=self.device)
        for k in range(self.rounds):
            self._seed_round(phase, update, k)
            with dist.synchronising(train_net, last_round=k == self.rounds - 1), value_checks(False):
                with self._backend(), self._autocast():
                    loss = loss_of_round(train_net)
                loss.backward()
            total += loss.detach()
        net.eval().requires_grad_(False)
        params = [p for p in net.parameters() if p.grad is not None]
        for p in params:
            torch.nan_to_num_(p.grad, nan=0.0, posinf=1e5, neginf=-1e5)
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(params, clip)
        if clip_value is not None:
            torch.nn.utils.clip_grad_value_(params, clip_value)
        self._schedule_lr(opt)
        opt.step()
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

        def fake_round(fake):
            z, labels = self._draw()
            return self.fake_loss(self.G, fake, z, labels, init_sigma=cfg.init_sigma, scale=scale_fake,
                                  net_dtype=self.net_dtype, augment_p=cfg.augment)

        def generator_round(G):
            z, labels = self._draw()
            return self.generator_loss(G, self.teacher, self.fake, z, labels, init_sigma=cfg.init_sigma,
                                       alpha=cfg.alpha, tmax=cfg.tmax, scale=scale_G, net_dtype=self.net_dtype,
                                       raw=self.raw_outputs)

        for update in range(cfg.fake_updates):
            loss_fake = self._update(self.fake, self.fake_train, self.opt_fake, fake_round, phase=FAKE_PHASE,
                                     update=update)
        loss_G = self._update(self.G, self.G_train, self.opt_G, generator_round, phase=GENERATOR_PHASE)
        self._advance()
        return loss_fake, loss_G

    def _advance(self) -> None:
        """End of an iteration: generator EMA (at the pre-update image count, as the official loop), counters."""
        cfg = self.cfg
        update_ema(self.G_ema, self.G, ema_beta(self.cur_nimg, cfg.batch, cfg.ema_halflife_kimg, cfg.ema_rampup))
        self.state.cur_nimg += cfg.batch
        self.state.iteration += 1
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

    def _fid_generate(self, z, labels):
        """G_ema's one-step images for FID, in the run's backend and precision."""
        with self._backend(), self._autocast():
            return self.one_step(self.G_ema, z, labels).float()

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

    def report(self, record: dict) -> dict:
        """Complete a tick's ``record`` (FID, diagnostics, exact metrics), log it and refresh the pictures."""
        if self.fid is not None:  # a collective under torchrun: every rank takes part
            self.fid.report(record, self.G_ema, self._fid_generate, final=self.cur_nimg >= int(self.cfg.kimg * 1000))
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
        """Write the training state and a G_ema snapshot (rank 0), prune old states; returns the state path."""
        if self.rank != 0:
            return None
        path = self.state.save(state.state_path(self.out, self.iteration), run_config=dataclasses.asdict(self.cfg),
                               extra={"world": self.world})
        save_network(self.G_ema, self.out / f"network-snapshot-{self.cur_nimg // 1000:06d}.safetensors")
        state.prune_states(self.out, self.cfg.keep_states)
        return path

    def _resume(self, where: str) -> None:
        path = state.latest_state(self.out) if where == "auto" else Path(where)
        if path is None:
            raise FileNotFoundError(f"--resume auto: no training state in {self.out}")
        if not path.is_file():
            raise FileNotFoundError(f"--resume: no such training state: {path}")
        self.state.restore(path)
        if self.rank == 0:  # the rows a killed run wrote after this state would be counted twice
            keep_rows(self.out / "metrics.jsonl", lambda row: row.get("iteration", 0) <= self.iteration)
        self.log(f"resumed from {path} at iteration {self.iteration} ({self.cur_nimg / 1000:.1f} kimg)")

    # ------------------------------------------------------------------ the loop
    def run(self, max_iterations: int | None = None) -> list[dict]:
        """Train until ``kimg`` (or ``max_iterations`` more iterations); returns this call's report records."""
        cfg = self.cfg
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2) + "\n")
        if self.iteration == 0 and self.teacher_metrics is None:
            self.state.teacher_metrics = self.evaluate_teacher()
            if self.teacher_metrics:
                self.log("teacher (35-NFE Heun): " + _fmt(self.teacher_metrics))
            if self.rank == 0:
                save_grid(self.sample(64, seed=2), self.out / "samples-init.png", columns=8,
                          scale=4 if self.teacher.img_resolution <= 16 else 1)
        return run_ticks(self, cfg, max_iterations, ("images_per_s", "loss_G", "fd", "nll", "fid"))


def _fmt(record: dict, keys=None) -> str:
    keys = keys or [k for k, v in record.items() if isinstance(v, float)]
    return " ".join(f"{k}={record[k]:.4g}" for k in keys if isinstance(record.get(k), (int, float)))
