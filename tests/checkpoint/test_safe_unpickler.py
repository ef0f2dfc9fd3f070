"""The restricted unpickler refuses every global off the whitelist before calling anything (docs/checkpoint-formats.md, "How the loader keeps it")."""
import builtins
import collections
import importlib
import io
import os
import pickle
import subprocess

import numpy as np
import pytest
import torch

from sidkernels.checkpoint import ForbiddenGlobalError, UnsafePickleError, load_checkpoint
from sidkernels.checkpoint.safe_unpickler import ContainerRecord, PersistentRecord, loads
from sidkernels.networks.layers import Linear
from tests.checkpoint.edm_standin import dumps_edm_pickle, save_training_state


class Payload:
    """Pickles to ``func(*args)``: what a malicious checkpoint would run on load."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def touch_command(marker):
    return f"touch {marker}"


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "pwned"
    yield path
    assert not path.exists(), "a payload ran during loading"


@pytest.mark.parametrize("make", [
    lambda m: Payload(os.system, touch_command(m)),
    lambda m: Payload(builtins.eval, f"open({str(m)!r}, 'w')"),
    lambda m: Payload(builtins.exec, f"open({str(m)!r}, 'w')"),
    lambda m: Payload(subprocess.call, ["touch", str(m)]),
    lambda m: Payload(importlib.import_module, "os"),
])
def test_foreign_globals_are_refused_and_nothing_runs(marker, tmp_path, make):
    data = pickle.dumps({"ema": make(marker)}, protocol=4)
    with pytest.raises(pickle.UnpicklingError, match="refusing to load global") as err:
        loads(data)
    assert isinstance(err.value, ForbiddenGlobalError)
    path = tmp_path / "evil.pkl"
    path.write_bytes(data)
    with pytest.raises(ForbiddenGlobalError):
        load_checkpoint(path)


def test_error_names_the_global(marker):
    with pytest.raises(ForbiddenGlobalError, match=r"'posix\.system'|'os\.system'"):
        loads(pickle.dumps(Payload(os.system, touch_command(marker))))
    with pytest.raises(ForbiddenGlobalError, match=r"'builtins\.eval'"):
        loads(pickle.dumps(Payload(builtins.eval, "1")))


def test_payload_next_to_a_network_record_is_refused(marker):
    net = Linear(2, 2)
    assert isinstance(loads(dumps_edm_pickle({"ema": net}))["ema"], PersistentRecord)
    data = dumps_edm_pickle({"ema": net, "extra": Payload(os.system, touch_command(marker))})
    with pytest.raises(ForbiddenGlobalError):
        loads(data)


def test_module_source_is_never_executed(marker, monkeypatch):
    import tests.checkpoint.edm_standin as standin

    monkeypatch.setattr(standin, "PLACEHOLDER_SRC", f"open({str(marker)!r}, 'w').close()\n")
    from sidkernels.networks import build_preset

    net = build_preset("cifar10-uncond", img_resolution=8, model_channels=16, channel_mult=[1, 2], num_blocks=1)
    obj = loads(dumps_edm_pickle({"ema": net}))
    assert isinstance(obj["ema"], PersistentRecord) and "open(" in obj["ema"].module_src


def test_nested_storage_archive_is_read_weights_only(marker):
    """``torch.storage._load_from_bytes`` normally runs a full torch.load on its bytes: a second way in."""
    inner = io.BytesIO()
    torch.save({"x": Payload(os.system, touch_command(marker))}, inner)
    data = pickle.dumps(Payload(torch.storage._load_from_bytes, inner.getvalue()))
    with pytest.raises(pickle.UnpicklingError):
        loads(data)


def test_training_state_with_a_payload_is_refused(marker, tmp_path):
    path = tmp_path / "training-state-000000.pt"
    save_training_state({"G_ema": Linear(2, 2), "evil": Payload(os.system, touch_command(marker))}, path)
    with pytest.raises(ForbiddenGlobalError, match="posix.system|os.system"):
        load_checkpoint(path)


def test_checked_wrappers_refuse_misuse():
    with pytest.raises(UnsafePickleError, match="numpy dtype 'O8' is not allowed"):
        loads(pickle.dumps(Payload(np._core.multiarray.scalar, np.dtype(object), 5)))
    import _codecs

    with pytest.raises(UnsafePickleError, match="latin-1"):
        loads(pickle.dumps(Payload(_codecs.encode, "x", "rot13")))


def test_whitelisted_values_round_trip():
    param = torch.nn.Parameter(torch.randn(3, 2))
    obj = {"od": collections.OrderedDict(a=1), "f": np.float64(0.7071), "i": np.int64(3), "s": {1, 2},
           "t": torch.arange(6.0).reshape(2, 3)[:, 1:], "p": param, "bf16": torch.ones(2, dtype=torch.bfloat16),
           "dtype": torch.float16}
    out = loads(pickle.dumps(obj, protocol=2))
    assert out["od"] == obj["od"] and out["s"] == {1, 2} and out["dtype"] is torch.float16
    assert out["f"] == np.float64(0.7071) and isinstance(out["f"], np.float64) and out["i"] == 3
    assert torch.equal(out["t"], obj["t"]) and torch.equal(out["p"], param) and out["bf16"].dtype == torch.bfloat16


def test_protocol_1_containers_use_the_reconstructor():
    """Protocols 0 and 1 write a ModuleDict as ``copyreg._reconstructor(ModuleDict, object, None)`` + BUILD."""
    from tests.checkpoint.edm_standin import _pickler, standin_modules

    net = Linear(2, 2)
    holder = torch.nn.ModuleDict({"lin": net})
    for protocol in (0, 1):
        buf = io.BytesIO()
        with standin_modules():
            _pickler(())(buf, protocol=protocol).dump({"ema": holder})
        assert b"_reconstructor" in buf.getvalue()
        record = loads(buf.getvalue())["ema"]
        assert isinstance(record, ContainerRecord) and record.container == "ModuleDict"
        lin = record.state["_modules"]["lin"]
        assert lin.class_name == "Linear" and torch.equal(lin.state["_parameters"]["weight"], net.weight)


def test_numpy_scalars_of_every_plain_dtype_and_byte_order():
    for value in (np.bool_(True), np.int8(-3), np.uint16(65535), np.int64(-(1 << 62)), np.float16(0.1),
                  np.float32(1e-20), np.float64(-2.5), np.dtype(">f8").type(7.25), np.dtype(">i4").type(-9)):
        for protocol in (2, 4):
            out = loads(pickle.dumps(value, protocol=protocol))
            assert type(out) is type(value) and out == value and out.dtype == value.dtype, (value, protocol)


def test_state_dicts_keep_their_metadata():
    """SiDA training states hold ``state_dict()``s: OrderedDicts with a ``_metadata`` attribute."""
    sd = Linear(2, 3).state_dict()
    out = loads(pickle.dumps({"G_state": sd}, protocol=2))["G_state"]
    assert isinstance(out, collections.OrderedDict) and list(out) == list(sd)
    assert out._metadata == sd._metadata and all(torch.equal(out[k], sd[k]) for k in sd)
