"""Small valid files of every format the loader reads, written deterministically: the starting points of the
fuzz harness and the warm-up of the load worker.

* ``edm.pkl``: an EDM snapshot (``dict(ema=..., loss_fn=..., augment_pipe=None, dataset_kwargs=...)``, plain
  pickle protocol 4, storages as embedded legacy archives);
* ``training-state.pt``: a SiD training state (``torch.save`` zip, protocol 2: networks + an Adam state);
* ``network.safetensors``: our network format (:func:`sidkernels.checkpoint.save_network`);
* ``training-state.safetensors``: our training state (:func:`sidkernels.distill.state.save_state`).
"""
from __future__ import annotations

from pathlib import Path

import torch

#: a U-Net as small as the architecture allows (one level, one block, 8 channels, 4x4 images)
TINY = dict(img_resolution=4, model_channels=8, channel_mult=[1], num_blocks=1, attn_resolutions=[4], dropout=0.0)
#: name -> the reader the worker uses for it ("checkpoint": load_checkpoint, "state": read_state)
READERS = {"edm.pkl": "checkpoint", "training-state.pt": "checkpoint", "network.safetensors": "checkpoint",
           "training-state.safetensors": "state"}


def tiny_network(seed: int = 0):
    from sidkernels.networks import build_preset

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = build_preset("cifar10-uncond", **TINY)
        with torch.no_grad():
            for p in net.parameters():
                p.normal_(0, 0.2)
    return net.eval()


def write_seeds(directory) -> dict[str, Path]:
    """Write the four seed files into ``directory``; returns ``{name: path}``."""
    from sidkernels.checkpoint import save_network
    from sidkernels.distill import state
    from tests.checkpoint.edm_standin import EasyDict, StandinObject, dumps_edm_pickle, save_training_state

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    net, fake = tiny_network(0), tiny_network(1)
    with torch.random.fork_rng():
        torch.manual_seed(2)
        opt = torch.optim.Adam(fake.parameters(), lr=1e-4, betas=(0.0, 0.999))
        fake(torch.randn(2, 3, 4, 4), torch.tensor([0.5, 2.0])).square().mean().backward()
        opt.step()
    paths = {name: directory / name for name in READERS}
    snapshot = dict(ema=net, loss_fn=StandinObject("EDMLoss", P_mean=-1.2, P_std=1.2, sigma_data=0.5),
                    augment_pipe=None, dataset_kwargs=EasyDict(path="cifar10-32x32.zip", use_labels=False))
    paths["edm.pkl"].write_bytes(dumps_edm_pickle(snapshot))
    save_training_state(dict(fake_score=fake, G=net, G_ema=net, fake_score_optimizer_state=opt.state_dict()),
                        paths["training-state.pt"])
    save_network(net, paths["network.safetensors"])
    state.save_state(paths["training-state.safetensors"], nets={"G": net, "fake": fake}, optimizers={"fake": opt},
                     rng={"cpu": torch.get_rng_state()}, counters={"iteration": 3, "world": 1},
                     run_config={"seed": 0})
    return paths
