"""``load_checkpoint`` against files written by an attacker, one test per attack class.

Each file is loaded in a child process (:mod:`tests.checkpoint.load_worker`), which must survive, refuse
the file with a CheckpointError that says why, and afterwards still load a clean tensor file bit-exactly with
its module state, imports and global settings unchanged.  Before this loader existed, the BUILD file of
``test_build_on_a_named_object`` loaded a working teacher and made every later tensor load in the process
(``torch.load(weights_only=True)`` included) return negated values, the structured-dtype file killed the
interpreter with SIGSEGV, ``torch.onnx`` was imported while it was being refused, and the deep dict key hung
or crashed the loader.
"""
import struct

import pytest

from tests.checkpoint import hostile as h

SNAPSHOT_WITH = "snapshot+"  # prefix: the attack is spliced into the valid EDM snapshot seed


def check_refused(worker, path, match, reader="checkpoint", error=None, key=None):
    import re

    reply = worker.load(path, reader, key)
    assert reply["outcome"] == "refused", reply
    assert reply["intact"], reply["changes"]
    assert re.search(match, reply["message"]), reply["message"]
    if error is not None:
        assert reply["error"] == error, reply
    return reply


def write(tmp_path, seed_files, name, data):
    if data.startswith(SNAPSHOT_WITH.encode()):
        data = h.into_snapshot(seed_files["edm.pkl"].read_bytes(), "extra", data[len(SNAPSHOT_WITH):])
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_valid_files_load_in_the_worker(load_worker, seed_files):
    for name, reader in (("edm.pkl", "checkpoint"), ("training-state.pt", "checkpoint"),
                         ("network.safetensors", "checkpoint"), ("training-state.safetensors", "state")):
        reply = load_worker.load(seed_files[name], reader)
        assert reply["outcome"] == "loaded" and reply["intact"], reply


# -- 1. BUILD (and other state-setting opcodes) on objects the file names -------------------------------------

@pytest.mark.parametrize("payload, target", [
    (h.build_on_global("torch._utils", "_rebuild_tensor_v2"), "torch._utils._rebuild_tensor_v2"),
    (h.build_on_global("torch._utils", "_rebuild_parameter", h.dct((h.text("x"), h.TRUE))), "_rebuild_parameter"),
    (h.build_on_global("collections", "OrderedDict", h.NONE + h.dct((h.text("fromkeys"), h.NONE)) + h.TUPLE2),
     "collections.OrderedDict"),
    (h.build_on_global("numpy", "dtype", h.dct()), "numpy.dtype"),
    (h.build_on_global("torch.storage", "_load_from_bytes"), "_load_from_bytes"),
    (h.stack_glob("torch._utils", "_rebuild_tensor_v2") + h.neg_bit_defaults() + h.BUILD, "_rebuild_tensor_v2"),
    (h.glob("torch", "float32") + h.dct() + h.BUILD, "dtype"),
])
def test_build_on_a_named_object(load_worker, seed_files, tmp_path, payload, target):
    """BUILD applies state only to the loader's own records; nothing the file names can be modified."""
    path = write(tmp_path, seed_files, "snapshot.pkl", SNAPSHOT_WITH.encode() + payload)
    check_refused(load_worker, path, rf"BUILD on .*{target}.* is not allowed", error="UnsafePickleError")


def test_build_on_records_is_checked(load_worker, seed_files, tmp_path):
    """The records that take state accept only the state their class has: once, of the right type."""
    container = h.glob("torch.nn.modules.container", "ModuleDict") + h.EMPTY_TUPLE + h.NEWOBJ
    for name, payload, match in [
        ("twice.pkl", container + h.dct() + h.BUILD + h.dct() + h.BUILD, "state was already set"),
        ("list.pkl", container + h.lst() + h.BUILD, "state must be a dict"),
        ("record.pkl", h.persistent_obj("Conv2d", h.dct()) + h.dct() + h.BUILD, "BUILD on a PersistentRecord"),
        ("ordered.pkl", h.call(h.glob("collections", "OrderedDict")) + h.dct((h.text("x"), h.TRUE)) + h.BUILD,
         "only state is a state dict's _metadata"),
        ("metadata.pkl", h.call(h.glob("collections", "OrderedDict")) + h.dct((h.text("_metadata"), h.TRUE)) + h.BUILD,
         "only state is a state dict's _metadata"),
        ("easydict.pkl", h.glob("dnnlib.util", "EasyDict") + h.EMPTY_TUPLE + h.NEWOBJ
         + h.dct((h.text("x"), h.TRUE)) + h.BUILD, "no state besides its items"),
    ]:
        check_refused(load_worker, write(tmp_path, seed_files, name, SNAPSHOT_WITH.encode() + payload), match)


