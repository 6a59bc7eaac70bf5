"""Shared pieces of the demo programs: argument types, seeding, noise, whitening,
signals, features, the network, and small HDF5 helpers.

Units: strain is in arbitrary units of the toy detectors' noise (order 1), times
in GPS seconds, frequencies in Hz. PSDs are one-sided.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]

# how much noisier each toy detector is than the design curve
IFO_SCALE = {"H1": 1.0, "L1": 1.15, "V1": 1.6}
# light travel time between the toy detectors' sites, s (Hanford-Livingston: 10 ms)
MAX_DELAY = 0.010
# azimuth of each toy detector's arms, rad (L1 is turned 90 degrees, roughly as in life)
IFO_AZIMUTH = {"H1": 0.0, "L1": math.pi / 2, "V1": math.pi / 4}
# number of frequency bands between highpass and lowpass the network looks at, per ifo
NUM_BANDS = 8


# --- command-line values ----------------------------------------------------------


def parse_words(text: str) -> list[str]:
    """A list as the config writes it, `[H1,L1]` (jsonargparse style), or `H1,L1`."""
    inner = text.strip()
    if inner.startswith("[") and inner.endswith("]"):
        inner = inner[1:-1]
    words = [w.strip().strip("'\"") for w in inner.split(",")]
    if not inner.strip() or not all(words):
        raise ValueError(f"expected a list like [H1,L1], got {text!r}")
    return words


def parse_floats(text: str) -> list[float]:
    """A list of numbers: `[0,1]`, `[0.5,1e-3]` or `0,1`."""
    try:
        return [float(w) for w in parse_words(text)]
    except ValueError:
        raise ValueError(f"expected a list of numbers like [0,1], got {text!r}") from None


def rng(seed: int, *keys: float) -> np.random.Generator:
    """A generator seeded by `seed` and any number of keys (GPS times, shifts, indices).

    Keys are rounded to milliseconds, so 1262304000 and 1262304000.0 give the same stream.
    """
    entropy = [int(seed)] + [round(abs(float(k)) * 1000) * 2 + int(k < 0) for k in keys]
    return np.random.default_rng(entropy)


# --- noise and spectra ------------------------------------------------------------


def design_asd(freqs: Array, ifo: str = "H1") -> Array:
    """The toy detectors' amplitude spectral density: a seismic wall, flat, then shot noise."""
    f = np.maximum(np.asarray(freqs, dtype=float), 5.0)
    asd = np.sqrt((16.0 / f) ** 8 + 1.0 + (f / 80.0) ** 2)
    return asd * IFO_SCALE.get(ifo, 1.0)


def coloured_noise(
    num_samples: int, sample_rate: float, ifo: str, generator: np.random.Generator
) -> Array:
    """Stationary Gaussian noise with the one-sided PSD design_asd(f)**2."""
    white = generator.standard_normal(num_samples)
    spectrum = np.fft.rfft(white)
    freqs = np.fft.rfftfreq(num_samples, 1 / sample_rate)
    # white noise of unit variance has E|X_k|^2 = N; noise of PSD S has N * S * fs / 2
    spectrum *= design_asd(freqs, ifo) * math.sqrt(sample_rate / 2)
    spectrum[0] = 0.0
    return np.fft.irfft(spectrum, num_samples)


