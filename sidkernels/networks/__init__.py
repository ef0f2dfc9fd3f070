"""EDM-compatible networks: official parameter names and shapes, SDPA attention, channels_last and
autocast friendly, compilable with ``torch.compile(fullgraph=True)``.

Public API::

    SongUNet, DhariwalUNet, UNetBlock,
    EDMPrecond, VPPrecond, VEPrecond, iDDPMPrecond,
    build_preset, PRESETS, set_attention_impl
"""
from torch import nn

from sidkernels.networks.attention import ATTENTION_IMPLS, check_attention_impl
from sidkernels.networks.dhariwal_unet import DhariwalUNet
from sidkernels.networks.precond import EDMPrecond, VEPrecond, VPPrecond, iDDPMPrecond
from sidkernels.networks.presets import PRESETS, build_preset
from sidkernels.networks.song_unet import SongUNet
from sidkernels.networks.unet_block import UNetBlock


def set_attention_impl(net: nn.Module, impl: str) -> nn.Module:
    """Switch every attention block of ``net`` to ``"sdpa"`` or the fp32-softmax ``"reference"``."""
    check_attention_impl(impl)
    for module in net.modules():
        if isinstance(module, UNetBlock):
            module.attention_impl = impl
    return net


__all__ = [
    "ATTENTION_IMPLS", "DhariwalUNet", "EDMPrecond", "PRESETS", "SongUNet", "UNetBlock", "VEPrecond", "VPPrecond",
    "build_preset", "iDDPMPrecond", "set_attention_impl",
]