@pytest.mark.parametrize("payload, match", [
    (h.MARK + h.inst("collections", "OrderedDict"), r"opcode b'i'"),
    (h.glob("collections", "OrderedDict") + h.MARK + b"o", r"opcode b'o'"),
    (b"\x82\x01", r"opcode b'\\x82'"),
    (h.glob("collections", "OrderedDict") + h.EMPTY_TUPLE + h.NEWOBJ, "NEWOBJ on collections.OrderedDict"),
    (h.glob("numpy", "dtype") + h.tup(h.text("V8")) + h.NEWOBJ, "NEWOBJ on numpy.dtype"),
    (h.glob("dnnlib.util", "EasyDict") + h.tup(h.text("x")) + h.NEWOBJ, "with arguments is not allowed"),
    (h.call(h.glob("dnnlib.util", "EasyDict")), "REDUCE on dnnlib.util.EasyDict"),
    (h.call(h.glob("collections", "OrderedDict"), h.lst()), "only built empty"),
    (h.call(h.glob("copyreg", "_reconstructor"), h.glob("collections", "OrderedDict"), h.glob("builtins", "object"),
            h.NONE), "_reconstructor is only allowed for a record class"),
    (h.call(h.glob("torch", "float32")), "REDUCE on 'torch.float32'|REDUCE on float32|REDUCE on dtype"),
    (h.call(h.glob("_codecs", "encode"), h.text("x"), h.text("rot13")), "latin-1"),
    (h.call(h.glob("torch._utils", "_rebuild_parameter"), h.NONE, h.TRUE, h.call(h.glob("collections", "OrderedDict"))),
     "parameter's data must be a rebuilt tensor"),
    (h.EMPTY_DICT + h.MARK + h.integer(1) + h.APPENDS, "APPENDS on a dict"),
    (h.call(h.glob("collections", "OrderedDict")) + h.text("k") + h.glob("os", "system") + h.SETITEM, "os.system"),
])
def test_calls_and_containers_are_checked(load_worker, seed_files, tmp_path, payload, match):
    """INST/OBJ/EXT are refused, NEWOBJ and REDUCE only reach the loader's own functions and records with the
    arguments they expect, and container opcodes only modify plain containers."""
    path = write(tmp_path, seed_files, "calls.pkl", SNAPSHOT_WITH.encode() + payload)
    check_refused(load_worker, path, match)


# -- 2. numpy dtypes: only plain numeric ones ----------------------------------------------------------------

@pytest.mark.parametrize("dtype, match", [
    (h.overlapping_field_dtype(), "numpy dtype 'V8' is not allowed"),
    (h.numpy_dtype("O8"), "numpy dtype 'O8' is not allowed"),
    (h.numpy_dtype("M8"), "numpy dtype 'M8' is not allowed"),
    (h.numpy_dtype("U1"), "numpy dtype 'U1' is not allowed"),
    (h.numpy_dtype("f8", h.tup(h.integer(3), h.text("|"), h.NONE, h.tup(h.text("a")),
                               h.dct((h.text("a"), h.tup(h.numpy_dtype("f8"), h.integer(1 << 40)))),
                               h.integer(8), h.integer(1), h.integer(16))), "only plain numeric dtypes"),
    (h.numpy_dtype("f8", h.tup(h.integer(3), h.text("<"), h.tup(h.numpy_dtype("f8"), h.tup(h.integer(1 << 30))),
                               h.NONE, h.NONE, h.integer(-1), h.integer(-1), h.integer(0))), "only plain numeric"),
    (h.numpy_dtype("f8", h.plain_dtype_state() + h.BUILD + h.plain_dtype_state()), "already set"),
])
def test_structured_and_foreign_numpy_dtypes(load_worker, seed_files, tmp_path, dtype, match):
    """A numpy dtype with fields, a subarray, objects, dates or text is refused before any scalar of it
    exists (a structured dtype whose field lies outside the scalar crashed the interpreter in .item())."""
    scalar = h.numpy_scalar(dtype, bytes(8))
    kwargs = h.dct((h.text("img_resolution"), h.integer(8)), (h.text("img_channels"), h.integer(3)),
                   (h.text("dropout"), scalar))
    path = write(tmp_path, seed_files, "dtype.pkl",
                 h.program(h.dct((h.text("ema"), h.network_with_init_kwargs("EDMPrecond", kwargs)))))
    check_refused(load_worker, path, match)


