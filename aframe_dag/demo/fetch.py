"""Background for one piece of a segment: coloured Gaussian noise in each detector.

Writes PREFIX-START-DURATION.hdf5 in --output_directory with one dataset per ifo and
attributes t0 and sample_rate, as Aframe's `data fetch` does. The noise is seeded by
--seed, the start time and the detector, so a piece always holds the same data.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from aframe_dag.demo.common import (
    background_name,
    coloured_noise,
    log,
    parse_words,
    rng,
    write_hdf5,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m aframe_dag.demo.fetch", description=__doc__)
    add = parser.add_argument
    add("--start", type=float, required=True, help="GPS start")
    add("--end", type=float, required=True, help="GPS end")
    add("--channels", type=parse_words, required=True, help="ifos, e.g. [H1,L1]")
    add("--sample_rate", type=float, required=True, help="Hz")
    add("--seed", type=int, default=0)
    add("--output_directory", type=Path, required=True)
    add("--prefix", default="background")
    return parser


def fetch(
    start: float, end: float, channels: list[str], sample_rate: float, seed: int
) -> dict[str, np.ndarray]:
    """Noise for each channel over [start, end)."""
    num_samples = round((end - start) * sample_rate)
    return {
        ifo: coloured_noise(num_samples, sample_rate, ifo, rng(seed, start, i)).astype(np.float32)
        for i, ifo in enumerate(channels)
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.end <= args.start:
        raise SystemExit(f"--end ({args.end:g}) must be after --start ({args.start:g})")
    data = fetch(args.start, args.end, args.channels, args.sample_rate, args.seed)
    path = args.output_directory / background_name(args.prefix, args.start, args.end)
    write_hdf5(path, data, {"t0": args.start, "sample_rate": args.sample_rate})
    ifos = "+".join(args.channels)
    log(f"{args.end - args.start:g} s of {ifos} at {args.sample_rate:g} Hz -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
