"""Tensor and storage rebuild against torch's own functions on valid input, and its bounds exactly at the edge."""
import collections
import io

import pytest
import torch

from sidkernels.checkpoint.errors import CheckpointError, UnsafePickleError
from sidkernels.checkpoint.tensors import (StorageRecord, rebuild_parameter, rebuild_tensor,
                                           storage_from_legacy_archive)

VIEWS = [(0, (12,), (1,)), (2, (3, 2), (2, 1)), (0, (3, 4), (1, 3)), (11, (1,), (1,)), (0, (0, 5), (5, 1)),
         (12, (0,), (1,)), (3, (4, 2), (0, 1)), (0, (), ()), (5, (2, 2, 2), (1, 3, 1))]


def typed(values: torch.Tensor):
    """The typed storage torch pickles for a tensor (what ``tensor.storage()`` returns, without its warning)."""
    return torch.storage.TypedStorage(wrap_storage=values.untyped_storage(), dtype=values.dtype, _internal=True)


def torch_rebuild(values, offset, size, stride):
    """torch's own reading of the same view (what torch.load would return)."""
    return torch._utils._rebuild_tensor_v2(typed(values), offset, size, stride, False, collections.OrderedDict())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.int64, torch.uint8, torch.bool])
@pytest.mark.parametrize("offset, size, stride", VIEWS)
def test_views_match_torch(dtype, offset, size, stride):
    values = (torch.arange(12) * 7 % 5).to(dtype)
    storage = StorageRecord.from_bytes(dtype, values.view(torch.uint8).numpy().tobytes())
    ours = rebuild_tensor(storage, offset, size, stride, False, collections.OrderedDict())
    theirs = torch_rebuild(values, offset, size, stride)
    assert ours.dtype == dtype and ours.shape == theirs.shape and ours.stride() == theirs.stride()
    assert torch.equal(ours, theirs) and ours.storage_offset() == offset
    assert ours.untyped_storage().data_ptr() != values.untyped_storage().data_ptr()  # our own copy of the bytes


def test_bounds_are_exact():
    storage = StorageRecord.from_bytes(torch.float32, bytes(4 * 10))
    hooks = collections.OrderedDict
    assert rebuild_tensor(storage, 9, (1,), (1,), False, hooks()).numel() == 1
    assert rebuild_tensor(storage, 0, (2, 5), (5, 1), False, hooks()).shape == (2, 5)
    assert rebuild_tensor(storage, 10, (0,), (1,), False, hooks()).numel() == 0
    for offset, size, stride in [(10, (1,), (1,)), (0, (2, 6), (5, 1)), (1, (10,), (1,)), (11, (0,), (1,)),
                                 (0, (2,), (10,))]:
        with pytest.raises(UnsafePickleError, match="needs .* elements; its storage holds 10"):
            rebuild_tensor(storage, offset, size, stride, False, hooks())


@pytest.mark.parametrize("args, match", [
    (dict(storage_offset=-1), "storage offset must be a non-negative int"),
    (dict(storage_offset=True), "storage offset"),
    (dict(size=(2.0,)), "size must be"),
    (dict(size=[1] * 33, stride=[1] * 33), "at most 32"),
    (dict(stride=(1, 1)), "differ in length"),
    (dict(requires_grad=1), "requires_grad must be a bool"),
    (dict(backward_hooks=collections.OrderedDict(a=1)), "backward hooks"),
    (dict(backward_hooks={}), "backward hooks"),
    (dict(metadata={"neg": True}), "metadata"),
    (dict(storage=torch.zeros(4)), "storage must come from the file"),
])
def test_refusals(args, match):
    call = dict(storage=StorageRecord.from_bytes(torch.float32, bytes(16)), storage_offset=0, size=(4,), stride=(1,),
                requires_grad=False, backward_hooks=collections.OrderedDict(), metadata=None)
    call.update(args)
    with pytest.raises(UnsafePickleError, match=match):
        rebuild_tensor(*call.values())


def test_parameters():
    storage = StorageRecord.from_bytes(torch.float32, torch.arange(4.0).numpy().tobytes())
    p = rebuild_parameter(rebuild_tensor(storage, 0, (4,), (1,), False, collections.OrderedDict()), True,
                          collections.OrderedDict())
    assert isinstance(p, torch.nn.Parameter) and p.requires_grad and torch.equal(p.data, torch.arange(4.0))
    ints = rebuild_tensor(StorageRecord.from_bytes(torch.int64, bytes(8)), 0, (1,), (1,), False,
                          collections.OrderedDict())
    with pytest.raises(UnsafePickleError, match="cannot require gradients"):
        rebuild_parameter(ints, True, collections.OrderedDict())
    with pytest.raises(UnsafePickleError, match="cannot require gradients"):
        rebuild_tensor(StorageRecord.from_bytes(torch.int64, bytes(8)), 0, (1,), (1,), True, collections.OrderedDict())
    with pytest.raises(UnsafePickleError, match="rebuilt tensor"):
        rebuild_parameter(p, True, collections.OrderedDict())


def legacy_archive(values: torch.Tensor) -> bytes:
    """What ``torch.storage.TypedStorage.__reduce__`` embeds in a plain pickle (torch writes it)."""
    buf = io.BytesIO()
    torch.save(typed(values), buf, _use_new_zipfile_serialization=False)
    return buf.getvalue()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.int64])
def test_legacy_storage_archive_matches_torch(dtype):
    values = torch.arange(5).to(dtype)
    data = legacy_archive(values)
    storage = storage_from_legacy_archive(data)
    theirs = torch.load(io.BytesIO(data), weights_only=True)
    assert storage.dtype == dtype and storage.numel == values.numel()
    assert bytes(storage.buffer.numpy()) == bytes(theirs._untyped_storage)


def test_legacy_storage_archive_refusals():
    data = legacy_archive(torch.arange(4.0))
    with pytest.raises(CheckpointError, match="holds 17 bytes of storage data where its header says"):
        storage_from_legacy_archive(data + b"\0")
    with pytest.raises(CheckpointError, match="holds 15 bytes"):
        storage_from_legacy_archive(data[:-1])
    with pytest.raises(CheckpointError, match="magic number"):
        storage_from_legacy_archive(b"\x80\x02K\x01." + data[data.index(b".") + 1:])
    with pytest.raises(UnsafePickleError, match="must be bytes"):
        storage_from_legacy_archive("text")
    big_endian = data.replace(b"little_endianq\x02\x88", b"little_endianq\x02\x89")
    assert big_endian != data
    with pytest.raises(CheckpointError, match="little-endian"):
        storage_from_legacy_archive(big_endian)
