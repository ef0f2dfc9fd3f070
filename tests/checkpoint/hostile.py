"""Hostile checkpoint files, written opcode by opcode the way an attacker would (no pickler involved).

The assembler functions return raw pickle opcodes (bytes); :func:`program` wraps a body into a complete
protocol-2 pickle.  Each ``*_attack`` builder returns the bytes of one file of an attack class the loader
must refuse; :func:`into_snapshot` splices an attack into a *valid* EDM snapshot, so the file still holds a
working teacher next to the payload (the dangerous case: the load looks successful).
"""
from __future__ import annotations

import struct

MARK, STOP, POP, DUP = b"(", b".", b"0", b"2"
NONE, TRUE, FALSE = b"N", b"\x88", b"\x89"
EMPTY_DICT, EMPTY_LIST, EMPTY_TUPLE, EMPTY_SET = b"}", b"]", b")", b"\x8f"
TUPLE, TUPLE1, TUPLE2 = b"t", b"\x85", b"\x86"
SETITEM, SETITEMS, APPEND, APPENDS, ADDITEMS = b"s", b"u", b"a", b"e", b"\x90"
BUILD, REDUCE, NEWOBJ, NEWOBJ_EX, STACK_GLOBAL = b"b", b"R", b"\x81", b"\x92", b"\x93"
BINPERSID = b"Q"


def glob(module: str, name: str) -> bytes:
    """GLOBAL: push ``module.name`` (text form, protocol 0-3)."""
    return b"c" + f"{module}\n{name}\n".encode()


def stack_glob(module: str, name: str) -> bytes:
    """STACK_GLOBAL: the protocol-4 form, names taken from the stack."""
    return text(module) + text(name) + STACK_GLOBAL


def inst(module: str, name: str) -> bytes:
    """INST: protocol 0's 'call this class with the items since MARK' (the caller pushes MARK + args)."""
    return b"i" + f"{module}\n{name}\n".encode()


def text(s: str) -> bytes:
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def raw(b: bytes) -> bytes:
    return b"B" + struct.pack("<I", len(b)) + b


def integer(i: int) -> bytes:
    if -(1 << 31) <= i < (1 << 31):
        return b"J" + struct.pack("<i", i)
    n = (i.bit_length() + 8) // 8
    return b"\x8a" + bytes([n]) + i.to_bytes(n, "little", signed=True)


def number(x: float) -> bytes:
    return b"G" + struct.pack(">d", x)


def put(index: int) -> bytes:
    return b"r" + struct.pack("<I", index)


def get(index: int) -> bytes:
    return b"j" + struct.pack("<I", index)


def tup(*items: bytes) -> bytes:
    return MARK + b"".join(items) + TUPLE


def dct(*pairs: tuple[bytes, bytes]) -> bytes:
    return EMPTY_DICT + (MARK + b"".join(k + v for k, v in pairs) + SETITEMS if pairs else b"")


def lst(*items: bytes) -> bytes:
    return EMPTY_LIST + (MARK + b"".join(items) + APPENDS if items else b"")


def call(func: bytes, *args: bytes) -> bytes:
    """REDUCE: ``func(*args)``."""
    return func + tup(*args) + REDUCE


def program(body: bytes) -> bytes:
    """A complete protocol-2 pickle whose result is what ``body`` leaves on the stack."""
    return b"\x80\x02" + body + STOP


def persistent_obj(class_name: str, state: bytes) -> bytes:
    """An EDM persistence record ``_reconstruct_persistent_obj({type: class, class_name, state, ...})``."""
    meta = dct((text("type"), text("class")), (text("version"), integer(6)), (text("module_src"), text("")),
               (text("class_name"), text(class_name)), (text("state"), state))
    return call(glob("torch_utils.persistence", "_reconstruct_persistent_obj"), meta)


def into_snapshot(snapshot: bytes, key: str, value: bytes) -> bytes:
    """``snapshot`` (a pickled dict, as EDM writes it) with one more item ``key: value`` set last, i.e. after
    the network's tensors were rebuilt."""
    if not snapshot.endswith(STOP):
        raise ValueError("snapshot must be a complete pickle")
    return snapshot[:-1] + text(key) + value + SETITEM + STOP


# -- attack classes ------------------------------------------------------------------------------------------

def neg_bit_defaults() -> bytes:
    """``(None, {"__defaults__": ({"neg": True},)})``: BUILD's slot-state form, which ``setattr``s each item.

    Applied to ``torch._utils._rebuild_tensor_v2`` (whose last parameter ``metadata`` defaults to None) it
    makes every tensor rebuilt afterwards, by any loader in the process, carry torch's negation bit."""
    return NONE + dct((text("__defaults__"), tup(dct((text("neg"), TRUE))))) + TUPLE2


def build_on_global(module: str, name: str, state: bytes | None = None) -> bytes:
    """``module.name``, then BUILD on it (by default with :func:`neg_bit_defaults`)."""
    return glob(module, name) + (neg_bit_defaults() if state is None else state) + BUILD


def numpy_dtype(name: str, state: bytes | None = None, copy: bool = True) -> bytes:
    """``numpy.dtype(name, False, copy)``, optionally followed by BUILD with ``state``."""
    out = call(glob("numpy", "dtype"), text(name), FALSE, TRUE if copy else FALSE)
    return out + (state + BUILD if state is not None else b"")


def plain_dtype_state(byteorder: str = "<") -> bytes:
    """The state numpy pickles for a plain numeric dtype (version 3, no fields, no subarray)."""
    return tup(integer(3), text(byteorder), NONE, NONE, NONE, integer(-1), integer(-1), integer(0))


