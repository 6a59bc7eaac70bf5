"""Inference over one background file at one timeslide: background and injection events.

Each ifo's stream starts --shifts[i] s into the file (so with [0,3] L1 is slid 3 s
against H1), as Aframe's timeslides do. The first --psd_length s of the slid streams
give the PSD that whitens them; after it, the network scores a window of kernel_length
s every 1/--inference_sampling_rate s.

- background: the window scores, clustered to the loudest in each --cluster_window s;
- foreground: testing waveforms injected every --spacing s (jittered, seeded) into the
  same slid data, each scored by the loudest window ending within --cluster_window / 2
  of its merger, with its optimal network SNR against this node's PSD.

Writes --outdir/background.hdf5 and --outdir/foreground.hdf5; each records the
livetime, shifts and segment in its attributes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from aframe_dag.demo.common import (
    Array,
    estimate_psds,
    features,
    inject,
    load_background,
    load_npz,
    log,
    network,
    network_snr,
    parse_floats,
    parse_words,
    read_hdf5,
    rng,
    whiten_stream,
    windows_of,
    write_hdf5,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m aframe_dag.demo.infer", description=__doc__)
    add = parser.add_argument
    add("--background_file", type=Path, required=True)
    add("--injection_file", type=Path, required=True, help="testing waveforms")
    add("--model_repository", type=Path, required=True)
    add("--model_name", default="aframe-demo")
    add("--model_version", type=int, default=-1, help="-1: the latest")
    add("--ifos", type=parse_words, required=True, help="e.g. [H1,L1]")
    add("--shifts", type=parse_floats, required=True, help="s per ifo, e.g. [0,1]")
    add("--psd_length", type=float, required=True, help="s")
    add("--inference_sampling_rate", type=float, default=4, help="windows per s")
    add("--cluster_window", type=float, default=1, help="s")
    add("--spacing", type=float, default=4, help="s between injections")
    add("--buffer", type=float, default=2, help="s kept free of injections at the edges")
    add("--jitter", type=float, default=0.5, help="injection times move by up to this, s")
    add("--seed", type=int, default=0)
    add("--outdir", type=Path, required=True)
    return parser


def load_model(repository: Path, name: str, version: int) -> tuple[dict[str, Array], dict]:
    """The exported weights and config.json of a model (version -1: the highest)."""
    model_dir = repository / name
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    versions = sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())
    if not versions or (version != -1 and version not in versions):
        raise SystemExit(f"{model_dir}: no version {version if version != -1 else ''} to load")
    chosen = versions[-1] if version == -1 else version
    weights = load_npz(model_dir / str(chosen) / "model.npz")
    return {k: v.astype(np.float64) for k, v in weights.items()}, config


def slide(stream: Array, shifts: list[float], sample_rate: float) -> Array:
    """Each ifo's stream from its shift on; all cut to the time every ifo has."""
    offsets = [round(s * sample_rate) for s in shifts]
    if min(offsets) < 0:
        raise SystemExit(f"shifts must be >= 0, got {shifts}")
    length = stream.shape[-1] - max(offsets)
    return np.stack([row[o : o + length] for row, o in zip(stream, offsets, strict=True)])


def cluster(times: Array, scores: Array, start: float, window: float) -> tuple[Array, Array]:
    """The loudest (time, score) in each `window` s from `start`."""
    blocks = np.floor((times - start) / window).astype(int)
    keep = []
    for block in np.unique(blocks):
        members = np.flatnonzero(blocks == block)
        keep.append(members[np.argmax(scores[members])])
    keep_array = np.array(keep, dtype=int)
    return times[keep_array], scores[keep_array]


def injection_times(
    start: float, stop: float, spacing: float, jitter: float, generator: np.random.Generator
) -> Array:
    """Merger times every `spacing` s in [start, stop], each moved by up to +-jitter."""
    slots = np.arange(start + jitter, stop - jitter, spacing)
    return slots + generator.uniform(-jitter, jitter, len(slots))


def score_stream(
    white: Array, weights: dict[str, Array], config: dict, first: int, stride: int
) -> tuple[Array, Array]:
    """(window end in samples, score) of every window starting at first, first+stride, ..."""
    sample_rate = config["sample_rate"]
    size = round(config["kernel_length"] * sample_rate)
    windows, ends = windows_of(white, size, first, stride)
    x = features(windows, sample_rate, config["highpass"], config["lowpass"])
    return ends, network(weights, x)


