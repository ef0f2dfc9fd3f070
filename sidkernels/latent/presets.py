"""The ``sd15`` preset: SiD-LSG's hyper-parameters for Stable Diffusion 1.5 and SD 1.5's model configs.

The configs are the published ``config.json`` files of SD 1.5's UNet, scheduler, CLIP text encoder and VAE
(configuration values, needed to build the networks on the meta device for ``--dry-run``); no weights.
This module imports neither diffusers nor transformers.
"""
from __future__ import annotations

SD15_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, center_input_sample=False, flip_sin_to_cos=True, freq_shift=0,
    down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    block_out_channels=[320, 640, 1280, 1280], layers_per_block=2, downsample_padding=1, mid_block_scale_factor=1,
    act_fn="silu", norm_num_groups=32, norm_eps=1e-5, cross_attention_dim=768, attention_head_dim=8,
)
SD15_SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                      clip_sample=False, set_alpha_to_one=False, skip_prk_steps=True, steps_offset=1)
SD15_TEXT_ENCODER = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                         num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
                         projection_dim=768)
SD15_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=[128, 256, 512, 512],
                down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
                layers_per_block=2, norm_num_groups=32, act_fn="silu", sample_size=512, scaling_factor=0.18215)

# SiD-LSG's SD 1.5 run (its run_sid.sh): LSG scale 2 everywhere, alpha 1, t_init 625, t in [20, 980), Adam
# (beta1 0) at lr 1e-6 for both networks, batch 512, EMA half-life 0.05 Mimg, 10 Mimg.
LATENT_PRESETS: dict[str, dict] = {
    "sd15": dict(batch=512, batch_gpu=1, alpha=1.0, init_timestep=625, tmin=20, tmax=980, lr=1e-6, glr=1e-6,
                 cfg_train_fake=2.0, cfg_eval_fake=2.0, cfg_eval_real=2.0, ema_halflife_kimg=50.0, kimg=10_000.0,
                 tick_kimg=2.0, snap_ticks=50),
}

# where each model config comes from when a preset is used without a teacher folder (--dry-run)
PRESET_MODELS = {"sd15": dict(unet=SD15_UNET, scheduler=SD15_SCHEDULER, text_encoder=SD15_TEXT_ENCODER,
                              vae=SD15_VAE, text_length=77)}
