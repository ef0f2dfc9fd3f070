"""Fuzz harness for the checkpoint readers: mutate valid files of every format, load each mutant in a child
process, and check that it loads or raises CheckpointError, without crashing, hanging or changing the child.

    python -m tests.checkpoint.fuzz --cases 20000 --seed 1 --out fuzz-findings/   # a long run, by hand
    python -m tests.checkpoint.fuzz --seconds 60                                   # what CI runs (test_fuzz.py)

Every case is reproducible from ``(seed, index)``: case ``i`` mutates with ``random.Random(f"{seed}/{i}")``.
The seeds (:mod:`tests.checkpoint.seeds`) are an EDM snapshot pickle, a SiD training state (torch.save zip),
our network safetensors and our training-state safetensors.  Mutations, one to four stacked per case:

* bytes: flip bits, overwrite with boundary integers, truncate, delete / duplicate / move a slice, splice in
  a slice of another seed;
* pickles (the .pkl, and the ``data.pkl`` of the zip, which is re-zipped with valid CRCs so the pickle
  itself is exercised): delete / duplicate / swap opcodes, replace or insert one from a pool of every opcode
  in the seeds and hostile snippets (BUILD on names, structured dtypes, refused names and opcodes, huge length
  fields, deep nesting), rewrite an integer argument with a boundary value;
* zip: also mutate, truncate or extend a storage entry, or the archive's raw bytes (headers included);
* safetensors: also edit the JSON header (a shape, a dtype, an offset, the network config's numbers) with a
  consistent header length, or the length itself.

The child is :class:`~tests.checkpoint.load_worker.LoadWorker`; a crash or a hang restarts it.  Each finding
(crash, hang, violation, unexpected, changed process, memory growth) is counted and, with ``--out``, saved as
the mutant and its reply.
"""
from __future__ import annotations

import argparse
import collections
import io
import json
import pickletools
import random
import struct
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from tests.checkpoint import hostile as h
from tests.checkpoint.load_worker import LoadWorker
from tests.checkpoint.seeds import READERS, write_seeds

#: a case whose peak resident memory grows more than this is a finding (the seeds are ~100 kB)
MEMORY_FINDING_MB = 256
INTERESTING = (0, 1, 2, 3, 7, 8, 127, 128, 255, 256, 1000, 4095, 65535, 65536, (1 << 31) - 1, 1 << 31,
               (1 << 32) - 1, 1 << 32, 10 ** 9, 1 << 40, (1 << 61) - 1, (1 << 63) - 1, -1, -2, -(1 << 31))
FINDINGS = ("crash", "hang", "violation", "unexpected", "changed", "memory")


def _hostile_snippets() -> list[bytes]:
    return [h.BUILD, h.REDUCE, h.NEWOBJ, h.NEWOBJ_EX, h.STACK_GLOBAL, h.MARK, h.TUPLE, h.SETITEM, h.APPEND,
            h.ADDITEMS, h.BINPERSID, h.DUP, h.POP, h.EMPTY_SET, b"1", b"o", b"i", b"\x82\x01", b"\x83\x01\x00",
            b"P1\n", b"\x97", b"\x98", b"\x80\x09", b"\x95" + struct.pack("<Q", 1 << 40),
            h.build_on_global("torch._utils", "_rebuild_tensor_v2"), h.build_on_global("collections", "OrderedDict"),
            h.build_on_global("numpy", "dtype", h.dct()), h.neg_bit_defaults(), h.overlapping_field_dtype(),
            h.numpy_dtype("f8", h.plain_dtype_state(">")), h.numpy_dtype("O8"), h.numpy_dtype("f8", copy=False),
            h.glob("torch", "onnx"), h.glob("torch", "FloatStorage"), h.glob("os", "system"),
            h.stack_glob("torch._utils", "_rebuild_parameter"), h.glob("copyreg", "_reconstructor"),
            h.glob("builtins", "object"), h.glob("builtins", "set"), h.glob("_codecs", "encode"),
            h.inst("collections", "OrderedDict"), h.deep_tuple(2000), h.EMPTY_LIST + h.DUP + h.APPEND,
            b"B" + struct.pack("<I", (1 << 32) - 1), b"\x8e" + struct.pack("<Q", 1 << 62),
            b"\x8b" + struct.pack("<i", 1 << 30), b"L" + b"9" * 5000 + b"L\n", h.integer(10 ** 9),
            h.integer(1 << 100), h.number(float("nan")), h.number(float("inf")), b"X\x03\x00\x00\x00\xff\xfe\xfd"]