def loudest_near(times: Array, scores: Array, centres: Array, half_width: float) -> Array:
    """For each centre, the loudest score at a time within +-half_width of it."""
    return np.array([scores[np.abs(times - c) <= half_width].max() for c in centres])


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if len(args.shifts) != len(args.ifos):
        raise SystemExit(f"--shifts has {len(args.shifts)} values for {len(args.ifos)} ifos")
    weights, config = load_model(args.model_repository, args.model_name, args.model_version)
    if config["ifos"] != args.ifos:
        raise SystemExit(f"the model was trained on {config['ifos']}, not {args.ifos}")
    raw, t0, sample_rate = load_background(args.background_file, args.ifos)
    if sample_rate != config["sample_rate"]:
        raise SystemExit(
            f"{args.background_file}: {sample_rate:g} Hz, the model wants {config['sample_rate']:g}"
        )
    band = (config["highpass"], config["lowpass"], config["fduration"])
    stride = round(sample_rate / args.inference_sampling_rate)
    burn_in = round(args.psd_length * sample_rate)

    slid = slide(raw, args.shifts, sample_rate)
    # the last fduration / 2 s saw the end of the data through the whitening filter
    usable = slid.shape[-1] - round(config["fduration"] * sample_rate / 2)
    livetime = (usable - burn_in) / sample_rate
    if livetime <= config["kernel_length"]:
        raise SystemExit(
            f"only {livetime:g} s left after the shifts and the PSD: nothing to analyse"
        )
    freqs, psds = estimate_psds(slid, sample_rate, args.psd_length, config["fftlength"])
    analysis_start = t0 + args.psd_length

    white = whiten_stream(slid, freqs, psds, sample_rate, *band)[:, :usable]
    ends, scores = score_stream(white, weights, config, burn_in, stride)
    bg_times, bg_scores = cluster(
        t0 + ends / sample_rate, scores, analysis_start, args.cluster_window
    )

    # foreground: the testing waveforms, injected into the same slid data
    waveforms, attrs = read_hdf5(args.injection_file)
    signals = np.stack([waveforms[ifo].astype(np.float64) for ifo in args.ifos], axis=1)
    merger = float(attrs["waveform_duration"]) - float(attrs["right_pad"])
    generator = rng(args.seed, t0, *args.shifts)
    # the whole signal lies after the burn-in and before the end, with `buffer` s to spare
    first = analysis_start + merger + args.buffer
    last = t0 + usable / sample_rate - float(attrs["right_pad"]) - args.buffer
    times = injection_times(first, last, args.spacing, args.jitter, generator)
    if len(times) > len(signals):
        raise SystemExit(
            f"{len(times)} injections wanted, {args.injection_file} has {len(signals)}"
        )
    chosen = np.sort(generator.choice(len(signals), len(times), replace=False))
    starts = np.round((times - merger - t0) * sample_rate).astype(int)
    times = t0 + starts / sample_rate + merger  # the times the signals really merge
    injected = inject(slid, signals[chosen], starts)
    white = whiten_stream(injected, freqs, psds, sample_rate, *band)[:, :usable]
    ends, scores = score_stream(white, weights, config, burn_in, stride)
    fg_scores = loudest_near(t0 + ends / sample_rate, scores, times, args.cluster_window / 2)
    snrs = [network_snr(s, freqs, psds, sample_rate, *band[:2]) for s in signals[chosen]]

    node = {
        "livetime": livetime,
        "shifts": np.asarray(args.shifts),
        "t0": t0,
        "segment": args.background_file.stem.split("-", 1)[1],
    }
    background = {"time": bg_times, "detection_statistic": bg_scores}
    write_hdf5(args.outdir / "background.hdf5", background, node)
    foreground = {
        "time": times,
        "detection_statistic": fg_scores,
        "snr": snrs,
        "design_snr": waveforms["snr"][chosen],
        "amplitude": waveforms["amplitude"][chosen],
        "tau": waveforms["tau"][chosen],
        "waveform_index": chosen,
    }
    write_hdf5(args.outdir / "foreground.hdf5", foreground, node)
    log(
        f"{args.background_file.name} shifts {args.shifts}: {livetime:g} s, "
        f"{len(bg_scores)} background events (loudest {bg_scores.max():.2f}), "
        f"{len(times)} injections -> {args.outdir}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
