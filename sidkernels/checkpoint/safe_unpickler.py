"""Reading EDM / SiD pickles without running anything from them (docs/checkpoint-formats.md).

EDM's persistence layer pickles every network object as ``_reconstruct_persistent_obj(meta)`` where ``meta``
holds the *source code* of the defining module, the class name and the object's ``__dict__``; the normal
loader ``exec``s that source.  Here the pickle runs on :mod:`~sidkernels.checkpoint.pickle_machine` with
:data:`TABLE`, the only names it resolves, each to a function or record class of this package:

* ``torch_utils.persistence._reconstruct_persistent_obj`` -> :class:`PersistentRecord` (class name, source
  text, version, state); the source is kept as a string and never executed;
* ``torch.nn.modules.container.{ModuleDict, ModuleList, Sequential}`` -> :class:`ContainerRecord` (NEWOBJ,
  then BUILD with the module's state dict);
* ``dnnlib.util.EasyDict`` -> :class:`EasyDictRecord` (a plain ``dict`` subclass);
* ``torch._utils._rebuild_tensor_v2`` / ``_rebuild_parameter`` and ``torch.storage._load_from_bytes`` ->
  the checked functions of :mod:`~sidkernels.checkpoint.tensors`;
* ``numpy.dtype`` -> :class:`NumpyDtypeRecord`, plain numeric dtypes only (bool, int8-64, uint8-64,
  float16-64; BUILD may set only the byte order), and ``numpy.(_)core.multiarray.scalar`` -> a numpy
  scalar of such a dtype from exactly its number of bytes;
* ``collections.OrderedDict`` -> :class:`OrderedDictRecord` (no arguments; BUILD may set a state dict's
  ``_metadata``), ``builtins.set`` / ``__builtin__.set`` (of a list),
  ``_codecs.encode`` (latin-1 only), ``copyreg._reconstructor`` / ``copy_reg._reconstructor`` (a record class
  with base ``builtins.object`` / ``__builtin__.object``): our own functions that build fresh objects;
* ``torch.<dtype>`` and ``torch.<X>Storage`` for the element types of
  :data:`~sidkernels.checkpoint.tensors.TORCH_DTYPES` and ``STORAGE_TYPES``: immutable values, from a fixed
  table (``torch`` itself is never asked for a name, so a lookup cannot import anything).

Any other name raises :class:`ForbiddenGlobalError`; every other refusal is an :class:`UnsafePickleError`
(both are :class:`~sidkernels.checkpoint.errors.CheckpointError` and ``pickle.UnpicklingError``).
"""
from __future__ import annotations

import collections
import dataclasses
import io
import os

import numpy as np

from sidkernels.checkpoint import pickle_machine, tensors
from sidkernels.checkpoint.errors import CheckpointError, ForbiddenGlobalError, UnsafePickleError, describe, same
from sidkernels.checkpoint.pickle_machine import Entry, Record, Reference, check_key

__all__ = ["TABLE", "ContainerRecord", "EasyDictRecord", "ForbiddenGlobalError", "NumpyDtypeRecord",
           "OrderedDictRecord", "PersistentRecord", "UnsafePickleError", "load", "load_file", "loads"]


@dataclasses.dataclass
class PersistentRecord(Record):
    """One object written by EDM's ``persistent_class`` (``meta`` of ``_reconstruct_persistent_obj``)."""

    class_name: str
    state: dict
    module_src: str = ""
    version: int | None = None


class ContainerRecord(Record):
    """Stand-in for ``torch.nn.ModuleDict`` / ``ModuleList`` / ``Sequential``: keeps the pickled state."""

    container = "Module"

    def __init__(self):
        self.state: dict | None = None

    def set_state(self, state) -> None:
        if self.state is not None:
            raise UnsafePickleError(f"{self.container} state was already set")
        if type(state) is not dict:
            raise UnsafePickleError(f"{self.container} state must be a dict, got {describe(state)}")
        self.state = state

    def __repr__(self):
        modules = (self.state or {}).get("_modules")
        return f"ContainerRecord({self.container}, modules={list(modules) if isinstance(modules, dict) else None})"