def test_structured_dtype_of_the_issue(load_worker, seed_files, tmp_path):
    path = write(tmp_path, seed_files, "structured.pkl", h.structured_dtype_attack())
    check_refused(load_worker, path, "numpy dtype 'V8' is not allowed", error="UnsafePickleError")


def test_numpy_scalars_need_their_exact_bytes(load_worker, seed_files, tmp_path):
    for data in (b"", bytes(7), bytes(9)):
        payload = h.numpy_scalar(h.numpy_dtype("f8", h.plain_dtype_state()), data)
        check_refused(load_worker, write(tmp_path, seed_files, "scalar.pkl", SNAPSHOT_WITH.encode() + payload),
                      "needs exactly 8 bytes")


# -- 3. names: a fixed table, nothing imported or looked up ---------------------------------------------------

@pytest.mark.parametrize("module, name", [
    ("torch", "onnx"), ("torch", "_dynamo"), ("torch", "_inductor"), ("torch", "load"), ("torch", "nn"),
    ("torch", "Tensor"), ("torch", "complex64"), ("numpy", "load"), ("numpy", "frombuffer"), ("builtins", "eval"),
    ("torch_utils.persistence", "persistent_class"), ("torch._utils", "_rebuild_qtensor"),
])
def test_names_off_the_table(load_worker, seed_files, tmp_path, module, name):
    """Refused names are never looked up: no torch submodule gets imported while refusing ``torch.onnx``."""
    for form, code in (("global", h.glob(module, name)), ("stack", h.stack_glob(module, name))):
        path = write(tmp_path, seed_files, f"{form}.pkl", SNAPSHOT_WITH.encode() + code)
        check_refused(load_worker, path, rf"refusing to load global '{module}\.{name}'", error="ForbiddenGlobalError")


# -- 4. storages, tensors and sizes ---------------------------------------------------------------------------

@pytest.mark.parametrize("archive, match", [
    (h.one_tensor_archive(1 << 24, bytes(1 << 26), (1 << 24,), compressed=True), "is compressed"),
    (h.one_tensor_archive(1 << 30, bytes(16), (4,)), "holds 16 bytes; the pickle says 1073741824 elements"),
    (h.one_tensor_archive(4, bytes(16), (4,), offset=1), "needs 5 elements; its storage holds 4"),
    (h.one_tensor_archive(4, bytes(16), (1 << 40,)), "needs 1099511627776 elements"),
    (h.one_tensor_archive(4, bytes(16), (2, 2), stride=(1 << 62, 1)), "stride must be a non-negative int"),
    (h.one_tensor_archive(4, bytes(16), (4,), stride=(-1,)), "stride must be a non-negative int"),
    (h.one_tensor_archive(4, bytes(15), (4,)), "holds 15 bytes"),
])
def test_storage_and_view_bounds_in_archives(load_worker, tmp_path, archive, match):
    """A tensor is a view inside bytes the file holds; a compressed entry (which could inflate 1000x: torch.load
    inflates this 64 MB zero tensor from a 65 kB file) is refused before it is read."""
    path = tmp_path / "training-state-1.pt"
    path.write_bytes(archive)
    check_refused(load_worker, path, match)


def test_archive_layout_is_checked(load_worker, tmp_path):
    data = h.program(h.dct((h.text("w"), h.tensor_call(h.storage_ref("0", 4), 0, (4,), (1,)))))
    entries = {"data.pkl": data, "data/0": bytes(16)}
    cases = [
        (h.torch_archive(dict(entries, byteorder=b"big")), "only little-endian"),
        (h.torch_archive({"data/0": bytes(16)}), "no archive/data.pkl"),
        (h.torch_archive({"data.pkl": data}), "has no entry archive/data/0"),
        (h.torch_archive(entries)[:-30], "damaged zip archive"),
        (h.torch_archive({"data.pkl": h.program(h.tup(h.text("storage"), h.glob("torch", "FloatStorage"), h.text("0"),
                                                      h.text("cpu"), h.integer(4), h.integer(0)) + h.BINPERSID)}),
         "is not a storage reference"),
        (h.torch_archive({"data.pkl": h.program(h.tup(h.text("storage"), h.glob("torch", "DoubleStorage"),
                                                      h.text("0"), h.text("cpu"), h.integer(2)) + h.BINPERSID
                                                + h.storage_ref("0", 4)) , "data/0": bytes(16)}),
         "used as torch.float64 and as torch.float32"),
    ]
    dup = h.torch_archive(entries).replace(b"archive/data/0", b"archive/data.pkl")
    cases.append((dup, "two entries of the same name|damaged zip"))
    for i, (archive, match) in enumerate(cases):
        path = tmp_path / f"archive{i}.pt"
        path.write_bytes(archive)
        check_refused(load_worker, path, match)


