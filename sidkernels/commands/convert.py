"""Convert an EDM/SiD checkpoint into a sidkernels .safetensors file plus a .json config.

Reads official EDM and SiD snapshot pickles (.pkl) and SiD training states (.pt) with the restricted loader,
which imports and runs nothing from the file, or re-writes one of our .safetensors files.  The config
(class and constructor keywords) is stored in the safetensors metadata and, for reading, in a .json file
next to it.
"""
from __future__ import annotations

import sys
from pathlib import Path


def add_arguments(parser) -> None:
    parser.add_argument("input", help="EDM/SiD .pkl, SiD training-state .pt, or sidkernels .safetensors")
    parser.add_argument("output", help="output .safetensors path (the .json config is written next to it)")
    parser.add_argument("--key", default=None,
                        help="network inside the file: 'ema' (.pkl default), 'G_ema' (.pt default), 'G', "
                             "'fake_score'")


def run(args) -> int:
    import pickle

    from sidkernels.checkpoint import CheckpointError, load_checkpoint, save_network

    output = Path(args.output)
    if output.suffix != ".safetensors":
        print(f"error: output must end in .safetensors, got {output}", file=sys.stderr)
        return 2
    try:
        net = load_checkpoint(args.input, key=args.key)
    except (CheckpointError, pickle.UnpicklingError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    weights, config = save_network(net, output)
    count = sum(p.numel() for p in net.parameters())
    model = net.init_kwargs.get("model_type", "")
    print(f"{args.input} -> {weights} (+ {config.name}): {type(net).__name__}({model}), {count:,} parameters")
    return 0
