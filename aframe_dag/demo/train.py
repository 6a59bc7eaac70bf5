"""Train the detection network: a one-hidden-layer numpy network on whitened windows.

Background: every background-*.hdf5 in --background_dir, whitened with a PSD from its
first --psd_length s. Signal windows: the training waveforms injected into the raw
background (so the PSD and whitening are the same as at inference), each window ending
between 0 and kernel/2 s after the merger. Noise windows: each ifo from an independent
random time, like Aframe's training (and like the timeslides it is tested on).

The network sees band powers of each ifo and the peak inter-ifo correlation
(common.features) and is trained by full-batch Adam on the logistic loss, seeded.
Writes --outdir/model.npz (weights, feature scaling) and --outdir/train.log.
This demo trains on the CPU; the GPU HTCondor assigned is only recorded.

Aframe's train CLI takes its W&B logger as LightningCLI options
(`--trainer.logger+=WandbLogger --trainer.logger.project=...`); so does this one, and
logs the loss and accuracy to W&B with the wandb package (WANDB_MODE=offline works).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from aframe_dag.demo.common import (
    Array,
    atomic,
    estimate_psds,
    features,
    inject,
    load_background,
    load_npz,
    log,
    network,
    parse_words,
    read_hdf5,
    rng,
    save_npz,
    whiten_stream,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m aframe_dag.demo.train", description=__doc__)
    add = parser.add_argument
    add("--background_dir", type=Path, required=True, help="holds background-*.hdf5")
    add("--waveforms_file", type=Path, required=True)
    add("--ifos", type=parse_words, required=True, help="e.g. [H1,L1]")
    add("--kernel_length", type=float, required=True, help="window the network sees, s")
    add("--psd_length", type=float, required=True, help="s of each file for its PSD")
    add("--fftlength", type=float, default=2, help="Welch segment, s")
    add("--fduration", type=float, default=1, help="whitening filter length, s")
    add("--highpass", type=float, required=True, help="Hz")
    add("--lowpass", type=float, required=True, help="Hz")
    add("--hidden", type=int, default=16, help="hidden units")
    add("--steps", type=int, default=400, help="full-batch Adam steps")
    add("--learning_rate", type=float, default=0.01)
    add("--weight_decay", type=float, default=1e-3)
    add("--noise_per_signal", type=float, default=3, help="noise windows per signal window")
    add("--validation_fraction", type=float, default=0.2)
    add("--seed", type=int, default=0)
    add("--outdir", type=Path, required=True)
    # an epoch is a tenth of the steps: after each, the whole state is saved here
    add("--checkpoint", type=Path, help="write the training state after each epoch")
    add("--ckpt_path", type=Path, help="resume from this checkpoint (Lightning's name)")
    add("--epoch_seconds", type=float, default=0, help="pause after each epoch (tests)")
    # LightningCLI's logger options, as `build --use-wandb` writes them
    add("--trainer.logger+", dest="loggers", action="append", default=[], metavar="CLASS")
    add("--trainer.logger.tags+", dest="wandb_tags", action="append", default=[])
    for key in ("job_type", "save_dir", "name", "entity", "project", "group"):
        add(f"--trainer.logger.{key}", dest=f"wandb_{key}")
    return parser


def wandb_run(args: argparse.Namespace, config: dict[str, object]) -> Any:
    """A W&B run if the options ask for a WandbLogger, else None."""
    if "WandbLogger" not in args.loggers:
        return None
    import wandb  # only when asked: importing it takes a second

    save_dir = Path(args.wandb_save_dir or args.outdir)
    save_dir.mkdir(parents=True, exist_ok=True)
    return wandb.init(
        dir=save_dir,
        project=args.wandb_project,
        entity=args.wandb_entity,
        group=args.wandb_group,
        name=args.wandb_name,
        job_type=args.wandb_job_type,
        tags=args.wandb_tags or None,
        config=config,
    )


def load_streams(args: argparse.Namespace) -> tuple[list[tuple[Array, Array, Array]], float]:
    """(raw stream, psd freqs, psds) of each background file, and the sample rate."""
    files = sorted(args.background_dir.glob("background-*.hdf5"))
    if not files:
        raise SystemExit(f"no background-*.hdf5 in {args.background_dir}")
    streams, rates = [], set()
    for path in files:
        raw, _, sample_rate = load_background(path, args.ifos)
        freqs, psds = estimate_psds(raw, sample_rate, args.psd_length, args.fftlength)
        streams.append((raw, freqs, psds))
        rates.add(sample_rate)
    if len(rates) != 1:
        raise SystemExit(f"background files disagree on the sample rate: {sorted(rates)}")
    return streams, rates.pop()


def signal_windows(
    streams: list[tuple[Array, Array, Array]],
    signals: Array,
    merger: int,
    size: int,
    sample_rate: float,
    band: tuple[float, float, float],
    generator: np.random.Generator,
) -> Array:
    """Whitened windows (n, ifos, size) holding each signal once, injected into the raw
    background at slots 2 windows apart; passes over the files until all are used."""
    windows, used = [], 0
    while used < len(signals):
        before = used
        for raw, freqs, psds in streams:
            slots = np.arange(size, raw.shape[-1] - 2 * size, 2 * size)
            batch = signals[used : used + len(slots)]
            if not len(batch):
                continue
            starts = slots[: len(batch)]
            white = whiten_stream(inject(raw, batch, starts), freqs, psds, sample_rate, *band)
            ends = starts + merger + generator.integers(0, size // 2 + 1, len(batch))
            windows.append(np.stack([white[:, e - size : e] for e in ends]))
            used += len(batch)
        if used == before:
            raise SystemExit("the background is too short to hold one signal window")
    return np.concatenate(windows)


def noise_windows(
    streams: list[tuple[Array, Array, Array]],
    count: int,
    size: int,
    sample_rate: float,
    band: tuple[float, float, float],
    generator: np.random.Generator,
) -> Array:
    """Whitened noise windows (count, ifos, size), each ifo from its own random time."""
    edge = round(band[2] * sample_rate / 2)  # where the whitening filter saw the ends
    whites = [
        whiten_stream(raw, freqs, psds, sample_rate, *band)[:, edge:-edge]
        for raw, freqs, psds in streams
    ]
    lengths = np.array([w.shape[-1] for w in whites], dtype=float)
    choice = generator.choice(len(whites), size=count, p=lengths / lengths.sum())
    out = np.empty((count, whites[0].shape[0], size))
    for k, which in enumerate(choice):
        white = whites[which]
        for ifo in range(white.shape[0]):
            start = generator.integers(0, white.shape[-1] - size + 1)
            out[k, ifo] = white[ifo, start : start + size]
    return out


def loss_and_grads(
    weights: dict[str, Array], x: Array, y: Array, decay: float
) -> tuple[float, dict[str, Array]]:
    """Mean logistic loss (+ L2 on the weight matrices) and its gradients."""
    hidden = np.tanh(x @ weights["W1"] + weights["b1"])
    logits = hidden @ weights["W2"] + weights["b2"]
    loss = np.mean(np.logaddexp(0, logits) - y * logits)
    loss += decay * (np.sum(weights["W1"] ** 2) + np.sum(weights["W2"] ** 2))
    d_logits = (1 / (1 + np.exp(-logits)) - y) / len(y)
    d_hidden = np.outer(d_logits, weights["W2"]) * (1 - hidden**2)
    grads = {
        "W2": hidden.T @ d_logits + 2 * decay * weights["W2"],
        "b2": np.sum(d_logits, keepdims=True),
        "W1": x.T @ d_hidden + 2 * decay * weights["W1"],
        "b1": d_hidden.sum(axis=0),
    }
    return float(loss), grads


def accuracy(weights: dict[str, Array], x: Array, y: Array) -> float:
    return float(np.mean((network(weights, x) > 0) == (y > 0.5)))


def fit(
    x: Array,
    y: Array,
    hidden: int,
    steps: int,
    learning_rate: float,
    decay: float,
    generator: np.random.Generator,
    report: int = 0,
    validation: tuple[Array, Array] | None = None,
    checkpoint: Path | None = None,
    resume: Path | None = None,
    epoch_seconds: float = 0,
) -> tuple[dict[str, Array], list[dict[str, float]]]:
    """Train the network on standardised features x and labels y (0 noise, 1 signal);
    returns the weights and, every `report` steps (an epoch), the losses and accuracies.
    With `checkpoint`, the whole state (weights, Adam's moments, step, history) is saved
    after each epoch; from `resume`, training goes on where that state left it, to the
    same bytes as a run that was never stopped."""
    n_in = x.shape[1]
    weights = {
        "W1": generator.normal(0, 1 / math.sqrt(n_in), (n_in, hidden)),
        "b1": np.zeros(hidden),
        "W2": generator.normal(0, 1 / math.sqrt(hidden), hidden),
        "b2": np.zeros(1),
    }
    moments = {k: (np.zeros_like(v), np.zeros_like(v)) for k, v in weights.items()}
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    history: list[dict[str, float]] = []
    first = 1
    if resume is not None:
        state = load_npz(resume)
        weights = {k: state[k] for k in weights}
        moments = {k: (state[f"m_{k}"], state[f"v_{k}"]) for k in weights}
        history = json.loads(str(state["history"]))
        first = int(state["step"]) + 1
        log(f"resumed from {resume} at step {first - 1} (epoch {(first - 1) // max(report, 1)})")
    for step in range(first, steps + 1):
        loss, grads = loss_and_grads(weights, x, y, decay)
        for name, grad in grads.items():
            m, v = moments[name]
            m *= beta1
            m += (1 - beta1) * grad
            v *= beta2
            v += (1 - beta2) * grad**2
            m_hat, v_hat = m / (1 - beta1**step), v / (1 - beta2**step)
            weights[name] -= learning_rate * m_hat / (np.sqrt(v_hat) + eps)
        if report and (step % report == 0 or step == 1):
            point = {"step": step, "loss": loss, "train_accuracy": accuracy(weights, x, y)}
            if validation is not None:
                point["validation_loss"] = loss_and_grads(weights, *validation, 0.0)[0]
                point["validation_accuracy"] = accuracy(weights, *validation)
            history.append(point)
        if report and step % report == 0 and checkpoint is not None:
            state = {**weights, **{f"m_{k}": m for k, (m, _) in moments.items()}}
            state.update({f"v_{k}": v for k, (_, v) in moments.items()})
            save_npz(checkpoint, {**state, "step": step, "history": json.dumps(history)})
            log(f"epoch {step // report} done (step {step}); state saved to {checkpoint}")
            time.sleep(epoch_seconds)
    return weights, history


def history_line(point: dict[str, float]) -> str:
    line = (
        f"step {point['step']:4d}  loss {point['loss']:.4f}  "
        f"train accuracy {point['train_accuracy']:.3f}"
    )
    if "validation_loss" in point:
        line += (
            f"  validation loss {point['validation_loss']:.4f}  "
            f"accuracy {point['validation_accuracy']:.3f}"
        )
    return line


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    band = (args.highpass, args.lowpass, args.fduration)
    generator = rng(args.seed)
    gpus = os.environ.get("CUDA_VISIBLE_DEVICES")
    devices = gpus if gpus is not None else "(unset)"
    log(f"CUDA_VISIBLE_DEVICES={devices}; training on the CPU")

    streams, sample_rate = load_streams(args)
    size = round(args.kernel_length * sample_rate)
    waveforms, attrs = read_hdf5(args.waveforms_file)
    if float(attrs["sample_rate"]) != sample_rate:
        raise SystemExit(
            f"{args.waveforms_file}: sample rate {attrs['sample_rate']}, "
            f"the background's is {sample_rate}"
        )
    signals = np.stack([waveforms[ifo].astype(np.float64) for ifo in args.ifos], axis=1)
    if signals.shape[-1] > size:
        raise SystemExit("waveforms are longer than the kernel")
    merger = round((float(attrs["waveform_duration"]) - float(attrs["right_pad"])) * sample_rate)

    positives = signal_windows(streams, signals, merger, size, sample_rate, band, generator)
    negatives = noise_windows(
        streams, int(len(positives) * args.noise_per_signal), size, sample_rate, band, generator
    )
    x = features(np.concatenate([positives, negatives]), sample_rate, args.highpass, args.lowpass)
    y = np.concatenate([np.ones(len(positives)), np.zeros(len(negatives))])

    order = generator.permutation(len(y))
    n_val = int(len(y) * args.validation_fraction)
    val, train = order[:n_val], order[n_val:]
    mean, std = x[train].mean(axis=0), x[train].std(axis=0) + 1e-12
    scaled = (x - mean) / std
    weights, history = fit(
        scaled[train],
        y[train],
        args.hidden,
        args.steps,
        args.learning_rate,
        args.weight_decay,
        generator,
        report=max(1, args.steps // 10),
        validation=(scaled[val], y[val]),
        checkpoint=args.checkpoint,
        resume=args.ckpt_path,
        epoch_seconds=args.epoch_seconds,
    )
    summary = {
        "signals": len(positives),
        "noise": len(negatives),
        "validation_accuracy": round(accuracy(weights, scaled[val], y[val]), 4),
    }
    config = {
        "ifos": args.ifos,
        "sample_rate": sample_rate,
        "kernel_length": args.kernel_length,
        "psd_length": args.psd_length,
        "fftlength": args.fftlength,
        "fduration": args.fduration,
        "highpass": args.highpass,
        "lowpass": args.lowpass,
    }
    save_npz(
        args.outdir / "model.npz",
        {**weights, "mean": mean, "std": std, "config": json.dumps(config)},
    )
    header = [
        f"CUDA_VISIBLE_DEVICES={devices} (the demo trains on the CPU)",
        f"{summary['signals']} signal and {summary['noise']} noise windows "
        f"of {args.kernel_length:g} s; {len(train)} to train, {len(val)} to validate",
    ]
    lines = [history_line(point) for point in history]
    with atomic(args.outdir / "train.log") as tmp:
        tmp.write_text("\n".join([*header, *lines, json.dumps(summary)]) + "\n", encoding="utf-8")
    run = wandb_run(args, {**config, "seed": args.seed, "hidden": args.hidden})
    if run is not None:
        for point in history:
            run.log({k: float(v) for k, v in point.items() if k != "step"}, step=int(point["step"]))
        run.summary.update(summary)
        run.finish()
    for line in [*header[1:], *lines]:
        log(line)
    log(f"validation accuracy {summary['validation_accuracy']:.3f} -> {args.outdir / 'model.npz'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
