"""Merge per-job testing waveforms and rejected parameters (TestingWaveforms.run)."""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

PREFIX = "tmp-"
WAVEFORMS, REJECTED = "waveforms.hdf5", "rejected-parameters.hdf5"


def build_parser() -> argparse.ArgumentParser:
    """Build the command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--input-dir",
        type=Path,
        required=True,
        help=f"directory of tmp-<branch>/ dirs holding {WAVEFORMS} and "
        f"{REJECTED}; the tmp-* dirs are removed afterwards",
    )
    parser.add_argument(
        "--waveforms-file",
        type=Path,
        required=True,
        help="merged injection (response set) file to write",
    )
    parser.add_argument(
        "--rejected-file",
        type=Path,
        required=True,
        help="merged rejected-parameters file to write",
    )
    parser.add_argument(
        "--ifos",
        nargs="+",
        required=True,
        metavar="IFO",
        help="interferometers the waveforms were projected onto, e.g. H1 L1",
    )
    return parser


def find_parts(input_dir: Path) -> list[Path]:
    """Return the tmp-<branch> dirs in branch order, checking their contents."""
    dirs = [p for p in input_dir.glob(f"{PREFIX}*") if p.is_dir()]
    bad = [p.name for p in dirs if not p.name[len(PREFIX) :].isdigit()]
    if bad:
        raise ValueError(f"unexpected directories in {input_dir}: {sorted(bad)}")
    missing = [str(d / f) for d in dirs for f in (WAVEFORMS, REJECTED)]
    missing = [m for m in missing if not Path(m).is_file()]
    if missing:
        raise ValueError(f"missing input files: {', '.join(sorted(missing))}")
    return sorted(dirs, key=lambda p: int(p.name[len(PREFIX) :]))


def merge(dirs: list[Path], waveforms: Path, rejected: Path, ifos: list[str]) -> None:
    """Aggregate both file sets with the classes TestingWaveforms.run uses."""
    from ledger.injections import (
        InjectionParameterSet,
        InterferometerResponseSet,
        waveform_class_factory,
    )

    cls = waveform_class_factory(ifos, InterferometerResponseSet, "ResponseSet")
    cls.aggregate([d / WAVEFORMS for d in dirs], waveforms, clean=True)
    InjectionParameterSet.aggregate([d / REJECTED for d in dirs], rejected, clean=True)


def main(argv: list[str] | None = None) -> int:
    """Merge the tmp-* parts into the two output files, then remove them."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.input_dir.is_dir():
        parser.error(f"input directory {args.input_dir} does not exist")
    try:
        dirs = find_parts(args.input_dir)
    except ValueError as exc:
        parser.error(str(exc))
    if not dirs:
        parser.error(f"no {PREFIX}* directories found in {args.input_dir}")

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    logging.info("Merging %d testing waveform parts", len(dirs))
    for out in (args.waveforms_file, args.rejected_file):
        out.parent.mkdir(parents=True, exist_ok=True)
    merge(dirs, args.waveforms_file, args.rejected_file, args.ifos)
    for d in dirs:
        shutil.rmtree(d)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
