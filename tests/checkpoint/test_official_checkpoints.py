"""Official-format checkpoints (EDM/SiD .pkl, SiD training-state .pt) written by the test itself through a
stand-in persistence module round-trip: same keys, same tensors, same outputs."""
import numpy as np
import pytest
import torch

from sidkernels.checkpoint import CheckpointError, load_checkpoint
from sidkernels.checkpoint.official import constructor_kwargs, read_checkpoint_object
from sidkernels.checkpoint.safe_unpickler import ContainerRecord, EasyDictRecord, PersistentRecord
from sidkernels.networks import EDMPrecond, VPPrecond, build_preset, iDDPMPrecond
from tests.checkpoint.edm_standin import StandinObject, EasyDict, dumps_edm_pickle, save_training_state

SMALL = dict(img_resolution=16, model_channels=16, channel_mult=[1, 2], num_blocks=1, attn_resolutions=[8],
             dropout=0.0)


def randomized(net):
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.2)
    return net.eval()


def small(name, **kw):
    return randomized(build_preset(name, **{**SMALL, **kw}))


def edm_snapshot(net):
    """The dict EDM's training loop pickles."""
    return dict(ema=net, loss_fn=StandinObject("EDMLoss", P_mean=-1.2, P_std=1.2, sigma_data=0.5),
                augment_pipe=None, dataset_kwargs=EasyDict(path="cifar10-32x32.zip", use_labels=False, xflip=False))


def assert_same_network(a, b, labels=None):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), k
    x, sigma = torch.randn(2, a.img_channels, a.img_resolution, a.img_resolution), torch.tensor([0.3, 5.0])
    assert torch.equal(a(x, sigma, labels), b(x, sigma, labels))