def _container(name: str) -> type:
    return type(name + "Record", (ContainerRecord,), {"container": name})


class EasyDictRecord(dict, Record):
    """Stand-in for ``dnnlib.EasyDict`` (a dict with attribute access in EDM; a plain dict here)."""

    def set_state(self, state) -> None:
        if not (state is None or same(state, {})):
            raise UnsafePickleError("an EasyDict has no state besides its items")


#: numpy dtypes a checkpoint may hold scalars of (pickled names)
NUMPY_DTYPES = ("b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8")


class NumpyDtypeRecord(Record):
    """``numpy.dtype(name)`` for a plain numeric ``name``; BUILD may only set its byte order."""

    def __init__(self, name: str):
        self.name, self.byteorder, self._built = name, "=", False

    def set_state(self, state) -> None:
        """numpy's state of a plain dtype: ``(3, byteorder, None, None, None, -1, -1, 0)`` (no subarray, no
        fields, no explicit size or alignment, no flags); anything else describes a structured or object dtype."""
        if self._built:
            raise UnsafePickleError(f"numpy dtype {self.name!r} state was already set")
        if (type(state) is not tuple or len(state) != 8 or not same(state[0], 3)
                or not any(same(state[1], order) for order in ("<", ">", "|", "="))
                or not same(state[2:], (None, None, None, -1, -1, 0))):
            raise UnsafePickleError(f"numpy dtype {self.name!r}: only plain numeric dtypes are allowed, but its "
                                    "state describes fields, a subarray, a size, an alignment or flags")
        self.byteorder, self._built = state[1], True

    def dtype(self) -> np.dtype:
        base = np.dtype(self.name)
        return base if self.byteorder in ("|", "=") else base.newbyteorder(self.byteorder)


def _numpy_dtype(name, align=False, copy=True) -> NumpyDtypeRecord:
    if type(name) is not str or name not in NUMPY_DTYPES or align is not False or type(copy) is not bool:
        raise UnsafePickleError(f"numpy dtype {describe(name)} is not allowed (plain numeric dtypes only: "
                                f"{', '.join(NUMPY_DTYPES)})")
    return NumpyDtypeRecord(name)


def _numpy_scalar(dtype, data=None):
    if not isinstance(dtype, NumpyDtypeRecord):
        raise UnsafePickleError(f"numpy scalar of {describe(dtype)} is not allowed (plain numeric dtypes only)")
    resolved = dtype.dtype()
    if type(data) is not bytes or len(data) != resolved.itemsize:
        raise UnsafePickleError(f"numpy scalar of dtype {dtype.name!r} needs exactly {resolved.itemsize} bytes, "
                                f"got {describe(data)}")
    return np.frombuffer(data, dtype=resolved, count=1)[0]


def _reconstruct_persistent_obj(meta) -> PersistentRecord:
    if type(meta) is not dict or not same(meta.get("type"), "class"):
        raise UnsafePickleError("persistent object metadata must be a dict with type 'class'")
    class_name, state, src, version = (meta.get(k) for k in ("class_name", "state", "module_src", "version"))
    if type(class_name) is not str or type(state) is not dict:
        raise UnsafePickleError(f"persistent object {describe(class_name)} has no valid class_name/state")
    return PersistentRecord(class_name=class_name, state=state, module_src=src if type(src) is str else "",
                            version=version if type(version) is int else None)


class OrderedDictRecord(collections.OrderedDict, Record):
    """``collections.OrderedDict``; as a module's ``state_dict()`` it may carry the one attribute torch gives it,
    ``_metadata`` (a dict of per-module versions), set by BUILD."""

    def set_state(self, state) -> None:
        if type(state) is not dict or set(state) - {"_metadata"} or not isinstance(state.get("_metadata", {}), dict):
            raise UnsafePickleError("an OrderedDict's only state is a state dict's _metadata dict")
        if "_metadata" in state:
            self._metadata = state["_metadata"]


