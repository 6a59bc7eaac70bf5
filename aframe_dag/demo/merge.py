"""Merge the waveform parts into a training file and a testing file.

Reads waveforms-*.hdf5 in --input_dir in part order and concatenates them; the last
--test_fraction of the signals become the testing injections, the rest the training
set, so the network never sees the signals it is tested on. The parts are kept.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np

from aframe_dag.demo.common import log, read_hdf5, write_hdf5


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m aframe_dag.demo.merge", description=__doc__)
    add = parser.add_argument
    add("--input_dir", type=Path, required=True, help="holds waveforms-INDEX.hdf5")
    add("--training_file", type=Path, required=True)
    add("--testing_file", type=Path, required=True)
    add("--test_fraction", type=float, default=0.5)
    return parser


def parts(input_dir: Path) -> list[Path]:
    """The part files, by their index (waveforms-2 before waveforms-10)."""
    found = [
        p
        for p in input_dir.glob("waveforms-*.hdf5")
        if re.fullmatch(r"waveforms-\d+\.hdf5", p.name)
    ]
    return sorted(found, key=lambda p: int(p.stem.split("-")[1]))


def merge(files: list[Path]) -> tuple[dict[str, np.ndarray], dict[str, object]]:
    """Concatenate the datasets of the parts (their attributes must agree)."""
    columns: dict[str, list[np.ndarray]] = {}
    attrs: dict[str, object] | None = None
    for path in files:
        datasets, part_attrs = read_hdf5(path)
        if attrs is not None and set(part_attrs) != set(attrs):
            raise SystemExit(f"{path}: attributes differ from the first part's")
        if attrs is None:
            attrs = part_attrs
        for name, values in datasets.items():
            columns.setdefault(name, []).append(values)
    return {name: np.concatenate(values) for name, values in columns.items()}, attrs or {}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    files = parts(args.input_dir)
    if not files:
        raise SystemExit(f"no waveforms-INDEX.hdf5 in {args.input_dir}")
    data, attrs = merge(files)
    total = len(data["snr"])
    split = total - round(total * args.test_fraction)
    write_hdf5(args.training_file, {k: v[:split] for k, v in data.items()}, attrs)
    write_hdf5(args.testing_file, {k: v[split:] for k, v in data.items()}, attrs)
    log(
        f"{len(files)} parts, {total} signals: {split} for training -> {args.training_file}, "
        f"{total - split} for testing -> {args.testing_file}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