CASES = {
    "ddpmpp-cond": (lambda: small("cifar10-cond"), torch.eye(10)[[1, 4]]),
    "ncsnpp": (lambda: small("cifar10-ncsnpp"), None),
    "adm-cond": (lambda: small("imagenet64", label_dim=5, channels_per_head=8), torch.eye(5)[[0, 2]]),
    "vp-ddpmpp": (lambda: small("cifar10-uncond", precond="vp"), None),
    "iddpm-adm": (lambda: randomized(iDDPMPrecond(16, 3, model_type="DhariwalUNet", channels_per_head=8,
                                                  **{k: v for k, v in SMALL.items() if k != "img_resolution"})), None),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_edm_pickle_round_trip(case, tmp_path):
    make, labels = CASES[case]
    net = make()
    path = tmp_path / "edm-snapshot.pkl"
    dropped = ("num_blocks", "attn_resolutions", "channels_per_head")
    path.write_bytes(dumps_edm_pickle(edm_snapshot(net), drop_kwargs=dropped))
    loaded = load_checkpoint(path)
    assert type(loaded) is type(net) and not loaded.training
    assert_same_network(net, loaded, labels)
    # constructor defaults that were not passed were inferred from the block structure
    assert loaded.init_kwargs["num_blocks"] == 1 and loaded.init_kwargs["attn_resolutions"] == [8]


def test_pickle_layout_is_what_edm_writes(tmp_path):
    """Records for the persistent classes, a plain ModuleDict for enc/dec, numpy skip_scale, EasyDict."""
    net = small("cifar10-uncond")
    path = tmp_path / "snapshot.pkl"
    path.write_bytes(dumps_edm_pickle(edm_snapshot(net)))
    obj = read_checkpoint_object(path)
    assert isinstance(obj["dataset_kwargs"], EasyDictRecord) and obj["augment_pipe"] is None
    assert obj["loss_fn"].class_name == "EDMLoss" and obj["loss_fn"].state["P_mean"] == -1.2
    ema = obj["ema"]
    assert isinstance(ema, PersistentRecord) and ema.class_name == "EDMPrecond" and ema.version == 6
    assert "num_blocks" not in ema.state["_init_kwargs"] and ema.state["_init_kwargs"]["augment_dim"] == 9
    model = ema.state["_modules"]["model"]
    assert model.class_name == "SongUNet" and model.state["_init_kwargs"]["in_channels"] == 3
    enc = model.state["_modules"]["enc"]
    assert isinstance(enc, ContainerRecord) and enc.container == "ModuleDict"
    block = enc.state["_modules"]["16x16_block0"]
    assert isinstance(block.state["skip_scale"], np.float64)
    assert block.state["_modules"]["conv0"].state["_buffers"]["resample_filter"] is None


def test_sid_training_state_round_trip(tmp_path):
    G, fake = small("cifar10-uncond"), small("cifar10-uncond")
    G_ema = small("cifar10-uncond")
    opt = torch.optim.Adam(fake.parameters(), lr=1e-5, betas=(0.0, 0.999), eps=1e-8)
    x = torch.randn(2, 3, 16, 16)
    fake(x, torch.tensor([1.0, 2.0])).square().mean().backward()
    opt.step()
    path = tmp_path / "training-state-000512.pt"
    save_training_state(dict(fake_score=fake, G=G, G_ema=G_ema, fake_score_optimizer_state=opt.state_dict(),
                             g_optimizer_state=opt.state_dict()), path)
    assert_same_network(G_ema, load_checkpoint(path))
    assert_same_network(G, load_checkpoint(path, key="G"))
    assert_same_network(fake, load_checkpoint(path, key="fake_score"))
    state = read_checkpoint_object(path)["fake_score_optimizer_state"]
    assert state["param_groups"][0]["betas"] == (0.0, 0.999)
    first = next(iter(opt.state_dict()["state"]))
    assert torch.equal(state["state"][first]["exp_avg"], opt.state_dict()["state"][first]["exp_avg"])
    with pytest.raises(CheckpointError, match=r"no network under key 'g_optimizer_state'"):
        load_checkpoint(path, key="g_optimizer_state")


def test_sid_snapshot_with_fp16_attribute(tmp_path):
    """SiD snapshots are dict(ema=...); the wrapper's attributes (here use_fp16) win over _init_kwargs."""
    net = small("cifar10-uncond")
    net.use_fp16 = True
    path = tmp_path / "network-snapshot-1.200000-000000.pkl"
    path.write_bytes(dumps_edm_pickle({"ema": net}))
    loaded = load_checkpoint(path)
    assert loaded.use_fp16 is True and loaded.init_kwargs["use_fp16"] is True


def test_wrong_architecture_is_a_clear_error(tmp_path):
    net = small("cifar10-uncond")
    net.init_kwargs = dict(net.init_kwargs, model_channels=32)
    path = tmp_path / "edited.pkl"
    path.write_bytes(dumps_edm_pickle({"ema": net}))
    with pytest.raises(CheckpointError, match=r"do not match the EDMPrecond architecture.*shape mismatch"):
        load_checkpoint(path)


def test_unknown_class_and_arguments(tmp_path):
    path = tmp_path / "mystery.pkl"
    path.write_bytes(dumps_edm_pickle({"ema": StandinObject("MysteryNet", _init_kwargs={})}))
    with pytest.raises(CheckpointError, match="network class 'MysteryNet' is not supported"):
        load_checkpoint(path)
    net = small("cifar10-uncond")
    net.init_kwargs = dict(net.init_kwargs, fancy_option=True)
    path.write_bytes(dumps_edm_pickle({"ema": net}))
    with pytest.raises(CheckpointError, match="fancy_option"):
        load_checkpoint(path)


def test_missing_network_key(tmp_path):
    path = tmp_path / "other.pkl"
    path.write_bytes(dumps_edm_pickle({"net": small("cifar10-uncond")}))
    with pytest.raises(CheckpointError, match=r"pass key= one of \['net'\]"):
        load_checkpoint(path)
    assert isinstance(load_checkpoint(path, key="net"), EDMPrecond)


def test_positional_init_args_are_bound_by_name():
    record = PersistentRecord("VPPrecond", {"_init_args": (32, 3), "_init_kwargs": {"model_type": "SongUNet"},
                                            "_modules": {}})
    assert constructor_kwargs(record) == dict(img_resolution=32, img_channels=3, model_type="SongUNet")
    assert isinstance(VPPrecond, type)
