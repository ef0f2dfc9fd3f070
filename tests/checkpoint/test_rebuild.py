"""Constructor arguments and weights from a file are checked before anything is built or assigned."""
import numpy as np
import pytest
import torch

from sidkernels.checkpoint.errors import CheckpointError
from sidkernels.checkpoint.rebuild import MAX_LIST_LENGTH, plain_value, rebuild_network
from sidkernels.networks import iDDPMPrecond
from tests.checkpoint.seeds import tiny_network


def test_plain_values():
    assert plain_value(np.float64(0.25), "x") == 0.25 and type(plain_value(np.int64(3), "x")) is int
    assert plain_value((1, np.int32(2), None, "a"), "x") == [1, 2, None, "a"]
    assert plain_value([1] * MAX_LIST_LENGTH, "x") == [1] * MAX_LIST_LENGTH
    for bad in ([1] * (MAX_LIST_LENGTH + 1), [[1]], {"a": 1}, torch.zeros(1), b"x", np.zeros(2), 1j):
        with pytest.raises(CheckpointError, match="constructor arguments must be numbers"):
            plain_value(bad, "x")


def test_a_valid_network_rebuilds_exactly():
    net = tiny_network()
    loaded = rebuild_network("EDMPrecond", net.init_kwargs, net.state_dict(), "test")
    x = torch.randn(2, 3, 4, 4)
    assert torch.equal(loaded(x, 1.5), net(x, 1.5)) and not loaded.training


def test_block_count_is_bounded_by_the_weights():
    sd = tiny_network().state_dict()  # 1 level of 1 block: 2 blocks' worth, far fewer than the tensors
    kwargs = dict(tiny_network().init_kwargs)
    too_many = len(sd)  # levels * (blocks + 1) > tensors
    with pytest.raises(CheckpointError, match=f"1 levels of {too_many} blocks, more than the {len(sd)} tensors"):
        rebuild_network("EDMPrecond", dict(kwargs, num_blocks=too_many), sd, "test")
    with pytest.raises(CheckpointError, match="do not match the EDMPrecond architecture"):  # within bound: built
        rebuild_network("EDMPrecond", dict(kwargs, num_blocks=too_many - 1), sd, "test")
    with pytest.raises(CheckpointError, match="channel_mult must be a list and num_blocks an int"):
        rebuild_network("EDMPrecond", dict(kwargs, num_blocks=1.5), sd, "test")


def test_iddpm_table_size_must_match_its_buffer():
    kwargs = dict(img_resolution=4, img_channels=3, model_channels=8, channel_mult=[1], num_blocks=1,
                  attn_resolutions=[4], channels_per_head=8, dropout=0.0, M=10)
    with torch.device("meta"):
        sd = iDDPMPrecond(**kwargs).state_dict()
    sd = {k: torch.zeros(v.shape) for k, v in sd.items()}
    assert isinstance(rebuild_network("iDDPMPrecond", kwargs, sd, "test"), iDDPMPrecond)
    with pytest.raises(CheckpointError, match=r"M=10000000000 does not match its stored table u \(\(11,\)\)"):
        rebuild_network("iDDPMPrecond", dict(kwargs, M=10 ** 10), sd, "test")


def test_weights_must_be_floating_and_backed_by_their_storage():
    net = tiny_network()
    sd = dict(net.state_dict())
    name = "model.map_layer0.bias"
    with pytest.raises(CheckpointError, match=f"weight {name} is torch.int64"):
        rebuild_network("EDMPrecond", net.init_kwargs, dict(sd, **{name: sd[name].long()}), "test")
    broadcast = torch.zeros(1).expand(sd[name].shape)
    with pytest.raises(CheckpointError, match=f"weight {name} has {sd[name].numel()} elements but its storage holds "
                                              "only 1"):
        rebuild_network("EDMPrecond", net.init_kwargs, dict(sd, **{name: broadcast}), "test")
    half = rebuild_network("EDMPrecond", net.init_kwargs, {k: v.half() for k, v in sd.items()}, "test")
    assert half.model.map_layer0.bias.dtype == torch.float16  # stored dtypes are kept


def test_constructor_failures_are_checkpoint_errors():
    kwargs = dict(tiny_network().init_kwargs)
    sd = tiny_network().state_dict()
    for change in (dict(channels_per_head=0, model_type="DhariwalUNet"), dict(channel_mult=[]),
                   dict(embedding_type="spherical"), dict(model_channels=-8)):
        with pytest.raises(CheckpointError, match="cannot build EDMPrecond|do not match"):
            rebuild_network("EDMPrecond", dict(kwargs, **change), sd, "test")
