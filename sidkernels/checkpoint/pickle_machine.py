"""A pickle interpreter that only builds data: our own implementation of the pickle virtual machine, so that
every opcode's effect is decided here rather than by ``pickle.Unpickler``.

The machine reads protocols 0-5 and differs from ``pickle`` where pickle would let the file reach code or
shared state:

* **globals** (GLOBAL, STACK_GLOBAL) are looked up in a fixed table given by the caller (``(module, name) ->``
  :class:`Entry`); nothing is imported, nothing is read off a module with ``getattr``.  A callable entry is
  pushed as a fresh, inert :class:`Reference`, never as the function or class itself, so no opcode can reach
  an object that the rest of the process uses;
* **calls**: REDUCE calls only ``call`` entries, NEWOBJ/NEWOBJ_EX only ``new`` entries (with no
  arguments); INST, OBJ and the extension registry (EXT1/2/4) are refused;
* **BUILD** applies state only to :class:`Record` objects (the loader's own records), through their
  :meth:`Record.set_state`, which checks it; BUILD on anything else is refused, so state cannot be
  ``setattr``-ed onto a function, a class or a module;
* **APPEND(S)** only on plain lists, **SETITEM(S)** only on dicts whose ``__setitem__`` is dict's or
  OrderedDict's, **ADDITEMS** only on plain sets (``pickle`` calls the target's own ``append`` / ``extend`` /
  ``add`` / ``__setitem__``, whatever the object is);
* **dict keys and set items** must be ``str``, ``bytes``, ``bool``, ``None`` or an int below ``2**61 - 1`` in
  magnitude: types whose hashes are cheap, non-recursive and (for ints in that range) all distinct, so a file
  cannot make hashing recurse deeply (which crashes the interpreter) or make inserting quadratic;
* **persistent ids** (BINPERSID) go to the ``persistent_load`` given by the caller; none means refused;
* **sizes** are checked against the bytes actually left before anything is read or allocated; integers
  are limited to 32 bytes (LONG1/LONG4) or 80 digits (INT/LONG); out-of-band buffers are refused;
* **memory**: what the opcodes themselves create is linear in the input (every opcode reads its arguments
  from the file or the stack), but a call can copy what a memo reference names; the sizes of what calls
  return are therefore charged against a budget of ``2 * input size + 1 MiB`` items/bytes.

Every refusal raises :class:`~sidkernels.checkpoint.errors.UnsafePickleError` (or
:class:`~sidkernels.checkpoint.errors.ForbiddenGlobalError` for a name off the table) naming the opcode and
its offset; a file that ends early or is malformed raises :class:`~sidkernels.checkpoint.errors.CheckpointError`.
"""
from __future__ import annotations

import codecs
import collections
import dataclasses
import io
import struct
from typing import Any, Callable, Mapping

from sidkernels.checkpoint.errors import CheckpointError, ForbiddenGlobalError, UnsafePickleError, describe, same

HIGHEST_PROTOCOL = 5
MAX_INT_BYTES = 32
MAX_DIGITS = 80  # a 32-byte int has at most 78 digits
MAX_NAME = 256
#: hashes of ints below this in magnitude are the ints themselves (CPython's modulus for int hashing)
KEY_INT_LIMIT = (1 << 61) - 1
_SETITEM_TARGETS = (dict.__setitem__, collections.OrderedDict.__setitem__)


class Record:
    """Base of the loader's own record objects: the only objects BUILD may apply state to."""

    def set_state(self, state) -> None:
        """Apply a BUILD state; records that take none refuse it."""
        raise UnsafePickleError(f"BUILD on a {type(self).__name__} is not allowed")


@dataclasses.dataclass(frozen=True)
class Entry:
    """A name a pickle may use.  ``kind``: ``"call"`` (REDUCE calls ``target``), ``"new"`` (NEWOBJ with no
    arguments calls ``target()``), ``"name"`` (a bare marker, e.g. a base class named as an argument) or
    ``"constant"`` (``target`` is an immutable value, pushed as it is)."""

    kind: str
    target: Any = None


