"""Our torch.save archive reader against torch.load(weights_only=True) on files torch writes, and its checks
of the archive layout."""
import collections
import struct

import pytest
import torch

from sidkernels.checkpoint.errors import CheckpointError
from sidkernels.checkpoint.torch_archive import read_torch_archive
from tests.checkpoint import hostile as h


def assert_same(a, b):
    assert type(a) is type(b) or isinstance(a, type(b)), (type(a), type(b))  # OrderedDicts are our records
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and a.stride() == b.stride()
        assert a.storage_offset() == b.storage_offset() and a.requires_grad == b.requires_grad
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    else:
        assert a == b
    assert getattr(a, "_metadata", None) == getattr(b, "_metadata", None)


def test_matches_torch_load(tmp_path):
    base = torch.randn(6, 5, dtype=torch.float64)
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.0, 0.999))
    net(torch.randn(4, 3)).square().sum().backward()
    opt.step()
    obj = {"f64": base, "view": base.t()[1:, ::2], "row": base[2], "bf16": torch.ones(3, dtype=torch.bfloat16),
           "i64": torch.arange(-3, 4), "bool": torch.tensor([True, False]), "empty": torch.zeros(0, 4),
           "param": torch.nn.Parameter(torch.randn(2, 2)), "od": collections.OrderedDict(a=1, b=[2.5, "x"]),
           "net": net.state_dict(), "opt": opt.state_dict(), "dtype": torch.float16, "scalar": torch.tensor(3.5)}
    path = tmp_path / "state.pt"
    torch.save(obj, path)
    ours, theirs = read_torch_archive(path), torch.load(path, weights_only=True)
    assert_same(ours, theirs)
    # views of one storage still share it, as torch.save wrote them
    assert ours["view"].untyped_storage().data_ptr() == ours["f64"].untyped_storage().data_ptr()
    assert ours["row"].untyped_storage().data_ptr() == ours["f64"].untyped_storage().data_ptr()


def test_compressed_entry_is_refused_before_reading(tmp_path):
    """torch.load inflates this 65 kB file into a 64 MB tensor; we refuse it by its layout."""
    path = tmp_path / "bomb.pt"
    path.write_bytes(h.one_tensor_archive(1 << 24, bytes(1 << 26), (1 << 24,), compressed=True))
    assert path.stat().st_size < 1 << 17
    assert torch.load(path, weights_only=True)["w"].numel() == 1 << 24
    with pytest.raises(CheckpointError, match="is compressed"):
        read_torch_archive(path)


def test_entries_claiming_more_than_the_file(tmp_path):
    data = bytearray(h.one_tensor_archive(4, bytes(16), (4,)))
    central = data.index(b"PK\x01\x02" + data[data.index(b"PK\x01\x02") + 4:][:0])  # first central entry
    struct.pack_into("<II", data, central + 20, 1 << 30, 1 << 30)  # its compressed and uncompressed sizes
    path = tmp_path / "overlap.pt"
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="claim more bytes than the file holds"):
        read_torch_archive(path)


def test_entries_in_two_folders(tmp_path):
    path = tmp_path / "folders.pt"
    data = h.one_tensor_archive(4, bytes(16), (4,))
    import io
    import zipfile

    buf = io.BytesIO(data)
    with zipfile.ZipFile(buf, "a") as z:
        z.writestr("elsewhere/x", b"")
    path.write_bytes(buf.getvalue())
    with pytest.raises(CheckpointError, match="one folder; found 2"):
        read_torch_archive(path)
