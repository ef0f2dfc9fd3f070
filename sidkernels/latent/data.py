"""Training prompts: a text file (one prompt per line) or a captions dataset.

Accepted ``--prompts`` files:

* ``.txt``: one prompt per line (blank lines skipped);
* ``.json``: COCO-style captions (``{"annotations": [{"caption": ...}, ...]}``) or a list of strings;
* ``.jsonl``: one JSON object per line with a ``caption``, ``text`` or ``prompt`` field (or a bare string);
* ``.csv`` / ``.tsv``: a header row with a ``caption``, ``text`` or ``prompt`` column.

Prompts are stripped of surrounding white space; an empty result is an error.  Training draws prompt
indices uniformly with replacement from torch's CPU generator (so a resumed run continues the same stream).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import torch

CAPTION_FIELDS = ("caption", "text", "prompt")
SUFFIXES = (".txt", ".json", ".jsonl", ".csv", ".tsv")


def _field(record, where: str) -> str:
    if isinstance(record, str):
        return record
    if isinstance(record, dict):
        for name in CAPTION_FIELDS:
            if isinstance(record.get(name), str):
                return record[name]
    raise ValueError(f"prompts {where}: expected a string or an object with one of the fields {CAPTION_FIELDS}")


def load_prompts(path) -> list[str]:
    """The prompts of ``path`` (see the module docstring); raises ValueError naming ``prompts``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prompts: no such file: {path}")
    suffix = path.suffix.lower()
    text = path.read_text(encoding="utf-8")
    if suffix == ".txt":
        raw = text.splitlines()
    elif suffix == ".json":
        data = json.loads(text) if text.strip() else []
        records = data.get("annotations") if isinstance(data, dict) else data
        if not isinstance(records, list):
            raise ValueError(f"prompts {path}: a .json file must be a list of prompts or COCO captions "
                             f"({{'annotations': [{{'caption': ...}}]}})")
        raw = [_field(r, f"{path} entry {i}") for i, r in enumerate(records)]
    elif suffix == ".jsonl":
        raw = [_field(json.loads(line), f"{path} line {i + 1}") for i, line in enumerate(text.splitlines())
               if line.strip()]
    elif suffix in (".csv", ".tsv"):
        rows = list(csv.DictReader(text.splitlines(), delimiter="\t" if suffix == ".tsv" else ","))
        column = next((c for c in CAPTION_FIELDS if rows and c in rows[0]), None)
        if rows and column is None:
            raise ValueError(f"prompts {path}: no {'/'.join(CAPTION_FIELDS)} column in the header "
                             f"{list(rows[0])}")
        raw = [row[column] or "" for row in rows]
    else:
        raise ValueError(f"prompts {path}: unsupported file type {suffix!r}; use one of {SUFFIXES}")
    prompts = [p.strip() for p in raw if p and p.strip()]
    if not prompts:
        raise ValueError(f"prompts {path} contains no prompts (an empty file or only blank entries)")
    return prompts


def draw_indices(n: int, count: int) -> torch.Tensor:
    """``n`` prompt indices in ``[0, count)``, uniform with replacement (int64, CPU, torch's generator)."""
    return torch.randint(count, (n,), dtype=torch.long)