def test_oversized_claims_in_pickles(load_worker, seed_files, tmp_path):
    """Length fields are checked against the bytes left; integers have a size limit."""
    for name, payload, match in [
        ("bytes8.pkl", b"\x8e" + struct.pack("<Q", 1 << 62), "the file ends before"),
        ("bytes.pkl", b"B" + struct.pack("<I", (1 << 32) - 1), "the file ends before"),
        ("long4.pkl", b"\x8b" + struct.pack("<i", 1 << 30), "integer of 1073741824 bytes is not allowed"),
        ("text.pkl", b"L" + b"9" * 100000 + b"\n", "not terminated by a newline within its limit"),
        ("frame.pkl", b"\x95" + struct.pack("<Q", 1 << 40), "FRAME claims more bytes"),
    ]:
        check_refused(load_worker, write(tmp_path, seed_files, name, h.program(payload)), match)


def test_broadcast_view_cannot_pose_as_a_weight(load_worker, seed_files, tmp_path):
    """A stride-0 view is a legal tensor, but as a network weight it would claim more elements than the file
    stores (and later copies would allocate them)."""
    from tests.checkpoint.edm_standin import dumps_edm_pickle
    from tests.checkpoint.seeds import tiny_network

    net = tiny_network()
    conv = net.model.dec["4x4_aux_conv"]
    conv.weight.data = conv.weight.data[:1, :1, :1, :1].clone().expand(3, 8, 3, 3)  # a storage of one element
    path = write(tmp_path, seed_files, "broadcast.pkl", dumps_edm_pickle({"ema": net}))
    check_refused(load_worker, path, r"weight model\.dec\.4x4_aux_conv\.weight has 216 elements but its storage")


# -- 5. hashing, memory and nesting ---------------------------------------------------------------------------

@pytest.mark.parametrize("data, match", [
    (h.deep_key_attack(200_000), "a tuple as a dict key"),
    (h.colliding_int_keys(20_000), "an int as a dict key|a int as a dict key|2\\*\\*61"),
    (h.program(h.EMPTY_SET + h.MARK + h.number(0.5) + h.ADDITEMS), "a float as a dict key|set item"),
    (h.amplified_set(2000, 20_000), "more memory than it holds"),
])
def test_hashing_and_memory_attacks(load_worker, seed_files, tmp_path, data, match):
    """Keys are cheap to hash (a 200000-deep tuple key overflows the C stack when hashed, 20000 ints with one
    hash take 2e8 comparisons), and calls on memoised values cannot multiply the file's size."""
    reply = check_refused(load_worker, write(tmp_path, seed_files, "keys.pkl", data), match)
    assert reply["seconds"] < 20 and reply["peak_rss_growth_mb"] < 200, reply


def test_module_trees_must_be_trees(load_worker, seed_files, tmp_path):
    check_refused(load_worker, write(tmp_path, seed_files, "cycle.pkl", h.module_cycle()), "appears twice")
    shared = h.persistent_obj("Linear", h.dct()) + h.put(0)
    for level in range(1, 26):  # 2**25 paths through 25 records, if each were visited once per path
        shared += h.POP + h.persistent_obj("Linear", h.dct((h.text("_modules"), h.dct(
            (h.text("a"), h.get(level - 1)), (h.text("b"), h.get(level - 1)))))) + h.put(level)
    path = write(tmp_path, seed_files, "shared.pkl", h.program(h.dct((h.text("ema"), h.persistent_obj(
        "SongUNet", h.dct((h.text("_modules"), h.dct((h.text("m"), shared)))))))))
    check_refused(load_worker, path, "appears twice")


