"""SIGN distillation loop (docs/sign.md §6, a reconstruction [R]) on the SiD trainer's machinery (networks,
optimisers, EMA, checkpoints, resume, reports).  Per iteration:

    fake score (x fake_updates):  L_denoise on sg(f(z')), z' = sigma_max eps        (the SiD fake-score loss)
                                  (a dmd_renoise fraction of them re-noised and re-generated, as for L_dmd)
    student:  L_rec + w_idem(i) L_idem + l_flow L_flow + l_dmd L_dmd + l_reg L_reg   (grad-norm clip, Adam)
    EMA of the student

``variant="ign"`` trains the original IGN objective instead: l_r L_rec + l_i L_idem + l_t L_tight (L1,
tanh-clamped tightness), with no teacher terms and no fake score.  Every term has a weight; a zero weight
switches it off (and skips its work).
"""
from __future__ import annotations

import torch

from sidkernels.distill.metrics import exact_metrics
from sidkernels.distill.sid_losses import denoising_loss
from sidkernels.distill.mixture_teacher import cache_dir
from sidkernels.distill.trainer import FAKE_PHASE, GENERATOR_PHASE, SiDTrainer
from sidkernels import sample_distance
from sidkernels.sign import losses as L
from sidkernels.sign.config import SIGNConfig
from sidkernels.sign.pairs import DTYPES, Pairs, cached_pairs
from sidkernels.sign.sampling import apply_repeatedly, renoise_sigmas
from sidkernels.sign.student import IdempotentStudent

HELD_OUT = 0.05  # fraction of the regression pairs kept out of training (data-free held-out set)