def overlapping_field_dtype(offset: int = 1 << 40) -> bytes:
    """A structured dtype of 8 bytes whose one float64 field lives ``offset`` bytes in: turning a scalar of it
    into Python values reads far outside the scalar's 8 bytes."""
    field = numpy_dtype("f8", plain_dtype_state())
    state = tup(integer(3), text("|"), NONE, tup(text("a")), dct((text("a"), tup(field, integer(offset)))),
                integer(8), integer(1), integer(16))
    return numpy_dtype("V8", state)


def numpy_scalar(dtype: bytes, data: bytes) -> bytes:
    return call(glob("numpy._core.multiarray", "scalar"), dtype, raw(data))


def network_with_init_kwargs(class_name: str, init_kwargs: bytes, modules: bytes | None = None) -> bytes:
    """A persistence record of a network whose ``_init_kwargs`` are ``init_kwargs`` (an assembled dict)."""
    state = dct((text("_init_args"), EMPTY_TUPLE), (text("_init_kwargs"), init_kwargs),
                (text("_parameters"), dct()), (text("_buffers"), dct()),
                (text("_modules"), dct() if modules is None else modules))
    return persistent_obj(class_name, state)


def structured_dtype_attack() -> bytes:
    """An EDM snapshot whose teacher's ``dropout`` keyword is a scalar of :func:`overlapping_field_dtype`."""
    scalar = numpy_scalar(overlapping_field_dtype(), bytes(8))
    kwargs = dct((text("img_resolution"), integer(8)), (text("img_channels"), integer(3)),
                 (text("dropout"), scalar))
    return program(dct((text("ema"), network_with_init_kwargs("EDMPrecond", kwargs))))


def deep_tuple(depth: int) -> bytes:
    """``((((),),),)`` nested ``depth`` times: hashing it recurses ``depth`` deep in C."""
    return EMPTY_TUPLE + TUPLE1 * depth


def deep_key_attack(depth: int = 1_000_000) -> bytes:
    """A dict whose key is a :func:`deep_tuple` (inserting it hashes the key)."""
    return program(EMPTY_DICT + deep_tuple(depth) + integer(1) + SETITEM)


def colliding_int_keys(n: int) -> bytes:
    """A dict of ``n`` int keys that all have the same hash (multiples of the int-hash modulus 2**61-1):
    building it takes n**2/2 key comparisons."""
    modulus = (1 << 61) - 1
    return program(EMPTY_DICT + MARK + b"".join(integer(k * modulus) + NONE for k in range(1, n + 1)) + SETITEMS)


def amplified_set(items: int, copies: int) -> bytes:
    """One list of ``items`` strings turned into a set ``copies`` times (memo references are free, each set is
    new memory): a small file asking for items * copies set entries."""
    body = lst(*(text(f"{i}") for i in range(items))) + put(0) + POP
    body += EMPTY_LIST + MARK + call(glob("builtins", "set"), get(0)) * copies + APPENDS
    return program(body)


def module_cycle() -> bytes:
    """A network record whose ``_modules`` contains the record itself."""
    state = (EMPTY_DICT + put(1) + MARK + text("_init_kwargs") + dct() + text("_parameters") + dct()
             + text("_buffers") + dct() + text("_modules") + EMPTY_DICT + put(2) + SETITEMS)
    record = persistent_obj("SongUNet", state) + put(3)
    # _modules["self"] = the record (the memo entries are the same objects, so this closes the loop)
    close = get(2) + text("self") + get(3) + SETITEM + POP
    return program(dct((text("ema"), record + close)))


def tensor_call(storage: bytes, offset: int, size: tuple, stride: tuple) -> bytes:
    """``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())``."""
    return call(glob("torch._utils", "_rebuild_tensor_v2"), storage, integer(offset),
                tup(*map(integer, size)), tup(*map(integer, stride)), FALSE,
                call(glob("collections", "OrderedDict")))


def storage_ref(key: str, numel: int, storage_type: str = "FloatStorage") -> bytes:
    """A ``torch.save`` persistent storage id ``('storage', torch.<storage_type>, key, 'cpu', numel)``."""
    return tup(text("storage"), glob("torch", storage_type), text(key), text("cpu"), integer(numel)) + BINPERSID


def torch_archive(entries: dict[str, bytes], compressed: tuple[str, ...] = (), folder: str = "archive") -> bytes:
    """A zip in ``torch.save``'s layout: ``entries`` (names relative to ``folder``), stored uncompressed except
    those named in ``compressed`` (deflated)."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in entries.items():
            method = zipfile.ZIP_DEFLATED if name in compressed else zipfile.ZIP_STORED
            z.writestr(zipfile.ZipInfo(f"{folder}/{name}", date_time=(1980, 1, 1, 0, 0, 0)), data, method)
    return buf.getvalue()


def one_tensor_archive(numel: int, stored_bytes: bytes, size: tuple, stride: tuple = (1,), offset: int = 0,
                       compressed: bool = False) -> bytes:
    """A ``torch.save`` archive of ``{"w": tensor}``: a float32 storage of ``numel`` elements whose entry holds
    ``stored_bytes``, viewed with ``size`` / ``stride`` / ``offset``."""
    data = program(dct((text("w"), tensor_call(storage_ref("0", numel), offset, size, stride))))
    return torch_archive({"data.pkl": data, "byteorder": b"little", "data/0": stored_bytes, "version": b"3\n"},
                         compressed=("data/0",) if compressed else ())
