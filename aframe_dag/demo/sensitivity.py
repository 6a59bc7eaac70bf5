"""Detection efficiency at a fixed false-alarm rate: a plot and a summary.

The background (timeslides) fixes the threshold: at --far per hour over its livetime T,
at most floor(far * T) background events may be louder, so the threshold is the
detection statistic of the next loudest one. An injection is detected when its
statistic is above the threshold; the efficiency in each bin of optimal network SNR
is the detected fraction (with a 68% Wilson interval).

Writes --output_dir/sensitivity.png and --summary (text).
"""

from __future__ import annotations

import argparse
import itertools
import math
from pathlib import Path

import numpy as np

from aframe_dag.demo.common import Array, atomic, log, parse_floats, read_hdf5


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m aframe_dag.demo.sensitivity", description=__doc__
    )
    add = parser.add_argument
    add("--background", type=Path, required=True, help="background.hdf5 from aggregate")
    add("--foreground", type=Path, required=True, help="foreground.hdf5 from aggregate")
    add("--zero_lag", type=Path, default=None, help="0lag.hdf5 from aggregate (optional)")
    add("--far", type=float, default=1, help="false-alarm rate, per hour")
    add(
        "--snr_bins",
        type=parse_floats,
        default=[0, 4, 6, 8, 10, 12, 14, 16, 20, 30],
        help="bin edges",
    )
    add("--output_dir", type=Path, required=True, help="for sensitivity.png")
    add("--summary", type=Path, required=True, help="text summary")
    return parser


def far_threshold(background: Array, livetime: float, far_per_second: float) -> float:
    """The statistic above which at most floor(far * livetime) background events lie."""
    allowed = math.floor(far_per_second * livetime)
    if allowed >= len(background):
        return -math.inf
    return float(np.sort(background)[::-1][allowed])


def far_of(threshold: float, background: Array, livetime: float) -> float:
    """Background events louder than `threshold`, per second."""
    return float(np.sum(background > threshold)) / livetime


def wilson(k: int, n: int, z: float = 1.0) -> tuple[float, float]:
    """The Wilson score interval of k successes in n trials (z = 1: 68%)."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def efficiency(
    snr: Array, detected: Array, edges: list[float]
) -> list[tuple[float, float, int, int]]:
    """(low, high, detected, injected) per SNR bin."""
    rows = []
    for low, high in itertools.pairwise(edges):
        in_bin = (snr >= low) & (snr < high)
        rows.append((low, high, int(np.sum(detected[in_bin])), int(np.sum(in_bin))))
    return rows


def snr_at(level: float, rows: list[tuple[float, float, int, int]]) -> float | None:
    """The SNR where the binned efficiency first crosses `level` (linear between bin centres)."""
    points = [((lo + hi) / 2, k / n) for lo, hi, k, n in rows if n]
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        if y0 < level <= y1:
            return x0 + (level - y0) * (x1 - x0) / (y1 - y0)
    return None


def plot(
    path: Path,
    background: Array,
    livetime: float,
    zero_lag: Array | None,
    zero_livetime: float,
    threshold: float,
    far_per_hour: float,
    rows: list[tuple[float, float, int, int]],
) -> None:
    """Left: the background's false-alarm rate against the statistic; right: efficiency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    ordered = np.sort(background)[::-1]
    rate = np.arange(1, len(ordered) + 1) / livetime * 3600
    left.step(ordered, rate, where="post", label=f"timeslides ({livetime / 3600:.2f} h)")
    if zero_lag is not None and len(zero_lag):
        zl = np.sort(zero_lag)[::-1]
        left.step(
            zl, np.arange(1, len(zl) + 1) / zero_livetime * 3600, where="post", label="zero-lag"
        )
    left.axvline(threshold, color="k", ls="--", lw=1, label=f"threshold at {far_per_hour:g}/h")
    left.set_yscale("log")
    left.set_xlabel("detection statistic")
    left.set_ylabel("false-alarm rate (louder events per hour)")
    left.set_title("Background")
    left.legend()

    centres = np.array([(lo + hi) / 2 for lo, hi, _, n in rows if n])
    values = np.array([k / n for _, _, k, n in rows if n])
    bounds = np.array([wilson(k, n) for _, _, k, n in rows if n])
    below, above = np.maximum(values - bounds[:, 0], 0), np.maximum(bounds[:, 1] - values, 0)
    right.errorbar(
        centres,
        values,
        yerr=[below, above],
        xerr=[[(hi - lo) / 2 for lo, hi, _, n in rows if n]] * 2,
        fmt="o",
        capsize=3,
        label="injections (68% intervals)",
    )
    half = snr_at(0.5, rows)
    if half is not None:
        right.axvline(half, color="k", ls=":", lw=1, label=f"50% at SNR {half:.1f}")
    right.legend(loc="lower right")
    right.set_ylim(-0.03, 1.03)
    right.set_xlabel("optimal network SNR of the injection")
    right.set_ylabel(f"detection efficiency at FAR {far_per_hour:g}/h")
    right.set_title(f"Sensitivity ({sum(n for *_, n in rows)} injections)")
    right.grid(alpha=0.3)
    fig.suptitle("aframe-dag demo: toy chirps in simulated H1/L1 noise")
    with atomic(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    background, bg_attrs = read_hdf5(args.background)
    foreground, _ = read_hdf5(args.foreground)
    livetime = float(bg_attrs["livetime"])
    bg = background["detection_statistic"]
    threshold = far_threshold(bg, livetime, args.far / 3600)
    detected = foreground["detection_statistic"] > threshold
    rows = efficiency(foreground["snr"], detected, args.snr_bins)
    zero_lag, zero_livetime = None, 0.0
    if args.zero_lag is not None:
        zl_data, zl_attrs = read_hdf5(args.zero_lag)
        zero_lag, zero_livetime = zl_data["detection_statistic"], float(zl_attrs["livetime"])

    plot(
        args.output_dir / "sensitivity.png",
        bg,
        livetime,
        zero_lag,
        zero_livetime,
        threshold,
        args.far,
        rows,
    )
    half = snr_at(0.5, rows)
    lines = [
        f"background livetime: {livetime:.0f} s ({livetime / 3600:.2f} h) of timeslides, "
        f"{len(bg)} events",
        f"false-alarm rate: {args.far:g} per hour -> threshold {threshold:.3f} "
        f"({int(np.sum(bg > threshold))} background events louder, "
        f"{far_of(threshold, bg, livetime) * 3600:.2f} per hour)",
    ]
    if zero_lag is not None:
        louder = int(np.sum(zero_lag > threshold))
        lines.append(
            f"zero-lag: {zero_livetime:.0f} s, {louder} events above threshold "
            f"({args.far * zero_livetime / 3600:.2f} expected from noise)"
        )
    lines.append(f"injections: {len(detected)}, {int(detected.sum())} detected")
    lines.append("efficiency by optimal network SNR:")
    lines += [
        f"  {lo:5.1f} - {hi:5.1f}  {k:4d} / {n:4d}  {k / n if n else float('nan'):.3f}"
        for lo, hi, k, n in rows
    ]
    lines.append(
        f"50% efficiency at SNR {half:.1f}" if half is not None else "50% efficiency not reached"
    )
    with atomic(args.summary) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    for line in lines:
        log(line)
    log(f"-> {args.output_dir / 'sensitivity.png'}, {args.summary}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