class SIGNTrainer(SiDTrainer):
    """Distil ``config.preset``'s teacher into an idempotent one-step generator/projector."""

    method = "SIGN"

    def __init__(self, config: SIGNConfig, *, progress: bool = True, log=print):
        super().__init__(config, progress=progress, log=log)
        cfg = config
        if self.world > 1 and cfg.time_mode == "none":
            raise ValueError("time_mode='none' calls the student's inner model past DistributedDataParallel, so "
                             "it trains in one process only; use time_mode='fixed' or 'estimated' under torchrun")
        self.f = IdempotentStudent(self.G, cfg.time_mode, cfg.sigma_c)
        self.f_train = IdempotentStudent(self.G_train, cfg.time_mode, cfg.sigma_c)  # gradients all-reduced
        self.f_ema = IdempotentStudent(self.G_ema, cfg.time_mode, cfg.sigma_c)
        self.grid = L.karras_grid(cfg.flow_steps, sigma_max=cfg.sigma_max, device=self.device)
        self.data_free = cfg.data_free or self.mixture is None
        self.uses_teacher = cfg.variant == "sign"
        self.pairs = None
        if self.uses_teacher and (cfg.lambda_reg > 0 or self.data_free):
            steps = 18 if self.teacher.img_resolution <= 32 else 40
            pairs = cached_pairs(self.teacher, cfg.reg_pairs, cache_dir(), num_steps=steps, sigma_max=cfg.sigma_max,
                                 levels=cfg.reg_levels, dtype=DTYPES[cfg.reg_pair_dtype], device=self.device,
                                 progress=self.progress)
            self.pairs = Pairs(*(None if t is None else t.to(self.device) for t in pairs))
            self.n_train_pairs = max(1, int(len(pairs.y) * (1 - HELD_OUT)))

    # ------------------------------------------------------------------ data
    def _pair_batch(self, n: int, held_out: bool = False, generator=None):
        """``(input, target, labels)`` of n random pairs, each input at a random stored level."""
        inputs, y, labels = self.pairs
        lo, hi = (self.n_train_pairs, len(y)) if held_out else (0, self.n_train_pairs)
        where = None if generator is not None else self.device  # training draws on the device, no host copy
        idx = torch.randint(lo, max(hi, lo + 1), (n,), generator=generator, device=where).to(self.device)
        level = torch.randint(inputs.shape[1], (n,), generator=generator, device=where).to(self.device)
        return inputs[idx, level].float(), y[idx], None if labels is None else labels[idx]

    def _data(self, n: int, generator=None):
        """Clean data x and its labels: exact mixture samples, or (data-free) the teacher's samples."""
        if self.data_free:
            _, y, labels = self._pair_batch(n, generator=generator)
            return y, labels
        x, _ = self.mixture.sample(n, generator=generator, device=None if generator else self.device)
        return x.to(self.device), None

    # ------------------------------------------------------------------ one iteration
    def one_step(self, net, z, labels):
        return IdempotentStudent(net, self.cfg.time_mode, self.cfg.sigma_c)(self.cfg.sigma_max * z, labels)

    def _student_terms(self, f) -> tuple[dict, dict]:
        """The loss terms of one micro-batch of the student ``f`` and their weights."""
        cfg = self.cfg
        z, z_labels = self._draw()
        x_g = f(cfg.sigma_max * z, z_labels)
        x, x_labels = self._data(self.micro)
        ramp = min(1.0, self.cur_nimg / max(cfg.idem_warmup_kimg * 1000, 1e-8))
        if cfg.variant == "ign":
            rec_per_sample = sample_distance(f(x, x_labels), x, "l1")
            terms = {"rec": rec_per_sample.mean(), "idem": L.idem_loss(f, x_g, z_labels, "l1"),
                     "tight": L.ign_tight_loss(f, cfg.sigma_max * z, z_labels, rec_per_sample, "l1", cfg.ign_tight_a)}
            lam_r, lam_i, lam_t = cfg.ign_lambdas
            return terms, {"rec": lam_r, "idem": lam_i * ramp, "tight": lam_t}
        terms = {"rec": L.rec_loss(f, x, x_labels, cfg.dist_rec)}
        weights = {"rec": 1.0, "idem": cfg.lambda_idem * ramp, "flow": cfg.lambda_flow, "dmd": cfg.lambda_dmd,
                   "reg": cfg.lambda_reg}
        if weights["idem"] > 0:
            terms["idem"] = L.idem_loss(f, x_g, z_labels, cfg.dist_idem)
        if cfg.lambda_flow > 0:
            terms["flow"] = L.flow_loss(f, self.teacher, x, x_labels, self.grid, cfg.dist_flow)
        if cfg.lambda_dmd > 0:
            x_dmd = L.renoised_generation(f, x_g, z_labels, cfg.dmd_renoise, cfg.dmd_renoise_range)
            terms["dmd"] = L.dmd_loss(x_dmd, self.teacher, self.fake, z_labels, tmax=cfg.tmax,
                                      score_loss=cfg.score_loss, alpha=cfg.alpha)
        if cfg.lambda_reg > 0:
            z_k, y_k, k_labels = self._pair_batch(self.micro)
            terms["reg"] = L.reg_loss(f, z_k, y_k, k_labels, cfg.dist_reg)
        return terms, weights

    def step(self) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.cfg
        share = self.micro / self.batch_rank  # each round's share of the step's mean
        loss_fake = torch.zeros((), device=self.device)
        if self.uses_teacher and cfg.lambda_dmd > 0:
            def fake_round(fake):
                z, labels = self._draw()
                with torch.no_grad():
                    x_g = self.f(cfg.sigma_max * z, labels)
                    x_g = L.renoised_generation(self.f, x_g, labels, cfg.dmd_renoise, cfg.dmd_renoise_range)
                return denoising_loss(fake, x_g, labels, scale=cfg.ls / self.batch_rank,
                                      net_dtype=self.net_dtype)
            for update in range(cfg.fake_updates):
                loss_fake = self._update(self.fake, self.fake_train, self.opt_fake, fake_round, phase=FAKE_PHASE,
                                         update=update)

        def student_round(_G_train):  # f_train wraps it
            terms, weights = self._student_terms(self.f_train)
            self._track(**{f"L_{name}": share * value for name, value in terms.items()})
            return share * sum(weights[name] * value for name, value in terms.items())

        loss_G = self._update(self.G, self.G_train, self.opt_G, student_round, phase=GENERATOR_PHASE,
                              clip=cfg.grad_clip)
        self._advance()
        return loss_fake, loss_G

    # ------------------------------------------------------------------ diagnostics
    @torch.no_grad()
    def sample_steps(self, n: int, steps: int, seed: int = 0) -> torch.Tensor:
        """n ``steps``-step samples of G_ema (unconditional teachers): the one-step samples of :meth:`sample`
        from the same latents, re-noised with the run's schedule and projected again."""
        if self.teacher.label_dim:
            raise NotImplementedError("SIGNTrainer.sample_steps draws unconditional samples only; use "
                                      "sidkernels.sign.sample_steps with labels for a conditional teacher")
        x = self.sample(n, seed)
        gen = torch.Generator().manual_seed(seed + 1)
        for sigma in renoise_sigmas(steps, self.cfg.renoise):
            noisy = (x + sigma * torch.randn(x.shape, generator=gen)).to(self.device)
            with self._backend(), self._autocast():
                x = self.f_ema(noisy).float().cpu()
        return x

    @torch.no_grad()
    def diagnostics(self, n: int = 500) -> dict:
        """Mean loss terms since the last report, and on G_ema: the idempotence residual RMS(f(f(z)) - f(z))
        and the same relative to the spread of the samples, RMS(f(z) - mean f(z)) (a nearly constant map is
        trivially idempotent: ~1 at the teacher initialisation), the held-out reconstruction RMS(f(x) - x) and
        the identity check RMS(f(z) - z)."""
        cfg, f = self.cfg, self.f_ema
        record = super().diagnostics()
        gen = torch.Generator().manual_seed(3)
        shape = (n, self.teacher.img_channels, self.teacher.img_resolution, self.teacher.img_resolution)
        z = cfg.sigma_max * torch.randn(shape, generator=gen).to(self.device)
        labels = None
        if self.teacher.label_dim:
            labels = torch.nn.functional.one_hot(torch.randint(self.teacher.label_dim, (n,), generator=gen),
                                                 self.teacher.label_dim).float().to(self.device)
        with self._backend(), self._autocast():
            fz = f(z, labels).float()
            ffz = apply_repeatedly(f, fz, 1, labels).float()
            if self.data_free:
                if self.pairs is None:
                    return record
                _, x, x_labels = self._pair_batch(n, held_out=True, generator=gen)
            else:
                x, x_labels = self.mixture.sample(n, generator=gen)[0].to(self.device), None
            fx = f(x, x_labels).float()
        rms = lambda t: t.square().mean().sqrt().item()
        record.update(idem_residual=rms(ffz - fz), idem_residual_rel=rms(ffz - fz) / rms(fz - fz.mean(0)),
                      heldout_rec=rms(fx - x), identity=rms(fz - z))
        if self.mixture is not None and cfg.eval_samples:
            two = exact_metrics(self.mixture, self.sample_steps(cfg.eval_samples, 2))
            record.update({f"{k}_2step": v for k, v in two.items()})
        return record
