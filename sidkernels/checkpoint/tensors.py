"""Storages and tensors of a pickled checkpoint, rebuilt by our own checked functions (docs/checkpoint-formats.md, "Formats").

A pickle names ``torch._utils._rebuild_tensor_v2`` / ``_rebuild_parameter`` and, for each storage, either a
persistent id into a ``torch.save`` archive or ``torch.storage._load_from_bytes(b)`` with ``b`` a complete
legacy ``torch.save`` archive of that one storage.  The loader maps those names to the functions here, which:

* hold every storage's bytes in a fresh uint8 tensor of exactly the size the file provides
  (:class:`StorageRecord`); element types come from a fixed table of plain numeric dtypes;
* rebuild a tensor as a view of such a storage only after checking that every element of the view lies
  inside it (offset, sizes and strides are non-negative ints, the last element's index is below the
  storage's element count), so a file can neither make a tensor read past its bytes nor make torch
  allocate more than the file holds;
* refuse backward hooks and tensor metadata (conj/neg bits), which our formats never contain.
"""
from __future__ import annotations

import collections
import dataclasses
import io
import struct

import numpy as np
import torch
from torch import nn

from sidkernels.checkpoint import pickle_machine
from sidkernels.checkpoint.errors import CheckpointError, UnsafePickleError, describe, same
from sidkernels.checkpoint.pickle_machine import Entry

#: element types a stored tensor may have (torch's names for them in pickles)
TORCH_DTYPES = {"float32": torch.float32, "float": torch.float32, "float64": torch.float64, "double": torch.float64,
                "float16": torch.float16, "half": torch.float16, "bfloat16": torch.bfloat16,
                "int64": torch.int64, "long": torch.int64, "int32": torch.int32, "int": torch.int32,
                "int16": torch.int16, "short": torch.int16, "int8": torch.int8, "uint8": torch.uint8,
                "bool": torch.bool}
#: the legacy typed-storage classes a ``torch.save`` pickle names for each element type
STORAGE_TYPES = {"FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
                 "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
                 "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
                 "BoolStorage": torch.bool}
MAX_DIMS = 32
MAX_EXTENT = 1 << 62
#: first two pickles of a legacy (pre-zip) ``torch.save`` archive
LEGACY_MAGIC, LEGACY_PROTOCOL = 0x1950A86A20F9469CFC6C, 1001


@dataclasses.dataclass(frozen=True)
class StorageType:
    """What a pickle's ``torch.FloatStorage`` (etc.) stands for: only an element type."""

    dtype: torch.dtype


class StorageRecord:
    """One storage of the file: its element type and its bytes, owned by a fresh 1-D uint8 tensor."""

    __slots__ = ("dtype", "buffer")

    def __init__(self, dtype: torch.dtype, buffer: torch.Tensor):
        if buffer.numel() % dtype.itemsize:
            raise CheckpointError(f"a {dtype} storage of {buffer.numel()} bytes is not a whole number of elements")
        self.dtype, self.buffer = dtype, buffer

    @property
    def numel(self) -> int:
        return self.buffer.numel() // self.dtype.itemsize

    @classmethod
    def from_bytes(cls, dtype: torch.dtype, data) -> StorageRecord:
        buffer = torch.empty(len(data), dtype=torch.uint8)
        if len(data):
            buffer.numpy()[:] = np.frombuffer(data, dtype=np.uint8)
        return cls(dtype, buffer)

    def __repr__(self):
        return f"StorageRecord({self.dtype}, {self.numel} elements)"


def _index(value, what: str) -> int:
    if type(value) is not int or not 0 <= value < MAX_EXTENT:
        raise UnsafePickleError(f"tensor {what} must be a non-negative int below 2**62, got {describe(value)}")
    return value


def _shape(value, what: str) -> tuple[int, ...]:
    if type(value) not in (tuple, list) or len(value) > MAX_DIMS:
        raise UnsafePickleError(f"tensor {what} must be a tuple of at most {MAX_DIMS} ints, got {describe(value)}")
    return tuple(_index(v, what) for v in value)


def _no_hooks(hooks) -> None:
    if not isinstance(hooks, collections.OrderedDict) or hooks:
        raise UnsafePickleError(f"tensor backward hooks must be an empty OrderedDict, got {describe(hooks)}")


def rebuild_tensor(storage, storage_offset, size, stride, requires_grad, backward_hooks, metadata=None):
    """``torch._utils._rebuild_tensor_v2`` as the file may use it: a view of ``storage`` that lies inside it.

    The view's elements are ``storage[offset + sum_i k_i * stride_i]`` for ``0 <= k_i < size_i``; the largest
    index, ``offset + sum_i (size_i - 1) * stride_i``, must be below the storage's element count.
    """
    if not isinstance(storage, StorageRecord):
        raise UnsafePickleError(f"a tensor's storage must come from the file's storages, got {describe(storage)}")
    offset = _index(storage_offset, "storage offset")
    size, stride = _shape(size, "size"), _shape(stride, "stride")
    if len(size) != len(stride):
        raise UnsafePickleError(f"tensor size {size} and stride {stride} differ in length")
    if type(requires_grad) is not bool:
        raise UnsafePickleError(f"requires_grad must be a bool, got {describe(requires_grad)}")
    _no_hooks(backward_hooks)
    if not (metadata is None or (type(metadata) is dict and not metadata)):
        raise UnsafePickleError("tensor metadata (conj/neg bits) is not supported")
    needed = offset if 0 in size else offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1
    if needed > storage.numel:
        raise UnsafePickleError(f"a tensor of size {size}, stride {stride} at offset {offset} needs {needed} "
                                f"elements; its storage holds {storage.numel}")
    if requires_grad and not storage.dtype.is_floating_point:
        raise UnsafePickleError(f"a {storage.dtype} tensor cannot require gradients")
    tensor = torch.empty(0, dtype=storage.dtype).set_(storage.buffer.untyped_storage(), offset, size, stride)
    return tensor.requires_grad_(requires_grad)