class Seed:
    """A valid file and what the mutators need to know about it."""

    def __init__(self, name: str, data: bytes):
        self.name, self.data, self.reader = name, data, READERS[name]
        self.kind = "zip" if data[:2] == b"PK" else "safetensors" if name.endswith(".safetensors") else "pickle"
        if self.kind == "zip":
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                self.entries = [(info.filename, z.read(info)) for info in z.infolist()]
            self.pickle_index = next(i for i, (n, _) in enumerate(self.entries) if n.endswith("/data.pkl"))
            self.pickle = self.entries[self.pickle_index][1]
        else:
            self.pickle = data if self.kind == "pickle" else None
        self.ops = _opcodes(self.pickle) if self.pickle is not None else []


def _opcodes(data: bytes) -> list[tuple[int, int]]:
    """``[(start, end)]`` byte spans of the opcodes of a valid pickle."""
    starts = [pos for _, _, pos in pickletools.genops(data)]
    return list(zip(starts, starts[1:] + [len(data)]))


# -- byte mutations -----------------------------------------------------------------------------------------

def _flip(rng, data):
    data = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 4, 8))):
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    return bytes(data)


def _overwrite_int(rng, data):
    pos, width = rng.randrange(len(data)), rng.choice((1, 2, 4, 8))
    value = rng.choice(INTERESTING) % (1 << (8 * width))
    return data[:pos] + value.to_bytes(width, "little") + data[pos + width:]


def _truncate(rng, data):
    return data[:rng.randrange(len(data))]


def _delete(rng, data):
    a = rng.randrange(len(data))
    return data[:a] + data[a + rng.randint(1, min(256, len(data) - a)):]


def _duplicate(rng, data):
    a = rng.randrange(len(data))
    chunk = data[a:a + rng.randint(1, 512)]
    b = rng.randrange(len(data) + 1)
    return data[:b] + chunk * rng.choice((1, 1, 2, 16)) + data[b:]


def _splice_other(rng, data, others):
    other = rng.choice(others)
    a = rng.randrange(len(other))
    b = rng.randrange(len(data) + 1)
    return data[:b] + other[a:a + rng.randint(1, 256)] + data[b + rng.choice((0, 0, rng.randint(1, 64))):]


def mutate_bytes(rng, data: bytes, others: list[bytes]) -> bytes:
    if not data:
        return data
    op = rng.choice(("flip", "flip", "int", "truncate", "delete", "duplicate", "splice"))
    if op == "splice":
        return _splice_other(rng, data, others)
    return {"flip": _flip, "int": _overwrite_int, "truncate": _truncate, "delete": _delete,
            "duplicate": _duplicate}[op](rng, data)


# -- pickle mutations ---------------------------------------------------------------------------------------

_INT_OPCODES = {b"K"[0]: 1, b"M"[0]: 2, b"J"[0]: 4}


def mutate_pickle(rng, data: bytes, ops: list[tuple[int, int]], pool: list[bytes]) -> bytes:
    """One opcode-level mutation; ``ops`` are the opcode spans of ``data`` (stale after byte mutations, so
    spans are clipped to the data)."""
    ops = [(a, min(b, len(data))) for a, b in ops if a < len(data)]
    if len(ops) < 2:
        return mutate_bytes(rng, data, pool)
    i = rng.randrange(len(ops) - 1)  # never the final STOP itself
    a, b = ops[i]
    op = rng.choice(("delete", "duplicate", "swap", "replace", "insert", "insert", "int"))
    if op == "delete":
        return data[:a] + data[b:]
    if op == "duplicate":
        end = ops[min(len(ops) - 1, i + rng.randint(1, 8))][0]
        return data[:end] + data[a:end] * rng.choice((1, 2, 3)) + data[end:]
    if op == "swap":
        c, d = ops[rng.randrange(len(ops) - 1)]
        if c < a:
            a, b, c, d = c, d, a, b
        if b > c:
            return data
        return data[:a] + data[c:d] + data[b:c] + data[a:b] + data[d:]
    if op == "int":
        ints = [(x, y) for x, y in ops if data[x] in _INT_OPCODES]
        if ints:
            x, y = rng.choice(ints)
            return data[:x] + h.integer(rng.choice(INTERESTING)) + data[y:]
    snippet = rng.choice(pool)
    return data[:a] + snippet + data[b if op == "replace" else a:]


