"""Files that FID needs (a detector, reference statistics): a local path, or an explicitly given URL that is
downloaded once into the cache (``$SIDKERNELS_CACHE`` or ``~/.cache/sidkernels``, under ``downloads/``).

Nothing is downloaded unless the argument is a URL (``https://``, ``http://`` or ``file://``); a plain path is
never looked up anywhere else.  Downloads are written to a temporary file and renamed, so an interrupted one
leaves nothing under the final name.
"""
from __future__ import annotations

import hashlib
import urllib.parse
import urllib.request
from pathlib import Path

URL_SCHEMES = ("https", "http", "file")
DOWNLOAD_TIMEOUT_S = 60


def file_sha256(path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_url(spec) -> bool:
    return isinstance(spec, str) and urllib.parse.urlsplit(spec).scheme in URL_SCHEMES


def cached_download_path(url: str) -> Path:
    """Where ``url`` is (or will be) cached: ``downloads/<sha256(url)[:16]>/<file name>``."""
    from sidkernels.distill.mixture_teacher import cache_dir  # imported here: sidkernels.distill imports this package

    name = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).name or "download"
    return cache_dir() / "downloads" / hashlib.sha256(url.encode()).hexdigest()[:16] / name


def download(url: str, *, name: str, progress: bool = True) -> Path:
    """The cached copy of ``url``, downloaded first if it is not cached yet."""
    from tqdm.auto import tqdm

    from sidkernels.checkpoint.safetensors_io import _atomic_write

    path = cached_download_path(url)
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp):
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(tmp, "wb") as f:
            size = response.headers.get("Content-Length") if hasattr(response, "headers") else None
            with tqdm(total=int(size) if size else None, unit="B", unit_scale=True, desc=f"download {path.name}",
                      disable=not progress) as bar:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    f.write(chunk)
                    bar.update(len(chunk))

    try:
        _atomic_write(path, write)
    except OSError as err:  # URLError is an OSError
        raise OSError(f"{name}: could not download {url}: {err}") from None
    return path


def resolve(spec, *, name: str, progress: bool = True) -> Path:
    """A local file for ``spec``: the path itself (which must exist), or the cached download of a URL.
    ``name`` is the argument's name in errors."""
    if spec is None or (isinstance(spec, str) and not spec):
        raise ValueError(f"{name}: a path or URL is required")
    if is_url(spec):
        return download(spec, name=name, progress=progress)
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"{name}: no such file: {path}")
    return path
