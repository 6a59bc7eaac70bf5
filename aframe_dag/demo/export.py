"""Export the trained network to a model repository, the form inference loads.

Like Aframe's export to Triton, it writes REPOSITORY/MODEL/config.json (what the model
expects: ifos, sample rate, kernel, whitening) and REPOSITORY/MODEL/VERSION/model.npz.
The feature scaling is folded into the first layer and the weights are cast to
float32; the exported model is checked against the trained one before it is written.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from aframe_dag.demo.common import Array, atomic, load_npz, log, network, rng, save_npz

LAYERS = ("W1", "b1", "W2", "b2")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m aframe_dag.demo.export", description=__doc__)
    add = parser.add_argument
    add("--weights", type=Path, required=True, help="model.npz from train")
    add("--repository_directory", type=Path, required=True)
    add("--model_name", default="aframe-demo")
    add("--version", type=int, default=1)
    add("--tolerance", type=float, default=1e-3, help="largest allowed change of the output")
    return parser


def fold(trained: dict[str, Array]) -> dict[str, Array]:
    """Weights that take raw features: W1' = W1 / std, b1' = b1 - (mean / std) @ W1."""
    mean, std = trained["mean"], trained["std"]
    return {
        "W1": (trained["W1"] / std[:, None]).astype(np.float32),
        "b1": (trained["b1"] - (mean / std) @ trained["W1"]).astype(np.float32),
        "W2": trained["W2"].astype(np.float32),
        "b2": trained["b2"].astype(np.float32),
    }


def largest_change(trained: dict[str, Array], folded: dict[str, Array], num: int = 1000) -> float:
    """Largest |output difference| on features drawn around the training features."""
    x = rng(0).normal(trained["mean"], trained["std"], (num, len(trained["mean"])))
    before = network(trained, (x - trained["mean"]) / trained["std"])
    after = network({k: v.astype(np.float64) for k, v in folded.items()}, x)
    return float(np.max(np.abs(after - before)))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    trained = load_npz(args.weights)
    config = json.loads(str(trained["config"]))
    folded = fold(trained)
    change = largest_change(trained, folded)
    if change > args.tolerance:
        raise SystemExit(f"the exported model differs from the trained one by {change:.2e}")
    model_dir = args.repository_directory / args.model_name
    save_npz(model_dir / str(args.version) / "model.npz", folded)
    description = {
        "name": args.model_name,
        "platform": "numpy",
        "version": args.version,
        "input": {"features": int(folded["W1"].shape[0]), "dtype": "float32"},
        "output": "detection statistic (logit)",
        **config,
    }
    with atomic(model_dir / "config.json") as tmp:
        tmp.write_text(json.dumps(description, indent=2) + "\n", encoding="utf-8")
    log(f"{args.model_name} version {args.version} (largest change {change:.1e}) -> {model_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