def _rezip(entries: list[tuple[str, bytes]], deflated: str | None = None) -> bytes:
    import warnings

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name" when a mutation repeats one
        for name, payload in entries:
            method = zipfile.ZIP_DEFLATED if name == deflated else zipfile.ZIP_STORED
            z.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), payload, method)
    return buf.getvalue()


# -- safetensors mutations ----------------------------------------------------------------------------------

def _header(data: bytes):
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + n]), data[8 + n:]


def _with_header(header: dict, body: bytes) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + body


def _edit_value(rng, value):
    """A random edit of a JSON-like value: a number replaced by a boundary value, a string or list changed."""
    if isinstance(value, bool) or value is None:
        return rng.choice((None, True, False, 0, "x", []))
    if isinstance(value, (int, float)):
        return rng.choice(INTERESTING + (0.5, -0.0, 1e308, "7", None, [value]))
    if isinstance(value, str):
        return rng.choice((value[:-1], value + "x", "", "F64", "BOOL", "F8_E5M2", "I8", "U64", "EDMPrecond",
                           "VPPrecond", "iDDPMPrecond", "SongUNet", "[", '{"format": 1}', 1))
    if isinstance(value, list):
        if value and rng.random() < 0.7:
            value = list(value)
            i = rng.randrange(len(value))
            value[i] = _edit_value(rng, value[i])
            return value
        return rng.choice((value[:-1], value + value[-1:] if value else [0], [], value * 50))
    if isinstance(value, dict) and value:
        value = dict(value)
        key = rng.choice(sorted(value))
        if rng.random() < 0.15:
            del value[key]
        else:
            value[key] = _edit_value(rng, value[key])
        return value
    return value


def mutate_safetensors(rng, data: bytes) -> bytes:
    header, body = _header(data)
    op = rng.choice(("tensor", "tensor", "config", "config", "length"))
    if op == "length":
        n = struct.unpack("<Q", data[:8])[0]
        return struct.pack("<Q", max(0, n + rng.choice((-1, 1, -8, 1 << 20, 1 << 40)))) + data[8:]
    metadata = header.get("__metadata__", {})
    config_key = next((k for k in metadata if k.startswith("sidkernels")), None)
    if op == "config" and config_key is not None:
        config = json.loads(metadata[config_key])
        metadata = dict(metadata, **{config_key: json.dumps(_edit_value(rng, config))})
        return _with_header(dict(header, __metadata__=metadata), body)
    names = sorted(k for k in header if k != "__metadata__")
    name = rng.choice(names)
    return _with_header(dict(header, **{name: _edit_value(rng, header[name])}), body)


# -- one case -----------------------------------------------------------------------------------------------

def make_case(seeds: list[Seed], seed: int, index: int, pool: list[bytes]) -> tuple[Seed, bytes, str | None]:
    """``(seed file, mutant bytes, key)`` of case ``index``."""
    rng = random.Random(f"{seed}/{index}")
    base = rng.choice(seeds)
    others = [s.data for s in seeds]
    data = base.data
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4))):
        layer = rng.random()
        if base.kind == "pickle":
            data = mutate_pickle(rng, data, base.ops, pool) if layer < 0.6 else mutate_bytes(rng, data, others)
        elif base.kind == "zip":
            entries = list(base.entries)
            if layer < 0.5:
                name, payload = entries[base.pickle_index]
                entries[base.pickle_index] = (name, mutate_pickle(rng, payload, base.ops, pool))
                data = _rezip(entries)
            elif layer < 0.65:
                i = rng.randrange(len(entries))
                entries[i] = (entries[i][0], mutate_bytes(rng, entries[i][1] or b"\0", others))
                data = _rezip(entries)
            elif layer < 0.7:  # archive layout: a deflated entry, a repeated name, a missing or foreign entry
                i = rng.randrange(len(entries))
                name, payload = entries[i]
                choice = rng.randrange(3)
                if choice == 0:
                    data = _rezip(entries, deflated=name)
                else:
                    entries[i] = (rng.choice([n for n, _ in entries]), payload) if choice == 1 else (
                        "other/" + name.split("/", 1)[1], payload)
                    data = _rezip(entries)
            else:
                data = mutate_bytes(rng, data, others)
        else:
            try:
                data = mutate_safetensors(rng, data) if layer < 0.6 else mutate_bytes(rng, data, others)
            except (ValueError, struct.error):  # an earlier byte mutation broke the header: mutate bytes
                data = mutate_bytes(rng, data, others)
    key = rng.choice((None, None, "G", "fake_score", "loss_fn")) if base.name == "training-state.pt" else None
    return base, data, key


