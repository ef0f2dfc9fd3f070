"""Latent text-to-image teachers from diffusers, distilled with SiD-LSG (guided SiD) on one GPU.

Modules (none imports diffusers or transformers at import time; they load them when a teacher is built):

    schedule       a DDPM schedule in EDM's sigma space (sigma_t, snapping)
    denoiser       LatentDenoiser: a diffusers UNet as an EDM denoiser D(x; sigma, cond) with CFG
    text           text conditioning: a CLIP text encoder or precomputed embeddings, prompt dropout
    data           prompt files and captions datasets
    lsg_losses     the SiD-LSG generator and fake-score objectives on the fused ops
    teacher        the teacher provider: a diffusers folder, a hub id, or tiny random models
    training_state G, fake score, EMA, optimisers, counters (the shared training-state format)
    trainer        SiDLSGTrainer: the loop
    memory         the memory model behind ``sidkernels distill --preset sd15 --dry-run``
    fsdp           FSDP2 sharding of the UNets under torchrun
    config, presets, tiny, cli
"""
