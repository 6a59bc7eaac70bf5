"""The demo analysis end to end with run-local: the README's main job."""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
from pathlib import Path

from conftest import REPO

DEMO = REPO / "configs" / "demo.yaml"


def test_demo_runs_end_to_end_and_ends_with_a_plot(tmp_path: Path) -> None:
    run_dir = tmp_path / "demo"
    aframe = [sys.executable, "-m", "aframe_dag"]
    built = subprocess.run(
        [*aframe, "build", str(DEMO), "--run-dir", str(run_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    ran = subprocess.run(
        [*aframe, "run-local", str(run_dir), "--gpus", "0", "--jobs", "2"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
    # off a terminal, a line per node as it ends, then the summary; the nodes counted as
    # status counts them (sub-DAG nodes are their nodes, not nodes of their own)
    *ended, summary_line = ran.stdout.splitlines()
    assert summary_line == "54 nodes succeeded, 0 failed"
    assert len(ended) == 54 and all(line.startswith("done  ") for line in ended)
    shown = subprocess.run(
        [*aframe, "status", str(run_dir), "--json"], capture_output=True, text=True, check=True
    )
    stages = json.loads(shown.stdout)["stages"]
    assert sum(stage["done"] for stage in stages) == sum(stage["total"] for stage in stages) == 54

    results = run_dir / "results"
    for name in ("background.hdf5", "foreground.hdf5", "0lag.hdf5", "summary.txt"):
        assert (results / name).stat().st_size > 0, name
    png = (results / "plots" / "sensitivity.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk
    assert width > 400 and height > 200

    summary = (results / "summary.txt").read_text()
    half = float(re.search(r"50% efficiency at SNR ([\d.]+)", summary).group(1))
    assert 5 < half < 15
    rows = re.findall(r"^\s+([\d.]+) -\s+([\d.]+)\s+(\d+) /\s+(\d+)\s+([\d.]+)$", summary, re.M)
    efficiency = [float(row[4]) for row in rows]
    assert len(efficiency) >= 5
    assert efficiency[0] < 0.1 and efficiency[-1] > 0.95  # a real classifier: faint missed
    livetime = float(re.search(r"background livetime: (\d+) s", summary).group(1))
    assert livetime > 3600
    # the GPU node saw the id run-local gave it
    assert "CUDA_VISIBLE_DEVICES=0" in (run_dir / "training" / "train.log").read_text()