def rebuild_parameter(data, requires_grad, backward_hooks):
    """``torch._utils._rebuild_parameter``: ``nn.Parameter(data, requires_grad)`` of a rebuilt tensor."""
    if type(data) is not torch.Tensor:
        raise UnsafePickleError(f"a parameter's data must be a rebuilt tensor, got {describe(data)}")
    if type(requires_grad) is not bool:
        raise UnsafePickleError(f"requires_grad must be a bool, got {describe(requires_grad)}")
    _no_hooks(backward_hooks)
    if requires_grad and not data.dtype.is_floating_point:
        raise UnsafePickleError(f"a {data.dtype} parameter cannot require gradients")
    return nn.Parameter(data, requires_grad)


def storage_pid(pid, fields: int, source: str) -> tuple[torch.dtype, str, int]:
    """``(dtype, key, numel)`` of a persistent storage id ``('storage', <StorageType>, key, location, numel,
    ...)`` with ``fields`` items; the location is ignored (everything is loaded on the CPU)."""
    if type(pid) is not tuple or len(pid) != fields or not same(pid[0], "storage"):
        raise UnsafePickleError(f"{source}: persistent id {describe(pid)} is not a storage reference")
    storage_type, key, location, numel = pid[1:5]
    if not isinstance(storage_type, StorageType):
        raise UnsafePickleError(f"{source}: storage type {describe(storage_type)} is not one of "
                                f"{sorted(STORAGE_TYPES)}")
    if type(key) is not str or type(location) is not str:
        raise UnsafePickleError(f"{source}: storage key and location must be strings")
    return storage_type.dtype, key, _index(numel, "storage size")


_NO_NAMES: dict = {}
_STORAGE_NAMES = {("torch", name): Entry("constant", StorageType(dtype)) for name, dtype in STORAGE_TYPES.items()}


def storage_from_legacy_archive(data) -> StorageRecord:
    """``torch.storage._load_from_bytes(data)``: ``data`` must be a legacy ``torch.save`` archive of one storage.

    Layout (each item a pickle unless noted): the magic number, the protocol version 1001, a dict of system
    facts (``little_endian`` must be true), the storage as a persistent id ``('storage', type, key, location,
    numel, None)``, the list of storage keys ``[key]``, then raw: ``numel`` as a little-endian int64 followed by
    ``numel`` elements.  Nothing may follow.
    """
    if not isinstance(data, (bytes, bytearray)):
        raise UnsafePickleError(f"an embedded storage archive must be bytes, got {describe(data)}")
    source = "embedded storage archive"
    stream = io.BytesIO(data)

    def next_pickle(table, **kwargs):
        return pickle_machine.run(stream, len(data) - stream.tell(), table, source=source, **kwargs)

    magic, protocol, info = next_pickle(_NO_NAMES), next_pickle(_NO_NAMES), next_pickle(_NO_NAMES)
    if type(magic) is not int or magic != LEGACY_MAGIC or type(protocol) is not int or protocol != LEGACY_PROTOCOL:
        raise CheckpointError(f"{source}: not a torch storage archive (magic number or protocol differ)")
    if type(info) is not dict or info.get("little_endian") is not True:
        raise CheckpointError(f"{source}: only little-endian archives are supported")
    found = []

    def persistent_load(pid):
        if found:
            raise UnsafePickleError(f"{source}: holds more than one storage")
        if type(pid) is tuple and len(pid) == 6 and pid[5] is not None:
            raise UnsafePickleError(f"{source}: storage views are not supported")
        found.append(storage_pid(pid, 6, source))
        return found[-1]

    root = next_pickle(_STORAGE_NAMES, persistent_load=persistent_load)
    if not found or root is not found[0]:
        raise CheckpointError(f"{source}: does not hold exactly one storage")
    dtype, key, numel = found[0]
    keys = next_pickle(_NO_NAMES)
    if type(keys) is not list or len(keys) != 1 or not same(keys[0], key):
        raise CheckpointError(f"{source}: its storage key list does not name its one storage")
    head = stream.read(8)
    nbytes = numel * dtype.itemsize
    if len(head) != 8 or struct.unpack("<q", head)[0] != numel or len(data) - stream.tell() != nbytes:
        raise CheckpointError(f"{source}: holds {len(data) - stream.tell()} bytes of storage data where its "
                              f"header says {numel} elements of {dtype} ({nbytes} bytes)")
    return StorageRecord.from_bytes(dtype, memoryview(data)[stream.tell():])
