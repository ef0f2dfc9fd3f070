"""A restricted unpickler for EDM / SiD pickles that runs nothing from the file (SID.md 6.2-6.5).

EDM's persistence layer pickles every network object as ``_reconstruct_persistent_obj(meta)`` where ``meta``
holds the *source code* of the defining module, the class name and the object's ``__dict__``; the normal
loader ``exec``s that source.  :class:`RestrictedUnpickler` instead resolves only these globals:

* ``torch_utils.persistence._reconstruct_persistent_obj`` -> returns a :class:`PersistentRecord`
  (class name, source text, version, state); the source is kept as a string and never executed;
* ``torch.nn.modules.container.{ModuleDict, ModuleList, Sequential}`` -> :class:`ContainerRecord`, which stores
  the state it is given;
* ``dnnlib.util.EasyDict`` -> :class:`EasyDictRecord` (a plain ``dict`` subclass);
* passed through: ``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` and ``_rebuild_parameter``,
  torch dtypes (``torch.float32``, ...), ``numpy.dtype``, ``builtins.set`` / ``__builtin__.set`` and
  ``builtins.object``;
* checked wrappers: ``torch.storage._load_from_bytes`` (the embedded storage archive is read with
  ``torch.load(weights_only=True)``, never with a full unpickler), ``numpy.(_)core.multiarray.scalar``
  (numeric dtypes only), ``_codecs.encode`` (latin-1 text to bytes only) and ``copyreg._reconstructor``
  (whitelisted classes only).

Every other global raises :class:`ForbiddenGlobalError` (an ``UnpicklingError``) naming it, before anything
is called.  The module also works as ``torch.load(..., weights_only=False, pickle_module=<this module>)``,
through :data:`Unpickler` and :func:`load`, for ``torch.save`` archives such as SiD's training states.
"""
from __future__ import annotations

import _codecs
import builtins
import collections
import copyreg
import dataclasses
import io
import pickle
from typing import Any

import numpy as np
import torch

__all__ = ["ContainerRecord", "EasyDictRecord", "ForbiddenGlobalError", "PersistentRecord", "RestrictedUnpickler",
           "Unpickler", "load", "loads"]


class ForbiddenGlobalError(pickle.UnpicklingError):
    """The pickle names a global that is not on the whitelist; nothing from it was called."""


@dataclasses.dataclass
class PersistentRecord:
    """One object written by EDM's ``persistent_class`` (``meta`` of ``_reconstruct_persistent_obj``)."""

    class_name: str
    state: dict
    module_src: str = ""
    version: int | None = None


class ContainerRecord:
    """Stand-in for ``torch.nn.ModuleDict`` / ``ModuleList`` / ``Sequential``: keeps the pickled state."""

    container = "Module"

    def __init__(self):
        self.state: dict = {}

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"{self.container} state must be a dict, got {type(state).__name__}")
        self.state = state

    def __repr__(self):
        return f"ContainerRecord({self.container}, modules={list(self.state.get('_modules', {}))})"


def _container(name: str) -> type:
    return type(name + "Record", (ContainerRecord,), {"container": name})


class EasyDictRecord(dict):
    """Stand-in for ``dnnlib.EasyDict`` (a dict with attribute access in EDM; a plain dict here)."""


def _reconstruct_persistent_obj(meta) -> PersistentRecord:
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise pickle.UnpicklingError("persistent object metadata must be a dict with type 'class'")
    class_name, state = meta.get("class_name"), meta.get("state")
    if not isinstance(class_name, str) or not isinstance(state, dict):
        raise pickle.UnpicklingError(f"persistent object {class_name!r} has no valid class_name/state")
    src = meta.get("module_src", "")
    return PersistentRecord(class_name=class_name, state=state, module_src=src if isinstance(src, str) else "",
                            version=meta.get("version"))


def _storage_from_bytes(data) -> torch.storage.TypedStorage:
    """The storage of a plain pickled tensor: a complete ``torch.save`` archive of one storage, read by
    torch's weights-only unpickler (so a nested pickle cannot run code either)."""
    if not isinstance(data, (bytes, bytearray)):
        raise pickle.UnpicklingError(f"tensor storage must be bytes, got {type(data).__name__}")
    try:
        storage = torch.load(io.BytesIO(bytes(data)), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ForbiddenGlobalError(f"embedded tensor storage is not a plain storage archive: {err}") from err
    if not isinstance(storage, (torch.storage.TypedStorage, torch.UntypedStorage)):
        raise pickle.UnpicklingError(f"embedded storage archive holds a {type(storage).__name__}, not a storage")
    return storage


def _numpy_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes):
        raise ForbiddenGlobalError(f"numpy scalar of dtype {dtype!r} from {type(data).__name__} is not allowed "
                                   "(numeric dtypes from raw bytes only)")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def _latin1_encode(text, encoding="utf-8"):
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise ForbiddenGlobalError(f"_codecs.encode is only allowed for latin-1 text, got {encoding!r}")
    return _codecs.encode(text, encoding)


def _reconstructor(cls, base, state):
    if cls not in _ALLOWED_CLASSES or base not in (object, dict, set, list):
        raise ForbiddenGlobalError(f"copyreg._reconstructor for {cls!r} / {base!r} is not allowed")
    return copyreg._reconstructor(cls, base, state)


_NUMPY_SCALAR_MODULES = ("numpy.core.multiarray", "numpy._core.multiarray")

WHITELIST: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("dnnlib.util", "EasyDict"): EasyDictRecord,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
    ("numpy", "dtype"): np.dtype,
    ("builtins", "set"): set,
    ("__builtin__", "set"): set,
    ("builtins", "object"): builtins.object,
    ("_codecs", "encode"): _latin1_encode,
    ("copyreg", "_reconstructor"): _reconstructor,
    **{(m, "scalar"): _numpy_scalar for m in _NUMPY_SCALAR_MODULES},
    **{("torch.nn.modules.container", name): _container(name) for name in ("ModuleDict", "ModuleList", "Sequential")},
}
_ALLOWED_CLASSES = tuple(v for v in WHITELIST.values() if isinstance(v, type))


def resolve_global(module: str, name: str):
    """The object a pickle may reference as ``module.name``; raises :class:`ForbiddenGlobalError` otherwise."""
    if (module, name) in WHITELIST:
        return WHITELIST[(module, name)]
    if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
        return getattr(torch, name)
    raise ForbiddenGlobalError(
        f"refusing to load global '{module}.{name}': only EDM/SiD network pickles are supported and nothing "
        "outside the loader's whitelist is ever imported or called")


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` only returns whitelisted objects (:func:`resolve_global`)."""

    def find_class(self, module: str, name: str):
        return resolve_global(module, name)


Unpickler = RestrictedUnpickler


def load(file, **kwargs):
    """``pickle.load`` with the restricted unpickler (the ``pickle_module`` interface torch.load uses)."""
    return RestrictedUnpickler(file, **kwargs).load()


def loads(data: bytes, **kwargs):
    return load(io.BytesIO(data), **kwargs)
