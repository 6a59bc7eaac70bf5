"""Aggregate per-node inference results, as Aframe's Infer.run does."""

from __future__ import annotations

import argparse
import logging
import re
import shutil
from pathlib import Path

MARKER = "_shifts-"
BACKGROUND, FOREGROUND, ZERO_LAG = "background.hdf5", "foreground.hdf5", "0lag.hdf5"
Node = tuple[Path, tuple[float, ...]]


def build_parser() -> argparse.ArgumentParser:
    """Build the command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__)
    add = parser.add_argument
    add("--input-dir", type=Path, required=True, help="holds <segment>_shifts-* dirs")
    add("--output-dir", type=Path, required=True, help="where to write the 3 files")
    add("--keep-input", action="store_true", help="do not remove --input-dir")
    return parser


def parse_numbers(text: str, name: str) -> tuple[float, ...]:
    """Parse '-'-separated numbers, keeping signs and exponents like 1e-05."""
    try:
        return tuple(float(x) for x in re.split(r"(?<=[\d.])-", text))
    except ValueError:
        raise ValueError(f"cannot parse node directory name {name!r}") from None


def find_nodes(input_dir: Path) -> list[Node]:
    """Return (dir, shifts) per node in the task's branch order."""
    dirs = [p for p in input_dir.glob(f"*{MARKER}*") if p.is_dir()]
    expected = [d / f for d in dirs for f in (BACKGROUND, FOREGROUND)]
    missing = sorted(str(m) for m in expected if not m.is_file())
    if missing:
        raise ValueError(f"missing input files: {', '.join(missing)}")
    keys = {}
    for d in dirs:
        segment, _, shifts = d.name.rpartition(MARKER)
        keys[d] = (parse_numbers(segment, d.name), parse_numbers(shifts, d.name))
    # branch order: by segment, then zero lag, then increasing shift multiple
    order = sorted(dirs, key=lambda d: (keys[d][0], [abs(s) for s in keys[d][1]]))
    return [(d, keys[d][1]) for d in order]


def file_length(path: Path) -> int:
    """Number of ledger rows, from the 'length' attribute Ledger.write sets."""
    import h5py

    with h5py.File(path, "r") as f:
        return int(f.attrs["length"])


def aggregate(nodes: list[Node], out: Path) -> None:
    """Aggregate background, foreground and zero-lag events like Infer.run."""
    from ledger.events import EventSet, RecoveredInjectionSet

    zero = [d / BACKGROUND for d, shifts in nodes if not any(shifts)]
    back = [d / BACKGROUND for d, shifts in nodes if any(shifts)]
    fore = [(d / FOREGROUND, file_length(d / FOREGROUND)) for d, _ in nodes]
    # The infer CLI writes no metadata.json, so the lengths the task takes
    # from it are read from each file's 'length' attribute instead (this is
    # also what Ledger.aggregate does when given length=None).
    logging.info("Aggregating background files")
    EventSet.aggregate(back, out / BACKGROUND, clean=False, length=sum(map(file_length, back)))
    logging.info("Aggregating foreground files")
    RecoveredInjectionSet.aggregate(
        [f for f, n in fore if n > 0],
        out / FOREGROUND,
        clean=False,
        length=sum(n for _, n in fore),
    )
    if zero:
        logging.info("Aggregating zero lag files")
        EventSet.aggregate(zero, out / ZERO_LAG, clean=False, length=sum(map(file_length, zero)))
    if back:
        background = EventSet.read(out / BACKGROUND)
        background = background.sort_by("detection_statistic")
        background.write(out / BACKGROUND)


def main(argv: list[str] | None = None) -> int:
    """Aggregate node outputs into --output-dir, then remove --input-dir."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.input_dir.is_dir():
        parser.error(f"input directory {args.input_dir} does not exist")
    out = args.output_dir.resolve()
    if not args.keep_input and args.input_dir.resolve() in (out, *out.parents):
        parser.error("--output-dir must not be inside --input-dir unless --keep-input")
    try:
        nodes = find_nodes(args.input_dir)
    except ValueError as exc:
        parser.error(str(exc))
    if not nodes:
        parser.error(f"no *{MARKER}* node directories found in {args.input_dir}")

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    args.output_dir.mkdir(parents=True, exist_ok=True)
    aggregate(nodes, args.output_dir)
    if not args.keep_input:
        shutil.rmtree(args.input_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