def _ordered_dict(*args) -> OrderedDictRecord:
    if args:
        raise UnsafePickleError("OrderedDict is only built empty (its items follow as SETITEMS)")
    return OrderedDictRecord()


def _set(items=()) -> set:
    if type(items) not in (list, tuple):
        raise UnsafePickleError(f"set() needs a list of items, got {describe(items)}")
    return {check_key(item, "set") for item in items}


def _latin1_encode(text, encoding="utf-8") -> bytes:
    if type(text) is not str or not (same(encoding, "latin1") or same(encoding, "latin-1")):
        raise UnsafePickleError(f"_codecs.encode is only allowed for latin-1 text, got {describe(encoding)}")
    return text.encode("latin-1")


#: ``builtins`` as Python 3 names it, and as it writes it in protocols 0-2 (``fix_imports``, Python 2's names)
_BUILTINS, _COPYREG = ("builtins", "__builtin__"), ("copyreg", "copy_reg")


def _reconstructor(cls, base, state):
    """``copyreg._reconstructor(cls, object, None)`` (protocols 0 and 1): a new, empty record of ``cls``."""
    if (not isinstance(cls, Reference) or cls.entry.kind != "new" or not isinstance(base, Reference)
            or base.name not in (f"{b}.object" for b in _BUILTINS) or state is not None):
        raise UnsafePickleError("copyreg._reconstructor is only allowed for a record class with base object")
    return cls.entry.target()


_NUMPY_SCALAR_MODULES = ("numpy.core.multiarray", "numpy._core.multiarray")

#: every name a checkpoint pickle may use, and what it stands for
TABLE: dict[tuple[str, str], Entry] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): Entry("call", _reconstruct_persistent_obj),
    ("dnnlib.util", "EasyDict"): Entry("new", EasyDictRecord),
    **{("torch.nn.modules.container", name): Entry("new", _container(name))
       for name in ("ModuleDict", "ModuleList", "Sequential")},
    ("collections", "OrderedDict"): Entry("call", _ordered_dict),
    ("torch._utils", "_rebuild_tensor_v2"): Entry("call", tensors.rebuild_tensor),
    ("torch._utils", "_rebuild_parameter"): Entry("call", tensors.rebuild_parameter),
    ("torch.storage", "_load_from_bytes"): Entry("call", tensors.storage_from_legacy_archive),
    ("numpy", "dtype"): Entry("call", _numpy_dtype),
    **{(module, "scalar"): Entry("call", _numpy_scalar) for module in _NUMPY_SCALAR_MODULES},
    **{(b, "set"): Entry("call", _set) for b in _BUILTINS},
    **{(b, "object"): Entry("name") for b in _BUILTINS},
    **{(c, "_reconstructor"): Entry("call", _reconstructor) for c in _COPYREG},
    ("_codecs", "encode"): Entry("call", _latin1_encode),
    **{("torch", name): Entry("constant", dtype) for name, dtype in tensors.TORCH_DTYPES.items()},
    **{("torch", name): Entry("constant", tensors.StorageType(dtype)) for name, dtype in tensors.STORAGE_TYPES.items()},
}


def load(file, size: int, *, persistent_load=None, source: str = "pickle"):
    """The object pickled in the next ``size`` bytes (at most) of the binary stream ``file``."""
    return pickle_machine.run(file, size, TABLE, persistent_load=persistent_load, source=source)


def loads(data: bytes, **kwargs):
    return load(io.BytesIO(data), len(data), **kwargs)


def load_file(path):
    """The object pickled in the file ``path``."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        result = load(f, size, source=str(path))
    if type(result) is int and result == tensors.LEGACY_MAGIC:
        raise CheckpointError(f"{path}: a legacy torch.save file (torch < 1.6); re-save it with a current torch")
    return result