class Reference:
    """What GLOBAL pushes for a non-constant entry: an inert token, made afresh for each lookup."""

    __slots__ = ("name", "entry")

    def __init__(self, name: str, entry: Entry):
        self.name, self.entry = name, entry

    def __repr__(self):
        return f"<pickled reference to {self.name}>"


def footprint(value) -> int:
    """The size charged for a call's result: its length for sized built-in values, else 1."""
    if isinstance(value, (str, bytes, bytearray, list, tuple, dict, set, frozenset)):
        return len(value)
    return 1


def check_key(value, where: str):
    """``value`` if it may be a dict key or a set item (see the module docstring), else refuse."""
    kind = type(value)
    if kind in (str, bytes, bool, type(None)) or (kind is int and -KEY_INT_LIMIT < value < KEY_INT_LIMIT):
        return value
    raise UnsafePickleError(f"{where}: a {describe(value)} as a dict key or set item is not allowed "
                            "(str, bytes, bool, None or an int below 2**61 - 1 only)")


class _Mark:
    pass


class PickleMachine:
    """Run one pickle from ``stream`` (``size`` bytes at most) and return its result (:meth:`load`)."""

    def __init__(self, stream, size: int, table: Mapping[tuple[str, str], Entry], *,
                 persistent_load: Callable[[Any], Any] | None = None, source: str = "pickle"):
        self._read, self._readline = stream.read, stream.readline
        self._size = self._left = size
        self._table, self._persistent_load, self._source = table, persistent_load, source
        self._budget = 2 * size + (1 << 20)
        self.stack: list = []
        self._metastack: list[list] = []
        self.memo: dict[int, Any] = {}
        self._pos = 0

    # -- reading -------------------------------------------------------------------------------------------

    def _fail(self, message: str, error=UnsafePickleError):
        raise error(f"{self._source}: {message} (opcode at byte {self._pos})")

    def _take(self, n: int) -> bytes:
        if n < 0 or n > self._left:
            self._fail(f"the file ends before the {n} bytes an opcode needs ({self._left} left)", CheckpointError)
        data = self._read(n)
        if len(data) != n:
            self._fail("the file ended while it was being read", CheckpointError)
        self._left -= n
        return data

    def _line(self, limit: int | None = None) -> bytes:
        cap = self._left if limit is None else min(limit + 1, self._left)
        data = self._readline(cap)
        self._left -= len(data)
        if not data.endswith(b"\n"):
            self._fail("a text argument is not terminated by a newline within its limit", CheckpointError)
        return data[:-1]

    def _uint(self, fmt: str) -> int:
        return struct.unpack(fmt, self._take(struct.calcsize(fmt)))[0]

    # -- the stack -----------------------------------------------------------------------------------------

    def _pop(self):
        if not self.stack:
            self._fail("the stack is empty", CheckpointError)
        return self.stack.pop()

    def _top(self):
        if not self.stack:
            self._fail("the stack is empty", CheckpointError)
        return self.stack[-1]

    def _pop_mark(self) -> list:
        if not self._metastack:
            self._fail("no MARK to pop to", CheckpointError)
        items, self.stack = self.stack, self._metastack.pop()
        return items

    def _key(self, value, opcode: str):
        try:
            return check_key(value, opcode)
        except UnsafePickleError as err:
            self._fail(str(err))

    def _charge(self, value) -> None:
        self._budget -= footprint(value)
        if self._budget < 0:
            self._fail("the file asks for more memory than it holds (a call repeats a memoised value too often)")

    # -- running -------------------------------------------------------------------------------------------

    def load(self):
        """The pickle's result.  Any exception an opcode raises that is not a CheckpointError is re-raised as
        a CheckpointError naming the opcode's offset."""
        dispatch = _DISPATCH
        while True:
            self._pos = self._size - self._left
            code = self._take(1)[0]
            handler = dispatch.get(code)
            if handler is None:
                self._fail(f"unknown or refused opcode {bytes([code])!r}")
            try:
                if handler(self) is _STOP:
                    return self._pop()
            except (CheckpointError, MemoryError):
                raise
            except (TypeError, ValueError, OverflowError, struct.error) as err:
                self._fail(f"malformed argument ({type(err).__name__}: {str(err)[:200]})", CheckpointError)

    # opcodes: data

    def op_mark(self):
        self._metastack.append(self.stack)
        self.stack = []

    def op_stop(self):
        return _STOP

    def op_pop(self):
        if self.stack:
            self.stack.pop()
        else:
            self._pop_mark()

    def op_pop_mark(self):
        self._pop_mark()

    def op_dup(self):
        self.stack.append(self._top())

    def op_float(self):
        self.stack.append(float(self._line(MAX_DIGITS * 2).decode("ascii")))

    def op_binfloat(self):
        self.stack.append(struct.unpack(">d", self._take(8))[0])

    def op_int(self):
        text = self._line(MAX_DIGITS).decode("ascii")
        self.stack.append(False if text == "00" else True if text == "01" else int(text, 10))

    def op_long(self):
        text = self._line(MAX_DIGITS).decode("ascii")
        self.stack.append(int(text[:-1] if text.endswith("L") else text, 10))

    def op_binint(self):
        self.stack.append(self._uint("<i"))

    def op_binint1(self):
        self.stack.append(self._take(1)[0])

    def op_binint2(self):
        self.stack.append(self._uint("<H"))

    def _long(self, n: int):
        if n > MAX_INT_BYTES:
            self._fail(f"an integer of {n} bytes is not allowed (at most {MAX_INT_BYTES})")
        self.stack.append(int.from_bytes(self._take(n), "little", signed=True))

    def op_long1(self):
        self._long(self._take(1)[0])

    def op_long4(self):
        self._long(self._uint("<i"))

    def op_none(self):
        self.stack.append(None)

    def op_newtrue(self):
        self.stack.append(True)

    def op_newfalse(self):
        self.stack.append(False)

    def op_string(self):
        data = self._line().rstrip()
        if len(data) < 2 or data[0] != data[-1] or data[0] not in b"\"'":
            self._fail("STRING argument is not quoted", CheckpointError)
        self.stack.append(codecs.escape_decode(data[1:-1])[0].decode("utf-8"))

    def op_binstring(self):
        self.stack.append(self._take(self._uint("<i")).decode("utf-8"))

    def op_short_binstring(self):
        self.stack.append(self._take(self._take(1)[0]).decode("utf-8"))

    def op_unicode(self):
        # the codec function itself: decoding by codec name would import encodings.raw_unicode_escape
        self.stack.append(codecs.raw_unicode_escape_decode(self._line())[0])

    def _text(self, n: int):
        self.stack.append(self._take(n).decode("utf-8", "surrogatepass"))

    def op_binunicode(self):
        self._text(self._uint("<I"))

    def op_short_binunicode(self):
        self._text(self._take(1)[0])

    def op_binunicode8(self):
        self._text(self._uint("<Q"))

    def op_binbytes(self):
        self.stack.append(self._take(self._uint("<I")))

    def op_short_binbytes(self):
        self.stack.append(self._take(self._take(1)[0]))

    def op_binbytes8(self):
        self.stack.append(self._take(self._uint("<Q")))

    def op_bytearray8(self):
        self.stack.append(bytearray(self._take(self._uint("<Q"))))

    # opcodes: containers

    def op_empty_tuple(self):
        self.stack.append(())

    def op_tuple(self):
        items = tuple(self._pop_mark())  # before naming self.stack: popping the mark replaces it
        self.stack.append(items)

    def _tuple_n(self, n: int):
        if len(self.stack) < n:
            self._fail(f"TUPLE{n} needs {n} items on the stack", CheckpointError)
        items = tuple(self.stack[-n:])
        del self.stack[-n:]
        self.stack.append(items)

    def op_tuple1(self):
        self._tuple_n(1)

    def op_tuple2(self):
        self._tuple_n(2)

    def op_tuple3(self):
        self._tuple_n(3)

    def op_empty_list(self):
        self.stack.append([])

    def op_list(self):
        items = self._pop_mark()
        self.stack.append(items)

    def _list_target(self, opcode: str) -> list:
        target = self._top()
        if type(target) is not list:
            self._fail(f"{opcode} on a {describe(target)} is not allowed (plain lists only)")
        return target

    def op_append(self):
        value = self._pop()
        self._list_target("APPEND").append(value)

    def op_appends(self):
        items = self._pop_mark()
        self._list_target("APPENDS").extend(items)

    def op_empty_dict(self):
        self.stack.append({})

    def op_dict(self):
        items = self._pop_mark()
        if len(items) % 2:
            self._fail("DICT needs key/value pairs", CheckpointError)
        self.stack.append({self._key(items[i], "DICT"): items[i + 1] for i in range(0, len(items), 2)})

    def _set_items(self, opcode: str, items: list):
        target = self._top()
        if not isinstance(target, dict) or type(target).__setitem__ not in _SETITEM_TARGETS:
            self._fail(f"{opcode} on a {describe(target)} is not allowed (dicts only)")
        if len(items) % 2:
            self._fail(f"{opcode} needs key/value pairs", CheckpointError)
        for i in range(0, len(items), 2):
            target[self._key(items[i], opcode)] = items[i + 1]

    def op_setitem(self):
        value = self._pop()
        key = self._pop()
        self._set_items("SETITEM", [key, value])

    def op_setitems(self):
        self._set_items("SETITEMS", self._pop_mark())

    def op_empty_set(self):
        self.stack.append(set())

    def op_additems(self):
        items = self._pop_mark()
        target = self._top()
        if type(target) is not set:
            self._fail(f"ADDITEMS on a {describe(target)} is not allowed (plain sets only)")
        target.update(self._key(item, "ADDITEMS") for item in items)

    def op_frozenset(self):
        items = frozenset(self._key(item, "FROZENSET") for item in self._pop_mark())
        self.stack.append(items)

    # opcodes: memo

    def _put(self, index: int):
        self.memo[index] = self._top()

    def op_put(self):
        index = int(self._line(MAX_DIGITS).decode("ascii"), 10)
        if index < 0:
            self._fail("negative PUT index", CheckpointError)
        self._put(index)

    def op_binput(self):
        self._put(self._take(1)[0])

    def op_long_binput(self):
        self._put(self._uint("<I"))

    def op_memoize(self):
        self._put(len(self.memo))

    def _get(self, index: int):
        if index not in self.memo:
            self._fail(f"memo entry {index} was never stored", CheckpointError)
        self.stack.append(self.memo[index])

    def op_get(self):
        self._get(int(self._line(MAX_DIGITS).decode("ascii"), 10))

    def op_binget(self):
        self._get(self._take(1)[0])

    def op_long_binget(self):
        self._get(self._uint("<I"))

    # opcodes: names, calls, state

    def _lookup(self, module, name):
        if type(module) is not str or type(name) is not str:
            self._fail(f"STACK_GLOBAL needs two strings, got {describe(module)} and {describe(name)}")
        entry = self._table.get((module, name))
        if entry is None:
            self._fail(f"refusing to load global {module + '.' + name!r}: only the names of EDM/SiD checkpoints "
                       "are resolved, from the loader's own table, and nothing is ever imported or called",
                       ForbiddenGlobalError)
        self.stack.append(entry.target if entry.kind == "constant" else Reference(f"{module}.{name}", entry))

    def op_global(self):
        module = self._line(MAX_NAME).decode("utf-8")
        self._lookup(module, self._line(MAX_NAME).decode("utf-8"))

    def op_stack_global(self):
        name = self._pop()
        self._lookup(self._pop(), name)

    def _entry(self, value, kind: str, opcode: str) -> Entry:
        if not isinstance(value, Reference) or value.entry.kind != kind:
            target = value.name if isinstance(value, Reference) else describe(value)
            self._fail(f"{opcode} on {target} is not allowed")
        return value.entry

    def op_reduce(self):
        args = self._pop()
        reference = self._pop()
        entry = self._entry(reference, "call", "REDUCE")
        if type(args) is not tuple:
            self._fail(f"REDUCE arguments must be a tuple, got {describe(args)}", CheckpointError)
        try:
            result = entry.target(*args)
        except CheckpointError as err:  # the call's own refusal, placed in the file
            raise type(err)(f"{self._source}: {reference.name}: {err} (opcode at byte {self._pos})") from None
        self._charge(result)
        self.stack.append(result)

    def _new(self, cls, args, kwargs, opcode: str):
        entry = self._entry(cls, "new", opcode)
        if not same(args, ()) or not (same(kwargs, {}) or kwargs is None):
            self._fail(f"{opcode} of {cls.name} with arguments is not allowed")
        self.stack.append(entry.target())

    def op_newobj(self):
        args = self._pop()
        self._new(self._pop(), args, None, "NEWOBJ")

    def op_newobj_ex(self):
        kwargs = self._pop()
        args = self._pop()
        self._new(self._pop(), args, kwargs, "NEWOBJ_EX")

    def op_build(self):
        state = self._pop()
        target = self._top()
        if not isinstance(target, Record):
            name = target.name if isinstance(target, Reference) else describe(target)
            self._fail(f"BUILD on {name} is not allowed (only on the loader's own records)")
        target.set_state(state)

    def op_binpersid(self):
        pid = self._pop()
        if self._persistent_load is None:
            self._fail("persistent ids are not allowed in this pickle")
        self.stack.append(self._persistent_load(pid))

    # opcodes: framing

    def op_proto(self):
        version = self._take(1)[0]
        if version > HIGHEST_PROTOCOL:
            self._fail(f"pickle protocol {version} is not supported", CheckpointError)

    def op_frame(self):
        if self._uint("<Q") > self._left:
            self._fail("a FRAME claims more bytes than the file holds", CheckpointError)


