"""Simulated science segments: the times when every detector was observing.

Each detector alternates between observing (a few hundred s) and down (tens of s), at
random but seeded by --seed and the detector; the segments are the coincident
observing times of at least --min_duration s, written as a segwizard file
(`# seg start stop duration`), as Aframe's `data query` does.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from aframe_dag.demo.common import log, parse_words, rng, write_segments

IFO_KEYS = {"H1": 1, "L1": 2, "V1": 3}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m aframe_dag.demo.query", description=__doc__)
    add = parser.add_argument
    add("--start", type=float, required=True, help="GPS start")
    add("--end", type=float, required=True, help="GPS end")
    add("--ifos", type=parse_words, required=True, help="e.g. [H1,L1]")
    add("--min_duration", type=float, default=0, help="shortest segment kept, s")
    add("--mean_up", type=float, default=500, help="mean observing stretch of one ifo, s")
    add("--mean_down", type=float, default=60, help="mean down time of one ifo, s")
    add("--seed", type=int, default=0)
    add("--output_file", type=Path, required=True)
    return parser


def observing(
    start: int, end: int, mean_up: float, mean_down: float, seed: int, key: int
) -> list[tuple[int, int]]:
    """One detector's observing stretches in [start, end), whole seconds."""
    generator = rng(seed, start, key)
    stretches, t, up = [], start, True
    while t < end:
        length = max(1, int(generator.exponential(mean_up if up else mean_down)))
        if up:
            stretches.append((t, min(t + length, end)))
        t, up = t + length, not up
    return stretches


def intersect(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Times in both lists of sorted, disjoint segments."""
    out = []
    for start_a, stop_a in a:
        for start_b, stop_b in b:
            start, stop = max(start_a, start_b), min(stop_a, stop_b)
            if stop > start:
                out.append((start, stop))
    return sorted(out)


def query(
    start: int,
    end: int,
    ifos: list[str],
    min_duration: float,
    mean_up: float,
    mean_down: float,
    seed: int,
) -> list[tuple[int, int]]:
    segments = [(start, end)]
    for ifo in ifos:
        key = IFO_KEYS.get(ifo, sum(map(ord, ifo)))
        segments = intersect(segments, observing(start, end, mean_up, mean_down, seed, key))
    return [(a, b) for a, b in segments if b - a >= min_duration]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    segments = query(
        int(args.start),
        int(args.end),
        args.ifos,
        args.min_duration,
        args.mean_up,
        args.mean_down,
        args.seed,
    )
    if not segments:
        log(f"no coincident segments of at least {args.min_duration:g} s")
        return 1
    write_segments(args.output_file, segments)
    total = sum(b - a for a, b in segments)
    log(f"{len(segments)} segments, {total} s of {'+'.join(args.ifos)} time -> {args.output_file}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
