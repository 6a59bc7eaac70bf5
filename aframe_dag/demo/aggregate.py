"""Gather the inference nodes' events into background, zero-lag and foreground files.

Reads every SEGMENT_shifts-TAG directory in --input_dir (TAG: the shifts joined by
'-'; all zeros is zero-lag, as Aframe's aggregation decides it from the name) and
writes to --output_dir:

- background.hdf5: events of the timeslides (livetime: their summed livetime);
- 0lag.hdf5: events of the unshifted data (its livetime);
- foreground.hdf5: every injection, with its detection statistic and SNR.

Each file has a `shift` dataset (events x ifos). The per-node files are kept.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np

from aframe_dag.demo.common import log, read_hdf5, write_hdf5

MARKER = "_shifts-"
BACKGROUND, FOREGROUND, ZERO_LAG = "background.hdf5", "foreground.hdf5", "0lag.hdf5"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m aframe_dag.demo.aggregate", description=__doc__
    )
    add = parser.add_argument
    add("--input_dir", type=Path, required=True, help="holds SEGMENT_shifts-TAG dirs")
    add("--output_dir", type=Path, required=True)
    return parser


def numbers(text: str) -> tuple[float, ...]:
    """'-'-separated numbers, keeping signs and exponents: `0-3`, `0-1e-05`."""
    return tuple(float(x) for x in re.split(r"(?<=[\d.])-", text))


def parse_tag(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(segment start and duration, shifts) of `1262310214-392_shifts-0-3`."""
    segment, marker, shifts = name.rpartition(MARKER)
    if not marker:
        raise ValueError(f"{name!r} is not SEGMENT_shifts-TAG")
    try:
        return numbers(segment), numbers(shifts)
    except ValueError:
        raise ValueError(f"cannot read the numbers in {name!r}") from None


def find_nodes(input_dir: Path) -> list[tuple[Path, tuple[float, ...]]]:
    """(dir, shifts) of each node: by segment, then zero-lag, then growing shifts."""
    nodes = [(d, *parse_tag(d.name)) for d in input_dir.glob(f"*{MARKER}*") if d.is_dir()]
    missing = sorted(
        str(d / f) for d, _, _ in nodes for f in (BACKGROUND, FOREGROUND) if not (d / f).is_file()
    )
    if missing:
        raise SystemExit(f"missing inference outputs: {', '.join(missing)}")
    nodes.sort(key=lambda node: (node[1], [abs(s) for s in node[2]]))
    return [(d, shifts) for d, _, shifts in nodes]


def gather(files: list[tuple[Path, tuple[float, ...]]]) -> tuple[dict[str, np.ndarray], float]:
    """Concatenated datasets, with a `shift` row per event, and the summed livetime."""
    columns: dict[str, list[np.ndarray]] = {}
    livetime = 0.0
    for path, shifts in files:
        datasets, attrs = read_hdf5(path)
        livetime += float(attrs["livetime"])
        for name, values in datasets.items():
            columns.setdefault(name, []).append(values)
        columns.setdefault("shift", []).append(np.tile(shifts, (len(datasets["time"]), 1)))
    return {name: np.concatenate(values) for name, values in columns.items()}, livetime


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    nodes = find_nodes(args.input_dir)
    if not nodes:
        raise SystemExit(f"no *{MARKER}* directories in {args.input_dir}")
    zero = [(d / BACKGROUND, s) for d, s in nodes if not any(s)]
    slid = [(d / BACKGROUND, s) for d, s in nodes if any(s)]
    if not slid:
        raise SystemExit("no timeslides: the background needs shifted data")
    written = []
    for name, files in (
        (BACKGROUND, slid),
        (ZERO_LAG, zero),
        (FOREGROUND, [(d / FOREGROUND, s) for d, s in nodes]),
    ):
        if not files:
            continue
        data, livetime = gather(files)
        write_hdf5(args.output_dir / name, data, {"livetime": livetime, "num_nodes": len(files)})
        written.append(f"{name}: {len(data['time'])} events, {livetime:g} s")
    log(f"{len(nodes)} nodes -> {args.output_dir}: " + "; ".join(written))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
