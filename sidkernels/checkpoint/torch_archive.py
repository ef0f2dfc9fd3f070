"""``torch.save`` archives (SiD's ``training-state-*.pt``) read by our own code, not by ``torch.load``.

The format: a zip file whose entries all sit under one folder ``P/``: ``P/data.pkl`` (the object, a pickle
whose storages are persistent ids ``('storage', torch.<X>Storage, key, location, numel)``), one entry
``P/data/<key>`` per storage holding exactly ``numel`` elements, and small records such as ``P/byteorder``
(``little``) and ``P/version``.  ``torch.save`` stores every entry uncompressed.

Why not ``torch.load(..., pickle_module=...)``: torch's zip reader also inflates compressed entries, so a small
file can expand into a storage far larger than itself (a 400 kB archive inflates to 400 MB, even with
``weights_only=True``), and its pickle-module hook hands storage classes and its own persistent loader to the
unpickler.  Here:

* entries must be stored uncompressed and unencrypted, with distinct names, under one folder, and their sizes
  must add up to no more than the file (so entries cannot overlap to repeat the same bytes);
* each storage is read once, from the entry its key names, and must hold exactly ``numel`` elements; it is
  read in chunks into a buffer of that size, and the entry's CRC is checked;
* the pickle runs on :mod:`~sidkernels.checkpoint.pickle_machine` with the table of
  :mod:`~sidkernels.checkpoint.safe_unpickler`; everything is loaded on the CPU.
"""
from __future__ import annotations

import encodings.cp437  # noqa: F401 - zipfile decodes non-UTF-8 entry names with it, importing it on first use;
import os                 # imported here, reading a file never imports anything
import struct
import zipfile

import torch

from sidkernels.checkpoint import safe_unpickler
from sidkernels.checkpoint.errors import CheckpointError, UnsafePickleError
from sidkernels.checkpoint.tensors import StorageRecord, storage_pid

_CHUNK = 1 << 24
#: what zipfile raises for a damaged archive
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, struct.error,
               NotImplementedError)


def _entries(archive: zipfile.ZipFile, file_size: int, source: str) -> tuple[str, dict[str, zipfile.ZipInfo]]:
    """``(folder, {name: info})`` after checking the layout described in the module docstring."""
    infos = archive.infolist()
    entries = {info.filename: info for info in infos}
    if len(entries) != len(infos):
        raise CheckpointError(f"{source}: the archive holds two entries of the same name")
    folders = {name.split("/", 1)[0] for name in entries}
    if len(folders) != 1 or not all("/" in name for name in entries):
        raise CheckpointError(f"{source}: a torch.save archive keeps all entries in one folder; found {len(folders)}")
    for info in infos:
        if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
            raise CheckpointError(f"{source}: entry {info.filename!r} is compressed; torch.save stores entries "
                                  "uncompressed, and a compressed one could inflate far beyond the file's size")
        if info.flag_bits & 0x1:
            raise CheckpointError(f"{source}: entry {info.filename!r} is encrypted")
    if sum(info.file_size for info in infos) > file_size:
        raise CheckpointError(f"{source}: the entries claim more bytes than the file holds (they overlap)")
    return folders.pop(), entries


def _read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, buffer: torch.Tensor | None = None) -> bytes | None:
    """The bytes of ``info`` (or, with ``buffer``, its bytes copied into ``buffer``); checks the CRC."""
    with archive.open(info) as f:
        if buffer is None:
            return f.read()
        view, pos = memoryview(buffer.numpy()), 0
        while pos < len(view):
            chunk = f.read(min(_CHUNK, len(view) - pos))
            if not chunk:
                break
            view[pos:pos + len(chunk)] = chunk
            pos += len(chunk)
        if pos != len(view) or f.read(1):  # the read past the end checks the CRC
            raise CheckpointError(f"entry {info.filename!r} does not hold the {len(view)} bytes it claims")
    return None


def read_torch_archive(path):
    """The object saved by ``torch.save`` in ``path`` (its tensors on the CPU)."""
    source = str(path)
    try:
        with zipfile.ZipFile(path) as archive:
            return _load(archive, os.path.getsize(path), source)
    except _ZIP_ERRORS as err:
        if isinstance(err, CheckpointError):
            raise
        raise CheckpointError(f"{source}: damaged zip archive ({type(err).__name__}: {str(err)[:200]})") from err


def _load(archive: zipfile.ZipFile, file_size: int, source: str):
    folder, entries = _entries(archive, file_size, source)
    byteorder = entries.get(f"{folder}/byteorder")
    if byteorder is not None and _read_entry(archive, byteorder) != b"little":
        raise CheckpointError(f"{source}: only little-endian archives are supported")
    pickle_info = entries.get(f"{folder}/data.pkl")
    if pickle_info is None:
        raise CheckpointError(f"{source}: no {folder}/data.pkl in the archive")
    storages: dict[str, StorageRecord] = {}

    def persistent_load(pid):
        dtype, key, numel = storage_pid(pid, 5, source)
        if key in storages:
            storage = storages[key]
            if storage.dtype != dtype:
                raise UnsafePickleError(f"{source}: storage {key!r} is used as {storage.dtype} and as {dtype}")
            return storage
        info = entries.get(f"{folder}/data/{key}")
        if info is None:
            raise CheckpointError(f"{source}: storage {key!r} has no entry {folder}/data/{key}")
        if info.file_size != numel * dtype.itemsize:
            raise CheckpointError(f"{source}: storage {key!r} holds {info.file_size} bytes; the pickle says "
                                  f"{numel} elements of {dtype} ({numel * dtype.itemsize} bytes)")
        buffer = torch.empty(info.file_size, dtype=torch.uint8)
        _read_entry(archive, info, buffer)
        storages[key] = StorageRecord(dtype, buffer)
        return storages[key]

    data = _read_entry(archive, pickle_info)
    return safe_unpickler.loads(data, persistent_load=persistent_load, source=f"{source}:{pickle_info.filename}")