def welch(x: Array, sample_rate: float, fftlength: float) -> tuple[Array, Array]:
    """One-sided PSD by Welch's method: Hann windows of `fftlength` s, half overlapping."""
    size = round(fftlength * sample_rate)
    if x.shape[-1] < size:
        raise ValueError(f"need at least {size} samples for the PSD, got {x.shape[-1]}")
    segments = np.lib.stride_tricks.sliding_window_view(x, size)[:: size // 2]
    window = np.hanning(size + 1)[:-1]  # periodic Hann, as scipy's default
    power = np.abs(np.fft.rfft(segments * window, axis=-1)) ** 2
    psd = 2 * power.mean(axis=0) / (sample_rate * (window**2).sum())
    psd[0] /= 2
    if size % 2 == 0:
        psd[-1] /= 2
    return np.fft.rfftfreq(size, 1 / sample_rate), psd


def whitening_filter(
    freqs: Array, psd: Array, sample_rate: float, highpass: float, lowpass: float, fduration: float
) -> Array:
    """A zero-phase FIR filter of `fduration` s that whitens noise of this PSD and keeps
    [highpass, lowpass], as Aframe's whitening: 1 / ASD, Hann-windowed in time.

    Filtered noise has the spectrum of unit-variance white noise inside the band (its
    variance is the band's share of Nyquist), and sqrt(sum(w**2)) of a filtered signal
    is its optimal SNR.
    """
    size = round(fduration * sample_rate)
    f = np.fft.rfftfreq(size, 1 / sample_rate)
    in_band = (f >= highpass) & (f <= lowpass)
    response = np.zeros_like(f)
    response[in_band] = 1 / np.sqrt(np.interp(f[in_band], freqs, psd) * sample_rate / 2)
    taps = np.roll(np.fft.irfft(response, size), size // 2)
    return taps * np.hanning(size + 1)[:-1]


def whiten(x: Array, taps: Array) -> Array:
    """`x` filtered by `taps` (linear convolution, centred, same length as x).

    The first and last len(taps) // 2 samples see the zeros beyond the ends: discard them.
    """
    size = len(x) + len(taps) - 1
    fast = 1 << (size - 1).bit_length()
    full = np.fft.irfft(np.fft.rfft(x, fast) * np.fft.rfft(taps, fast), fast)
    edge = len(taps) // 2
    return full[edge : edge + len(x)]


def optimal_snr(
    strain: Array, freqs: Array, psd: Array, sample_rate: float, highpass: float, lowpass: float
) -> float:
    """sqrt(4 * sum |h(f)|^2 / S(f) df) over [highpass, lowpass], for one detector."""
    size = 1 << max(len(strain) - 1, int(4 * sample_rate) - 1).bit_length()  # at least 4 s long
    spectrum = np.fft.rfft(strain, size)
    f = np.fft.rfftfreq(size, 1 / sample_rate)
    in_band = (f >= highpass) & (f <= lowpass)
    power = np.abs(spectrum[in_band]) ** 2 / np.interp(f[in_band], freqs, psd)
    return float(np.sqrt(4 / (size * sample_rate) * power.sum()))


def network_snr(
    strains: Array, freqs: Array, psds: Array, sample_rate: float, highpass: float, lowpass: float
) -> float:
    """Quadrature sum of optimal_snr over the ifos: strains (ifos, samples), psds (ifos, freqs)."""
    return math.sqrt(
        sum(
            optimal_snr(strain, freqs, psd, sample_rate, highpass, lowpass) ** 2
            for strain, psd in zip(strains, psds, strict=True)
        )
    )


# --- signals ------------------------------------------------------------------------


def chirp(
    times: Array, tau: float, f_low: float, f_high: float, phase: float, iota: float
) -> tuple[Array, Array]:
    """Plus and cross polarisations of a Newtonian-like chirp that merges at t = 0.

    The frequency sweeps f_low * (tau / -t)**(3/8) from f_low (at t = -tau) up to
    f_high, with amplitude growing as f**(2/3); both ends are tapered.
    """
    before = -np.asarray(times, dtype=float)
    t_end = tau * (f_low / f_high) ** (8 / 3)
    on = (before > t_end) & (before <= tau)
    dt = np.where(on, before, tau)
    freq = f_low * (tau / dt) ** (3 / 8)
    psi = phase - 2 * math.pi * f_low * tau ** (3 / 8) * (8 / 5) * dt ** (5 / 8)
    amp = (freq / f_low) ** (2 / 3)
    # smooth turn-on over 50 ms and turn-off over the last 10 ms before f_high
    rise = np.clip((tau - dt) / 0.05, 0, 1)
    fall = np.clip((dt - t_end) / 0.01, 0, 1)
    envelope = np.where(
        on, amp * np.sin(0.5 * math.pi * rise) ** 2 * np.sin(0.5 * math.pi * fall) ** 2, 0
    )
    plus = envelope * (1 + math.cos(iota) ** 2) / 2 * np.cos(psi)
    cross = envelope * math.cos(iota) * np.sin(psi)
    return plus, cross


def antenna(ifo: str, theta: float, phi: float, psi: float) -> tuple[float, float]:
    """F+ and Fx of a toy L-shaped detector at the zenith, source at (theta, phi)."""
    a = 2 * (phi + IFO_AZIMUTH.get(ifo, 0.0))
    c = math.cos(theta)
    f_plus = 0.5 * (1 + c**2) * math.cos(a) * math.cos(2 * psi) - c * math.sin(a) * math.sin(
        2 * psi
    )
    f_cross = 0.5 * (1 + c**2) * math.cos(a) * math.sin(2 * psi) + c * math.sin(a) * math.cos(
        2 * psi
    )
    return f_plus, f_cross


def delay(ifo: str, ifos: list[str], theta: float, phi: float) -> float:
    """Arrival time at `ifo` after the first ifo, s (a toy baseline along x)."""
    return 0.0 if ifo == ifos[0] else MAX_DELAY * math.sin(theta) * math.cos(phi)


# --- features and the network -----------------------------------------------------


def band_edges(highpass: float, lowpass: float, num_bands: int = NUM_BANDS) -> Array:
    return np.linspace(highpass, lowpass, num_bands + 1)


def features(
    windows: Array, sample_rate: float, highpass: float, lowpass: float, max_lag: float = MAX_DELAY
) -> Array:
    """Per window (n, ifos, samples) of whitened data: log band powers of each ifo,
    then the peak correlation between each pair of ifos within +-max_lag.

    For whitened noise each band power is about 1 and each correlation about 1 too
    (|rho| * sqrt(samples)); a signal raises the powers and, being coherent, the correlation.
    """
    _, num_ifos, size = windows.shape
    spectrum = np.fft.rfft(windows, axis=-1)
    freqs = np.fft.rfftfreq(size, 1 / sample_rate)
    power = np.abs(spectrum) ** 2 / size
    edges = band_edges(highpass, lowpass)
    columns = []
    for ifo in range(num_ifos):
        for low, high in itertools.pairwise(edges):
            in_band = (freqs >= low) & (freqs < high)
            columns.append(np.log(power[:, ifo, in_band].mean(axis=-1) + 1e-12))
    lags = math.ceil(max_lag * sample_rate)
    for i in range(num_ifos):
        for j in range(i + 1, num_ifos):
            cross = np.fft.irfft(spectrum[:, i] * np.conj(spectrum[:, j]), size, axis=-1)
            near = np.concatenate([cross[:, : lags + 1], cross[:, size - lags :]], axis=-1)
            norm = np.sqrt(
                np.sum(windows[:, i] ** 2, axis=-1) * np.sum(windows[:, j] ** 2, axis=-1)
            )
            columns.append(np.abs(near).max(axis=-1) / (norm + 1e-12) * math.sqrt(size))
    return np.stack(columns, axis=-1)


def num_features(num_ifos: int) -> int:
    return num_ifos * NUM_BANDS + num_ifos * (num_ifos - 1) // 2


def network(weights: Mapping[str, Array], x: Array) -> Array:
    """The network's detection statistic (a logit) for each row of features."""
    hidden = np.tanh(x @ weights["W1"] + weights["b1"])
    return hidden @ weights["W2"] + weights["b2"]


def windows_of(stream: Array, size: int, first: int, stride: int) -> tuple[Array, Array]:
    """Windows (n, ifos, size) of `stream` (ifos, samples) starting at first, first+stride, ...

    Returns the windows and each window's end, in samples.
    """
    view = np.lib.stride_tricks.sliding_window_view(stream, size, axis=-1)
    starts = np.arange(first, stream.shape[-1] - size + 1, stride)
    return np.ascontiguousarray(view[:, starts].transpose(1, 0, 2)), starts + size


def estimate_psds(
    stream: Array, sample_rate: float, psd_length: float, fftlength: float
) -> tuple[Array, Array]:
    """Each ifo's PSD from the first `psd_length` s of `stream` (ifos, samples), as
    Aframe's inference burns in its PSD; returns (freqs, psds)."""
    burn_in = stream[:, : round(psd_length * sample_rate)]
    estimates = [welch(row, sample_rate, fftlength) for row in burn_in]
    return estimates[0][0], np.stack([psd for _, psd in estimates])


def whiten_stream(
    stream: Array,
    freqs: Array,
    psds: Array,
    sample_rate: float,
    highpass: float,
    lowpass: float,
    fduration: float,
) -> Array:
    """whiten() each ifo of `stream` (ifos, samples) with a filter from its own PSD.

    fduration / 2 s at each end are not valid (see whiten).
    """
    return np.stack(
        [
            whiten(row, whitening_filter(freqs, psd, sample_rate, highpass, lowpass, fduration))
            for row, psd in zip(stream, psds, strict=True)
        ]
    )


def load_background(path: Path, ifos: list[str]) -> tuple[Array, float, float]:
    """(stream (ifos, samples), t0, sample_rate) of a background file."""
    datasets, attrs = read_hdf5(path)
    missing = [ifo for ifo in ifos if ifo not in datasets]
    if missing:
        raise SystemExit(f"{path}: no data for {', '.join(missing)}")
    stream = np.stack([datasets[ifo].astype(np.float64) for ifo in ifos])
    return stream, float(attrs["t0"]), float(attrs["sample_rate"])


def inject(stream: Array, signals: Array, starts: Array) -> Array:
    """A copy of `stream` (ifos, samples) with signals[k] (ifos, size) added at starts[k]."""
    out = stream.copy()
    size = signals.shape[-1]
    for signal, start in zip(signals, starts, strict=True):
        out[:, start : start + size] += signal
    return out


# --- files --------------------------------------------------------------------------


def background_name(prefix: str, start: float, end: float) -> str:
    """`PREFIX-START-DURATION.hdf5`, as Aframe names background files."""
    return f"{prefix}-{int(start)}-{int(end - start)}.hdf5"


def read_segments(path: Path) -> list[tuple[float, float]]:
    """(start, stop) of each line of a segwizard file."""
    segments = []
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if fields and not fields[0].startswith("#"):
            segments.append((float(fields[1]), float(fields[2])))
    return segments


def write_segments(path: Path, segments: list[tuple[int, int]]) -> None:
    lines = ["# seg\tstart\tstop\tduration"]
    lines += [f"{i}\t{start}\t{stop}\t{stop - start}" for i, (start, stop) in enumerate(segments)]
    with atomic(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")


@contextlib.contextmanager
def atomic(path: Path) -> Iterator[Path]:
    """Write to a temporary name next to `path`, then rename: a crashed job leaves no
    half-written output that looks finished."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_hdf5(
    path: Path, datasets: Mapping[str, Any], attrs: Mapping[str, Any] | None = None
) -> None:
    """One HDF5 file of datasets and root attributes, with no timestamps in it."""
    import h5py

    with atomic(path) as tmp, h5py.File(tmp, "w") as f:
        for name, value in datasets.items():
            f.create_dataset(name, data=np.asarray(value), track_times=False)
        for name, value in (attrs or {}).items():
            f.attrs[name] = value


def read_hdf5(path: Path) -> tuple[dict[str, Array], dict[str, Any]]:
    """All datasets and root attributes of a file written by write_hdf5."""
    import h5py

    with h5py.File(path, "r") as f:
        datasets = {name: f[name][()] for name in f}
        attrs = dict(f.attrs)
    return datasets, attrs


def save_npz(path: Path, arrays: Mapping[str, Any]) -> None:
    """Like numpy.savez, but with fixed dates in the zip, so equal arrays give equal bytes."""
    import io
    import zipfile

    with atomic(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:
        for name, value in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asarray(value), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            archive.writestr(info, buffer.getvalue())


def load_npz(path: Path) -> dict[str, Array]:
    with np.load(path, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def log(message: str) -> None:
    """Progress for the job's .out file."""
    print(message, flush=True)
