"""Merge per-job validation waveform files, as ValidationWaveforms.run does."""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

PREFIX, SUFFIX = "waveforms-", ".hdf5"


def build_parser() -> argparse.ArgumentParser:
    """Build the command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--input-dir",
        type=Path,
        required=True,
        help="directory of waveforms-<branch>.hdf5 parts; removed afterwards",
    )
    parser.add_argument(
        "--output-file",
        type=Path,
        required=True,
        help="merged validation waveform file to write",
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
    """Return the waveforms-<branch>.hdf5 parts in branch order."""
    glob = input_dir.glob(f"{PREFIX}*{SUFFIX}")
    parts = {p: p.name[len(PREFIX) : -len(SUFFIX)] for p in glob}
    bad = sorted(p.name for p, branch in parts.items() if not branch.isdigit())
    if bad:
        raise ValueError(f"unexpected files in {input_dir}: {bad}")
    return sorted(parts, key=lambda p: int(parts[p]))


def merge(files: list[Path], output_file: Path, ifos: list[str]) -> None:
    """Aggregate the parts with the class ValidationWaveforms.run builds."""
    from ledger.injections import WaveformSet, waveform_class_factory

    # ValidationWaveforms.run names the merge class "WaveformSet"
    # (the deploy task's "IfoWaveformSet" name is not written to the file)
    cls = waveform_class_factory(ifos, WaveformSet, "WaveformSet")
    cls.aggregate(files, output_file, clean=True)


def main(argv: list[str] | None = None) -> int:
    """Merge the parts into --output-file, then remove --input-dir."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.input_dir.is_dir():
        parser.error(f"input directory {args.input_dir} does not exist")
    if args.input_dir.resolve() in args.output_file.resolve().parents:
        parser.error("--output-file must not be inside --input-dir")
    try:
        files = find_parts(args.input_dir)
    except ValueError as exc:
        parser.error(str(exc))
    if not files:
        parser.error(f"no {PREFIX}*{SUFFIX} files found in {args.input_dir}")

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    logging.info("Merging %d files into %s", len(files), args.output_file)
    args.output_file.parent.mkdir(parents=True, exist_ok=True)
    merge(files, args.output_file, args.ifos)
    shutil.rmtree(args.input_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
