"""Instructions per output element of the noise-injection kernel (``_add_noise_kernel``), compiled for a GPU
target on a machine without a GPU.

    python benchmarks/ptx_instructions.py                        # this tree, sm_90 (H100/H200)
    python benchmarks/ptx_instructions.py --root /tmp/wt-before  # another checkout of the repo

The kernel is compiled (never launched) through the tree's own launch code as ``add_noise(x, sigma,
return_net_input=True)`` launches it on an H100 (132 SMs pick BLOCK and num_warps): EDM c_in, the network
input in x's dtype, no eps output.  Each thread handles BLOCK / (32 num_warps) elements in one pass.

The code is not quite straight-line: libdevice's sinf/cosf carry a Payne-Hanek slow path (a loop) for
|angle| >= 105615 and logf a fix-up for non-finite arguments.  The Box-Muller angles are in [0, 2 pi) and the
log arguments in (0, 1], so those paths never run.  The counts are over the *executed* code: the blocks
reachable from the entry when the branches on those two range checks (compares with 105615.0 and with the
bits of +inf) are resolved, and every other branch may go either way.  That reachable code must be acyclic
(checked), so each block runs at most once per warp; blocks on either side of a data-dependent branch (the
sin/cos quadrant) are both counted, as a warp whose lanes disagree issues both.

    PTX / element      instructions (no labels, directives, comments, braces) executed per thread,
                       divided by the elements per thread
    SASS / element     the same for ``cuobjdump -sass`` of the cubin (ptxas of the Triton wheel)
    Philox / element   Philox 4x32-10 calls per element: in the executed PTX, the high-word multiplies by
                       its round constant 0xD2511F53 of a counter word (round one's, one per call; every
                       later round's operand depends on the key, loaded from the seed tensor)
    static             all instructions of the entry, the cold paths included (SASS: no NOPs)

Counts are thread instructions (a warp issues one per 32 of them); predicated-off instructions count as
executed.  Nothing here needs a GPU.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

SHAPES = {"cifar": (256, 3, 32, 32), "64px": (128, 3, 64, 64), "latent": (32, 4, 128, 128)}
H100_SMS = 132
PHILOX_A = re.compile(r"(?<![\w.])(-766435501|3528531795|0[xX][dD]2511[fF]53)\b")  # Philox round multiplier
# Immediates of range checks this kernel's values always pass: every value compared with them is below them
# (Box-Muller angle 2 pi u < 105615, the slow-path bound of sinf/cosf; a finite positive logf argument's bits
# < those of +inf).  PTX spells them 0f47CE4780 and 2139095040, SASS 105615 and 0x7f800000.
BELOW = {"0f47CE4780", "2139095040", "105615", "0x7f800000"}
# compare -> its result when the left operand is below the right one (neither NaN)
LESS_RESULT = {"lt": True, "lo": True, "le": True, "ls": True, "ne": True, "ltu": True, "leu": True,
               "neu": True, "gt": False, "hi": False, "ge": False, "hs": False, "eq": False, "gtu": False,
               "geu": False, "equ": False}
SWAPPED = {"lt": "gt", "lo": "hi", "le": "ge", "ls": "hs", "gt": "lt", "hi": "lo", "ge": "le", "hs": "ls",
           "ltu": "gtu", "leu": "geu", "gtu": "ltu", "geu": "leu", "eq": "eq", "ne": "ne", "equ": "equ",
           "neu": "neu"}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1],
                   help="repository root whose sidkernels is compiled (default: this script's tree)")
    p.add_argument("--arch", type=int, default=90, help="CUDA compute capability, e.g. 90 or 80")
    p.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    p.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16", "fp16"])
    p.add_argument("--dump", type=Path, help="write each kernel's PTX and SASS into this folder")
    return p.parse_args()


# ------------------------------------------------------------------ compiling without a GPU
def compile_only_driver(arch: int):
    """This script's tree's compile-only Triton driver, loaded by file path: ``--root`` may name a checkout
    without one, and importing it as ``sidkernels`` would shadow that checkout's package."""
    import importlib.util
    path = Path(__file__).resolve().parents[1] / "sidkernels" / "_compile_only.py"
    spec = importlib.util.spec_from_file_location("_sidkernels_compile_only", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CompileOnlyDriver(arch)


def launch_add_noise(x, sigma, seed, xt, net, eps):
    """Call the tree's own launch code for ``_add_noise_kernel`` (EDM, sigma_data 0.5) with H100 geometry."""
    import torch
    try:  # the op layer (one module per op), f5b06b7 on
        from sidkernels._triton import run
        from sidkernels.ops.add_noise import triton as noise
    except ImportError:  # before it: sidkernels.kernels.noise picks the block from the CUDA device's SMs
        from sidkernels.kernels import _common, noise
        _common._sm_count = lambda index: H100_SMS
        noise.launch_config = lambda n, d, device, block=None: _common.launch_config(
            n, d, torch.device("cuda", 0), block)
        noise.add_noise_fwd(x, sigma, seed, xt, net, eps, 0, 0.5)
    else:
        run(noise.launches(x, sigma, seed, xt, net, eps, 0, 0.5, sms=H100_SMS), x.device)


def compile_case(shape, dtype):
    """(BLOCK, num_warps, compiled kernel) of the one launch ``launch_add_noise`` makes, compiled only."""
    import torch
    from triton.runtime.jit import JITFunction

    compiled = []
    launch = JITFunction.run

    def compile_only(self, *args, grid, warmup, **kwargs):
        kernel = launch(self, *args, grid=grid, warmup=True, **kwargs)
        compiled.append((self.fn.__name__, kwargs["BLOCK"], kernel))
        return kernel

    x = torch.zeros(shape, dtype=dtype)
    JITFunction.run = compile_only
    try:
        launch_add_noise(x, torch.ones(shape[0]), torch.tensor([5]), torch.empty_like(x), torch.empty_like(x),
                         torch.empty(0))
    finally:
        JITFunction.run = launch
    (name, block, kernel), = compiled
    assert name == "_add_noise_kernel", name
    return block, kernel.metadata.num_warps, kernel


# ------------------------------------------------------------------ executed code
@dataclass
class Instr:
    text: str
    guard: tuple[str, bool] | None = None   # (predicate, negated)
    target: str | None = None               # branch target label
    terminal: bool = False                  # unguarded ret/exit
    writes: tuple[str, ...] = ()            # predicates written
    fact: tuple[str, bool] | None = None    # predicate written with a known value


@dataclass
class Block:
    instrs: list[Instr] = field(default_factory=list)
    label: str | None = None


def _compare_fact(cmp: str, left: str, right: str) -> bool | None:
    """The result of ``left CMP right`` when one side is a BELOW immediate, else None."""
    if right in BELOW:
        return LESS_RESULT.get(cmp)
    if left in BELOW:
        return LESS_RESULT.get(SWAPPED.get(cmp, ""))
    return None


def _guard(token: str) -> tuple[str, bool]:
    return token[1:].lstrip("!"), token.startswith("@!")


def parse_ptx(ptx: str) -> list[tuple[str, object]]:
    """The entry's labels and instructions, in order."""
    items = []
    for line in ptx[ptx.index(".entry"):].splitlines():
        line = line.split("//")[0].strip()
        if m := re.match(r"^(\$?[\w.$]+):$", line):
            items.append(("label", m.group(1)))
            continue
        if not line.endswith(";") or line.startswith("."):
            continue
        tokens = line[:-1].replace(",", " ").split()
        ins = Instr(line)
        if tokens[0].startswith("@"):
            ins.guard = _guard(tokens.pop(0))
        op, operands = tokens[0], tokens[1:]
        if op.startswith("bra"):
            ins.target = operands[-1]
        elif op in ("ret", "exit") and ins.guard is None:
            ins.terminal = True
        elif operands and operands[0].startswith("%p"):
            ins.writes = tuple(operands[0].split("|"))
            if op.startswith("setp.") and len(operands) == 3:
                value = _compare_fact(op.split(".")[1], operands[1], operands[2])
                if value is not None:
                    ins.fact = (ins.writes[0], value)
        items.append(("instr", ins))
    return items


def parse_sass(sass: str) -> list[tuple[str, object]]:
    """cuobjdump -sass text -> labels (branch-target addresses) and instructions, in order."""
    lines = [(int(a, 16), t.strip()) for a, t in re.findall(r"/\*([0-9a-f]{4,})\*/\s+([^;/]*?)\s*;", sass)]
    targets = {int(t, 16) for _, text in lines for t in re.findall(r"\bBRA(?:\.\w+)*\s+(0x[0-9a-f]+)", text)}
    items = []
    for addr, text in lines:
        if addr in targets:
            items.append(("label", hex(addr)))
        tokens = text.replace(",", " ").split()
        ins = Instr(text)
        if tokens[0].startswith("@"):
            ins.guard = _guard(tokens.pop(0))
        op, operands = tokens[0], [t.split(".reuse")[0] for t in tokens[1:]]
        assert not op.startswith(("CALL", "BRX", "JMX")), f"indirect or call flow not handled: {text}"
        if op.startswith("BRA"):
            ins.target = hex(int(operands[-1], 16))
            if ins.guard is None and len(operands) > 1:  # a condition operand (BRA.U !UP0, ...): either way
                ins.guard = ("?", False)
        elif op.startswith(("EXIT", "RET")) and ins.guard is None:
            ins.terminal = True
        else:  # destinations lead: a first predicate, or predicates right after the first register
            dsts = operands[:1] + [o for o in operands[1:3] if re.fullmatch(r"P\d|PT", o)]
            ins.writes = tuple(o for o in dsts if re.fullmatch(r"P\d", o))
            if op.startswith("R2P"):  # unpacks a register into the predicates its mask selects
                mask = int(operands[-1], 0) if re.fullmatch(r"0x[0-9a-f]+|\d+", operands[-1]) else 0x7f
                ins.writes = tuple(f"P{k}" for k in range(7) if mask >> k & 1)
            parts = op.split(".")
            if (parts[0] in ("FSETP", "ISETP") and "AND" in parts and "EX" not in parts and len(operands) == 5
                    and operands[4] == "PT" and ins.writes[:1] == (operands[0],)):
                value = _compare_fact(parts[1].lower(), operands[2], operands[3])
                if value is not None:
                    ins.fact = (operands[0], value)
        items.append(("instr", ins))
    return items


def executed(items) -> list[Instr]:
    """Instructions of the blocks reachable with the BELOW range checks resolved; asserts no loop."""
    blocks = [Block()]
    for kind, item in items:
        if kind == "label":
            if blocks[-1].instrs or blocks[-1].label:
                blocks.append(Block())
            blocks[-1].label = item
        else:
            blocks[-1].instrs.append(item)
            if item.target or item.terminal:
                blocks.append(Block())
    index = {b.label: i for i, b in enumerate(blocks) if b.label}

    def successors(i, state):
        last = blocks[i].instrs[-1] if blocks[i].instrs else None
        if last is None or not (last.target or last.terminal):
            return [i + 1] if i + 1 < len(blocks) else []
        if last.terminal:
            return []
        target, fall = index[last.target], i + 1
        if last.guard is None:
            return [target]
        known = state.get(last.guard[0])
        if known is None:
            return [target, fall]
        return [target] if known != last.guard[1] else [fall]

    def transfer(i, state):
        state = dict(state)
        for ins in blocks[i].instrs:
            for p in ins.writes:
                state.pop(p, None)
            if ins.fact and ins.guard is None:
                state[ins.fact[0]] = ins.fact[1]
        return state

    entry_states, work = {0: {}}, [0]
    while work:  # forward dataflow of known predicate values to a fixed point
        i = work.pop()
        out = transfer(i, entry_states[i])
        for j in successors(i, out):
            old = entry_states.get(j)
            new = out if old is None else {k: v for k, v in old.items() if out.get(k) == v}
            if old is None or new != old:
                entry_states[j] = new
                work.append(j)
    edges = {i: successors(i, transfer(i, s)) for i, s in entry_states.items()}
    colour = {}

    def visit(i):  # depth-first search for a cycle among the reachable blocks
        colour[i] = 1
        for j in edges[i]:
            assert colour.get(j) != 1, "the executed code has a loop: per-element counts need its trip count"
            if j not in colour:
                visit(j)
        colour[i] = 2

    visit(0)
    return [ins for i in sorted(entry_states) for ins in blocks[i].instrs]


def philox_calls(ptx_instrs: list[Instr]) -> int:
    """Philox calls per thread: the high-word multiplies by the round constant 0xD2511F53 of a counter word,
    one per call (round one's; every later round's operand depends on the key, i.e. on the seed's load)."""
    defs: dict[str, list[tuple[str, list[str]]]] = {}  # register -> (opcode, source registers) of its writes
    mulhi_a = []                                         # source registers of the mul.hi by the constant
    const_a = set()                                      # registers holding the constant
    for ins in ptx_instrs:
        text = ins.text.split(None, 1)[1] if ins.guard else ins.text
        op, _, rest = text.partition(" ")
        regs = re.findall(r"%\w+", rest)
        if regs and not op.startswith(("st.", "bra", "ret")):
            defs.setdefault(regs[0], []).append((op, regs[1:]))
        if op.startswith("mov.") and PHILOX_A.search(rest) and regs:
            const_a.add(regs[0])
        if op.startswith("mul.hi.") and (PHILOX_A.search(rest) or const_a & set(regs[1:])):
            mulhi_a.append([r for r in regs[1:] if r not in const_a])

    def loads(reg: str) -> bool:  # whether a global load (the seed) feeds reg
        stack, seen = [reg], set()
        while stack:
            r = stack.pop()
            if r not in seen:
                seen.add(r)
                for op, srcs in defs.get(r, ()):
                    if op.startswith("ld.global"):
                        return True
                    stack.extend(srcs)
        return False

    return sum(not any(loads(r) for r in srcs) for srcs in mulhi_a)


def cuobjdump(cubin: bytes, tool: str, flag: str) -> str:
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        return subprocess.run([tool, flag, f.name], capture_output=True, text=True, check=True).stdout


# ------------------------------------------------------------------ the table
def main():
    args = parse_args()
    os.environ["TRITON_INTERPRET"] = "0"
    if "TRITON_CACHE_DIR" in os.environ:
        table(args)
    else:  # compile afresh, leaving no cache behind
        with tempfile.TemporaryDirectory(prefix="ptx-instructions-") as cache:
            os.environ["TRITON_CACHE_DIR"] = cache
            table(args)


def table(args):
    root = args.root.resolve()
    sys.path.insert(0, str(root))

    import torch
    import triton
    from triton.runtime import driver
    import sidkernels

    assert Path(sidkernels.__file__).resolve().is_relative_to(root), f"imported {sidkernels.__file__}"
    driver.set_active(compile_only_driver(args.arch))
    tool = str(Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump")
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    git = ["git", "-C", str(root)]
    rev = subprocess.run(git + ["rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(git + ["status", "--porcelain", "--untracked-files=no"], capture_output=True,
                           text=True).stdout.strip()
    print(f"# {root} @ {rev}{' + working tree' if dirty else ''}; sm_{args.arch}; triton {triton.__version__}, "
          f"torch {torch.__version__}; add_noise forward, EDM, net_input in x's dtype, no eps")
    print(f"{'shape':<7} {'dtype':<5} {'BLOCK':>5} {'warps':>5} {'el/thr':>6} {'PTX/el':>7} {'static':>7} "
          f"{'SASS/el':>7} {'static':>7} {'Philox/el':>9} {'regs':>4}")
    for shape_name in args.shapes:
        for dtype_name in args.dtypes:
            block, warps, kernel = compile_case(SHAPES[shape_name], dtypes[dtype_name])
            per_thread = block // (32 * warps)
            ptx = kernel.asm["ptx"]
            sass = cuobjdump(kernel.asm["cubin"], tool, "-sass")
            ptx_all, sass_all = parse_ptx(ptx), parse_sass(sass)
            ptx_run, sass_run = executed(ptx_all), executed(sass_all)
            n_static = [sum(kind == "instr" and not ins.text.startswith("NOP") for kind, ins in items)
                        for items in (ptx_all, sass_all)]
            regs = int(re.search(r"\bREG:(\d+)", cuobjdump(kernel.asm["cubin"], tool, "-res-usage")).group(1))
            print(f"{shape_name:<7} {dtype_name:<5} {block:>5} {warps:>5} {per_thread:>6} "
                  f"{len(ptx_run) / per_thread:>7.2f} {n_static[0] / per_thread:>7.2f} "
                  f"{len(sass_run) / per_thread:>7.2f} {n_static[1] / per_thread:>7.2f} "
                  f"{philox_calls(ptx_run) / per_thread:>9.3g} {regs:>4}")
            if args.dump:
                args.dump.mkdir(parents=True, exist_ok=True)
                stem = args.dump / f"add_noise-{shape_name}-{dtype_name}-sm{args.arch}"
                stem.with_suffix(".ptx").write_text(ptx)
                stem.with_suffix(".sass").write_text(sass)


if __name__ == "__main__":
    main()