def classify(reply: dict) -> str:
    """The finding a reply is, or its plain outcome (``loaded`` / ``refused``)."""
    outcome = reply["outcome"]
    if outcome in ("crash", "hang", "violation", "unexpected"):
        return outcome
    if not reply.get("intact", False):
        return "changed"
    if reply.get("peak_rss_growth_mb", 0) > MEMORY_FINDING_MB:
        return "memory"
    return outcome


def run(seed: int = 0, cases: int | None = None, seconds: float | None = None, out: Path | None = None,
        timeout_s: float = 30.0, progress: bool = True) -> dict:
    """Run cases ``0, 1, ...`` until ``cases`` are done or ``seconds`` have passed; returns the counts."""
    from tqdm.auto import tqdm

    counts = collections.Counter()
    per_seed = collections.defaultdict(collections.Counter)
    slowest = 0.0
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp, LoadWorker(timeout_s=timeout_s) as worker:
        paths = write_seeds(Path(tmp) / "seeds")
        seeds = [Seed(name, paths[name].read_bytes()) for name in READERS]
        pool = _hostile_snippets() + [s.pickle[a:b] for s in seeds if s.pickle for a, b in s.ops]
        bar = tqdm(total=cases, disable=not progress, unit="case", mininterval=5)
        index = 0
        while (cases is None or index < cases) and (seconds is None or time.monotonic() - start < seconds):
            base, data, key = make_case(seeds, seed, index, pool)
            path = Path(tmp) / "case" / base.name
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(data)
            reply = worker.load(path, base.reader, key)
            kind = classify(reply)
            counts[kind] += 1
            counts["cases"] += 1
            per_seed[base.name][kind] += 1
            slowest = max(slowest, reply.get("seconds", 0.0))
            if kind in FINDINGS and out is not None:
                out.mkdir(parents=True, exist_ok=True)
                stem = f"{kind}-{seed}-{index}-{base.name}"
                (out / stem).write_bytes(data)
                (out / f"{stem}.json").write_text(json.dumps(dict(reply, key=key), indent=1))
            if kind in FINDINGS and progress:
                tqdm.write(f"case {index} ({base.name}): {kind}: {json.dumps(reply)[:600]}")
            if kind == "changed":  # later cases get a fresh child, so each change is counted once
                worker.restart()
            index += 1
            bar.update()
            bar.set_postfix({k: counts[k] for k in ("loaded", "refused", *FINDINGS) if counts[k]}, refresh=False)
        bar.close()
        counts["restarts"] = worker.restarts
    result = {k: counts[k] for k in ("cases", "loaded", "refused", *FINDINGS, "restarts")}
    result.update(seed=seed, seconds=round(time.monotonic() - start, 1), slowest_case_s=round(slowest, 3),
                  per_seed={name: dict(c) for name, c in sorted(per_seed.items())})
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=None, help="number of cases (default: until --seconds)")
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long")
    parser.add_argument("--seed", type=int, default=0, help="run seed; case i is reproducible from (seed, i)")
    parser.add_argument("--out", type=Path, default=None, help="save each finding's mutant and reply here")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds before a case counts as a hang")
    args = parser.parse_args(argv)
    if args.cases is None and args.seconds is None:
        parser.error("give --cases and/or --seconds")
    result = run(args.seed, args.cases, args.seconds, args.out, args.timeout)
    print(json.dumps(result))
    return 1 if any(result[k] for k in FINDINGS) else 0


if __name__ == "__main__":
    sys.exit(main())
