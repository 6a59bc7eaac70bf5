"""One part of the signal set: chirps projected onto each detector.

Each signal is a Newtonian-like chirp (frequency sweeping from --highpass up to
--lowpass in `tau` s, tau uniform in [--min_tau, --max_tau]) with a random phase,
inclination, sky position and polarisation; each detector sees it through its own
antenna pattern, the second one up to 10 ms later. The strain is scaled so that the
network SNR against the design noise curve is uniform in [--min_snr, --max_snr].

Writes --output_file with a dataset per ifo (signals x samples, merger --right_pad s
before the end) and one per parameter (snr, amplitude, tau, ...).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from aframe_dag.demo.common import (
    antenna,
    chirp,
    delay,
    design_asd,
    log,
    network_snr,
    parse_words,
    rng,
    write_hdf5,
)

PARAMETERS = ("snr", "amplitude", "tau", "phase", "iota", "theta", "phi", "psi")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m aframe_dag.demo.waveforms", description=__doc__
    )
    add = parser.add_argument
    add("--num_signals", type=int, required=True)
    add("--part", type=int, default=0, help="which part (seeds it)")
    add("--seed", type=int, default=0)
    add("--ifos", type=parse_words, required=True, help="e.g. [H1,L1]")
    add("--sample_rate", type=float, required=True, help="Hz")
    add("--waveform_duration", type=float, required=True, help="s")
    add("--right_pad", type=float, default=0.05, help="merger this long before the end, s")
    add("--highpass", type=float, required=True, help="lowest frequency, Hz")
    add("--lowpass", type=float, required=True, help="highest frequency, Hz")
    add("--min_tau", type=float, default=0.3, help="shortest chirp, s")
    add("--max_tau", type=float, default=0.8, help="longest chirp, s")
    add("--min_snr", type=float, default=2)
    add("--max_snr", type=float, default=24)
    add("--output_file", type=Path, required=True)
    return parser


def generate(args: argparse.Namespace) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(per-ifo strain, per-signal parameters) of this part."""
    generator = rng(args.seed, args.part)
    size = round(args.waveform_duration * args.sample_rate)
    times = np.arange(size) / args.sample_rate - (args.waveform_duration - args.right_pad)
    freqs = np.fft.rfftfreq(size, 1 / args.sample_rate)
    band = (args.sample_rate, args.highpass, args.lowpass)
    n = args.num_signals
    params = {
        "tau": generator.uniform(args.min_tau, args.max_tau, n),
        "phase": generator.uniform(0, 2 * math.pi, n),
        "iota": np.arccos(generator.uniform(-1, 1, n)),
        "theta": np.arccos(generator.uniform(-1, 1, n)),
        "phi": generator.uniform(0, 2 * math.pi, n),
        "psi": generator.uniform(0, math.pi, n),
        "snr": generator.uniform(args.min_snr, args.max_snr, n),
    }
    psds = np.stack([design_asd(freqs, ifo) ** 2 for ifo in args.ifos])
    strain = np.zeros((n, len(args.ifos), size))
    amplitude = np.zeros(n)
    for k in range(n):
        theta, phi = params["theta"][k], params["phi"][k]
        for i, ifo in enumerate(args.ifos):
            plus, cross = chirp(
                times - delay(ifo, args.ifos, theta, phi),
                params["tau"][k],
                args.highpass,
                args.lowpass,
                params["phase"][k],
                params["iota"][k],
            )
            f_plus, f_cross = antenna(ifo, theta, phi, params["psi"][k])
            strain[k, i] = f_plus * plus + f_cross * cross
        design_snr = network_snr(strain[k], freqs, psds, *band)
        # a source face-off to every detector has no SNR to scale: it stays silent
        amplitude[k] = params["snr"][k] / design_snr if design_snr > 0 else 0.0
        strain[k] *= amplitude[k]
    params["amplitude"] = amplitude
    return (
        {ifo: strain[:, i].astype(np.float32) for i, ifo in enumerate(args.ifos)},
        {name: params[name] for name in PARAMETERS},
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 0 < args.highpass < args.lowpass <= args.sample_rate / 2:
        raise SystemExit("need 0 < --highpass < --lowpass <= sample_rate / 2")
    if not 0 < args.min_tau <= args.max_tau < args.waveform_duration - args.right_pad:
        raise SystemExit("need 0 < --min_tau <= --max_tau < waveform_duration - right_pad")
    strain, params = generate(args)
    attrs = {
        "sample_rate": args.sample_rate,
        "waveform_duration": args.waveform_duration,
        "right_pad": args.right_pad,
        "ifos": ",".join(args.ifos),
    }
    write_hdf5(args.output_file, {**strain, **params}, attrs)
    log(f"{args.num_signals} signals (part {args.part}) -> {args.output_file}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