_STOP = object()
_OPCODES = {
    b"(": "mark", b".": "stop", b"0": "pop", b"1": "pop_mark", b"2": "dup", b"F": "float", b"I": "int",
    b"J": "binint", b"K": "binint1", b"L": "long", b"M": "binint2", b"N": "none", b"Q": "binpersid",
    b"R": "reduce", b"S": "string", b"T": "binstring", b"U": "short_binstring", b"V": "unicode",
    b"X": "binunicode", b"a": "append", b"b": "build", b"c": "global", b"d": "dict", b"}": "empty_dict",
    b"e": "appends", b"g": "get", b"h": "binget", b"j": "long_binget", b"l": "list", b"]": "empty_list",
    b"p": "put", b"q": "binput", b"r": "long_binput", b"s": "setitem", b"t": "tuple", b")": "empty_tuple",
    b"u": "setitems", b"G": "binfloat", b"\x80": "proto", b"\x81": "newobj", b"\x85": "tuple1",
    b"\x86": "tuple2", b"\x87": "tuple3", b"\x88": "newtrue", b"\x89": "newfalse", b"\x8a": "long1",
    b"\x8b": "long4", b"B": "binbytes", b"C": "short_binbytes", b"\x8c": "short_binunicode",
    b"\x8d": "binunicode8", b"\x8e": "binbytes8", b"\x8f": "empty_set", b"\x90": "additems", b"\x91": "frozenset",
    b"\x92": "newobj_ex", b"\x93": "stack_global", b"\x94": "memoize", b"\x95": "frame", b"\x96": "bytearray8",
}
# refused, by being absent: PERSID (P), INST (i), OBJ (o), EXT1/2/4 (\x82-\x84), NEXT_BUFFER and
# READONLY_BUFFER (\x97, \x98)
_DISPATCH = {code[0]: getattr(PickleMachine, f"op_{name}") for code, name in _OPCODES.items()}


def run(stream, size: int, table: Mapping[tuple[str, str], Entry], **kwargs):
    """The result of the pickle at the current position of ``stream`` (at most ``size`` bytes follow)."""
    return PickleMachine(stream, size, table, **kwargs).load()


def run_bytes(data: bytes, table: Mapping[tuple[str, str], Entry], **kwargs):
    return run(io.BytesIO(data), len(data), table, **kwargs)