# -- 6. constructor arguments ---------------------------------------------------------------------------------

@pytest.mark.parametrize("class_name, kwargs, match", [
    ("EDMPrecond", {"num_blocks": h.integer(10 ** 9)}, "1 levels of 1000000000 blocks|levels of 1000000000"),
    ("EDMPrecond", {"channel_mult": h.lst(*[h.integer(1)] * 64)}, "64 levels"),
    ("EDMPrecond", {"channel_mult": h.lst(*[h.integer(1)] * 65)}, "lists of at most 64"),
    ("iDDPMPrecond", {"M": h.integer(10 ** 10)}, "M=10000000000 does not match its stored table"),
    ("EDMPrecond", {"dropout": h.persistent_obj("Linear", h.dct())},
     "constructor argument 'dropout' is PersistentRecord"),
    ("EDMPrecond", {"model_channels": h.lst(h.lst())}, "constructor argument 'model_channels'"),
    ("EDMPrecond", {"model_type": h.text("Mystery")}, "cannot build EDMPrecond"),
])
def test_constructor_arguments_are_checked_before_building(load_worker, seed_files, tmp_path, class_name, kwargs,
                                                           match):
    """What a file says about the architecture cannot make construction loop for ever or allocate."""
    pairs = [(h.text("img_resolution"), h.integer(8)), (h.text("img_channels"), h.integer(3))]
    pairs += [(h.text(k), v) for k, v in kwargs.items()]
    path = write(tmp_path, seed_files, "kwargs.pkl",
                 h.program(h.dct((h.text("ema"), h.network_with_init_kwargs(class_name, h.dct(*pairs))))))
    reply = check_refused(load_worker, path, match)
    assert reply["seconds"] < 10, reply


# -- 7. safetensors and legacy files --------------------------------------------------------------------------

def test_damaged_safetensors(load_worker, seed_files, tmp_path):
    for name, reader in (("network.safetensors", "checkpoint"), ("training-state.safetensors", "state")):
        data = seed_files[name].read_bytes()
        n = struct.unpack("<Q", data[:8])[0]
        for label, damaged in (("truncated", data[:-7]), ("no body", data[:8 + n]), ("header", data[:8 + n // 2]),
                               ("length", struct.pack("<Q", 1 << 40) + data[8:]), ("empty", b"")):
            path = tmp_path / label / name
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(damaged)
            check_refused(load_worker, path, "not a readable (safetensors file|training state)", reader=reader)


def test_safetensors_with_foreign_metadata(load_worker, tmp_path):
    import json

    import torch
    from safetensors.torch import save_file

    for label, metadata, match in [
        ("json", {"sidkernels_config": "{"}, "not valid JSON"),
        ("list", {"sidkernels_config": "[1]"}, "must be a JSON object"),
        ("fields", {"sidkernels_config": json.dumps({"format": "sidkernels-network/1"})}, "needs a class_name"),
        ("deep", {"sidkernels_config": "[" * 100000}, "not valid JSON"),
    ]:
        path = tmp_path / label / "net.safetensors"
        path.parent.mkdir()
        save_file({"w": torch.zeros(2)}, str(path), metadata=metadata)
        check_refused(load_worker, path, match)
    for label, text, match in [("state-json", "{", "not valid JSON"), ("state-list", "[]", "not a sidkernels"),
                               ("state-fields", json.dumps({"format": "sidkernels-training-state/1"}),
                                "lacks counters")]:
        path = tmp_path / label / "training-state-000000001.safetensors"
        path.parent.mkdir()
        save_file({"w": torch.zeros(2)}, str(path), metadata={"sidkernels_state": text})
        check_refused(load_worker, path, match, reader="state")


def test_legacy_torch_save_is_named(load_worker, tmp_path):
    import torch

    path = tmp_path / "old.pt"
    torch.save({"x": torch.zeros(2)}, path, _use_new_zipfile_serialization=False)
    check_refused(load_worker, path, "legacy torch.save file")


def test_protocol_0_text_is_decoded_without_imports(load_worker, tmp_path):
    """Found by the fuzz harness: decoding UNICODE by codec name imported encodings.raw_unicode_escape."""
    import pickle

    path = tmp_path / "text.pkl"
    path.write_bytes(pickle.dumps({"ema": "ünï\\u1234"}, protocol=0))
    check_refused(load_worker, path, "expected a pickled module|no network under")
