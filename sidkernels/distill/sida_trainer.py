"""SiDA distillation loop (adversarial SiD, docs/sid.md §4) on the SiD trainer's machinery (networks, optimisers,
EMA, checkpoints, resume, reports).  Per iteration, with the objectives of :mod:`sidkernels.distill.sida_losses`:

    fake score / discriminator:  L_psi on G(z) and a real batch; nan_to_num, clip_grad_value_(d_clip), Adam
    generator (after g_warmup_kimg): L_SiD, or 0.5 L_SiD + 0.5 L_gan after gan_start_kimg; nan_to_num, Adam
    EMA of G

Real images come from ``data`` (EDM's dataset layout, :mod:`sidkernels.distill.image_data`), or on the
mixture from its exact sampler.  Class-conditional runs take G's labels from the data, as the official
loop does (the generator step draws labels only, without decoding images).  During the warm-up the
official loop computes G's loss and discards it; here the generator step is skipped.  Reports carry the
mean per iteration of L_denoise, L_D, L_sid and L_gan (warm-up iterations count 0 for the last two).
"""
from __future__ import annotations

import torch

from sidkernels.distill.image_data import ImageDataset, RealImages
from sidkernels.distill.sida_config import SiDAConfig
from sidkernels.distill.sida_losses import sida_fake_loss, sida_generator_loss
from sidkernels.distill.trainer import FAKE_PHASE, GENERATOR_PHASE, SiDTrainer


class SiDATrainer(SiDTrainer):
    """Distil ``config.preset``'s teacher into a one-step generator with SiD plus the adversarial term."""

    method = "SiDA"

    def __init__(self, config: SiDAConfig, *, progress: bool = True, log=print):
        super().__init__(config, progress=progress, log=log)
        cfg = config
        if cfg.sid_model and not cfg.resume:
            for net in (self.G, self.G_ema):
                self._load_into(net, cfg.sid_model)
            self.log(f"SiD^2A: generator initialised from {cfg.sid_model}")
        self.reals = None
        if cfg.data is not None:
            net = self.teacher
            data = ImageDataset(cfg.data, resolution=net.img_resolution, channels=net.img_channels)
            seed = (cfg.seed * self.world + self.rank) * 1_000_003 + self.cur_nimg  # resumes draw a fresh order
            self.reals = RealImages(data, self.micro, self.device, label_dim=net.label_dim, seed=seed,
                                    workers=cfg.data_workers)
        self.sida_fake_loss = self._compiled(sida_fake_loss)
        self.sida_generator_loss = self._compiled(sida_generator_loss)

    # ------------------------------------------------------------------ data
    def _real_batch(self):
        """Latents, labels and a real batch for one fake-score micro-batch."""
        z, labels = self._draw()
        if self.reals is None:
            reals, _ = self.mixture.sample(self.micro, device=self.device)
            return z, labels, reals.contiguous(memory_format=self._memory_format())
        reals, labels = self.reals.next()
        return z, labels, reals.contiguous(memory_format=self._memory_format())

    def _generator_batch(self):
        z, labels = self._draw()
        if self.reals is not None and self.teacher.label_dim:
            labels = self.reals.labels(self.micro)
        return z, labels

    # ------------------------------------------------------------------ one iteration
    def step(self) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.cfg
        b = self.batch_rank

        def fake_round(fake):
            z, labels, reals = self._real_batch()
            denoising, disc = self.sida_fake_loss(self.G, fake, z, labels, reals, init_sigma=cfg.init_sigma,
                                                  scale=cfg.ls / b, scale_d=cfg.lsd / b, net_dtype=self.net_dtype,
                                                  augment_p=cfg.augment)
            self._track(L_denoise=denoising, L_D=disc)
            return denoising + disc

        for update in range(cfg.fake_updates):
            loss_fake = self._update(self.fake, self.fake_train, self.opt_fake, fake_round, phase=FAKE_PHASE,
                                     update=update, clip_value=cfg.d_clip)
        loss_G = torch.zeros((), device=self.device)
        if self.cur_nimg > cfg.g_warmup_kimg * 1000:
            with_gan = self.cur_nimg > cfg.gan_start_kimg * 1000

            def generator_round(G):
                z, labels = self._generator_batch()
                loss_sid, loss_gan = self.sida_generator_loss(
                    G, self.teacher, self.fake, z, labels, init_sigma=cfg.init_sigma, alpha=cfg.alpha,
                    tmax=cfg.tmax, scale=cfg.lsg / b, scale_gan=cfg.lsg_gan / b, net_dtype=self.net_dtype,
                    with_gan=with_gan)
                self._track(L_sid=loss_sid, L_gan=loss_gan)
                return 0.5 * loss_sid + 0.5 * loss_gan if with_gan else loss_sid

            loss_G = self._update(self.G, self.G_train, self.opt_G, generator_round, phase=GENERATOR_PHASE)
        self._advance()
        return loss_fake, loss_G
