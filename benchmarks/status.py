"""Time `aframe-dag status` of a finished N-node run, under DAGMan and run-local, against its build.

For each N (10^4, 10^5, 2*10^5) it builds build.py's config (a `gen` stage of N nodes, a
`merge` stage after it) and times, each as a whole process (imports included):

- build: `aframe-dag build CONFIG --run-dir DIR`, into a fresh run dir;
- status DAGMan: `aframe-dag status DIR` of a run dir as a finished DAGMan run leaves it:
  the NODE_STATUS_FILE and JOBSTATE_LOG that its aframe.dag names, in the format of
  HTCondor 23.9's files in tests/status_samples/ and tests/samples/ (a DagStatus ad, one
  NodeStatus ad per node in DAG order, the StatusEnd ad; SUBMIT, EXECUTE, JOB_TERMINATED
  and JOB_SUCCESS per node between DAGMAN_STARTED and DAGMAN_FINISHED);
- status run-local: `aframe-dag status DIR` of a run dir as a finished `aframe-dag
  run-local` leaves it: its lock file, not held, and run-local.record with a `start` and
  a `done` line per node.

Both status run dirs are built once per N, untimed, and each is checked first: `aframe-dag
status DIR --json` must say the run is done with N+1 nodes done. The three run interleaved,
--repeat times (default 5); each column is the best wall time with that run's peak RSS,
from build.py's os.wait4 launcher. Below the table, each column's growth: its time at N
over its time at the previous N, divided by N's ratio (1.00 is linear; the fixed start-up
cost pulls it below 1).

    python benchmarks/status.py                          # about 2 minutes
    python benchmarks/status.py --sizes 1000,10000 --repeat 3
    python benchmarks/status.py --keep                   # leave the run dirs, to profile them
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from itertools import pairwise
from pathlib import Path

# benchmarks/build.py: its config, launcher, output check and lookup of the installed aframe-dag
from build import CONFIG, WORK, check, compile_installed, installed_aframe, machine, run

RECORD, LOCK = "run-local.record", ".run-local.lock"  # aframe_dag.rundir.RECORD, LOCK
SUBMITS_PER_S = 20  # DAGMan's default rate (see clustering.py): the jobstate log's pace


def node_names(dag: Path) -> list[str]:
    """The JOB nodes of a DAG file, in its order."""
    return [line.split()[1] for line in dag.read_text().splitlines() if line.startswith("JOB ")]


def dag_file(dag: Path, command: str) -> Path:
    """The file a DAG's NODE_STATUS_FILE or JOBSTATE_LOG line names, as DAGMan reads it."""
    for line in dag.read_text().splitlines():
        if line.startswith(command + " "):
            return Path(line.split()[1])
    sys.exit(f"{dag}: no {command} line")


def finish_dagman(run_dir: Path) -> None:
    """Write the node status file and jobstate log of a DAGMan run that succeeded."""
    dag = run_dir / "aframe.dag"
    names, now = node_names(dag), int(time.time())
    first = now - len(names) // SUBMITS_PER_S - 2
    log = [f"{first} INTERNAL *** DAGMAN_STARTED 100.0 ***\n"]
    for seq, name in enumerate(names, 1):
        at, job = first + 1 + seq // SUBMITS_PER_S, f"{100 + seq}.0"
        log += [f"{at} {name} {event} {job} - - {seq}\n" for event in ("SUBMIT", "EXECUTE")]
        log += [f"{at} {name} JOB_TERMINATED {job} - - {seq}\n"]
        log += [f"{at} {name} JOB_SUCCESS 0 - - {seq}\n"]
    log.append(f"{now} INTERNAL *** DAGMAN_FINISHED 0 ***\n")
    dag_file(dag, "JOBSTATE_LOG").write_text("".join(log))

    stamp = f'{now}; /* "{time.ctime(now)}" */'
    counts = ["Pre", "Queued", "Post", "Ready", "Unready", "Futile", "Failed"]
    ads = [
        '[\n  Type = "DagStatus";\n  DagFiles = {\n'
        f'    "{dag}"\n  }};\n  Timestamp = {stamp}\n'
        '  DagStatus = 5; /* "STATUS_DONE (success)" */\n'
        f"  NodesTotal = {len(names)};\n  NodesDone = {len(names)};\n"
        + "".join(f"  Nodes{count} = 0;\n" for count in counts)
        + "  JobProcsHeld = 0;\n  JobProcsIdle = 0; /* includes held */\n]\n"
    ]
    ads += [
        f'[\n  Type = "NodeStatus";\n  Node = "{name}";\n'
        '  NodeStatus = 5; /* "STATUS_DONE" */\n  StatusDetails = "";\n'
        "  RetryCount = 0;\n  JobProcsQueued = 0;\n  JobProcsHeld = 0;\n]\n"
        for name in names
    ]
    ads.append(
        f'[\n  Type = "StatusEnd";\n  EndTime = {stamp}\n  NextUpdate = 0; /* "none" */\n]\n'
    )
    dag_file(dag, "NODE_STATUS_FILE").write_text("".join(ads))


def finish_local(run_dir: Path) -> None:
    """Write the lock file and record of a run-local run that succeeded (in DAG order)."""
    dag = run_dir / "aframe.dag"
    names = node_names(dag)
    (run_dir / LOCK).write_text(f"{os.getpid()}\n")  # run-local leaves it, unlocked
    # times from the build on, in whole ms (as run-local writes them): a success older than
    # the DAG file is an earlier build's
    first, now = math.ceil(dag.stat().st_mtime * 1000) / 1000 + 0.001, time.time()
    step = max(now - first, 0.0) / (2 * len(names) + 1)
    lines = [
        f"{event} aframe.dag:{name} {first + step * (2 * i + k + 1):.3f}\n"
        for i, name in enumerate(names)
        for k, event in enumerate(("start", "done"))
    ]
    (run_dir / RECORD).write_text("".join(lines))


def check_status(aframe: str, run_dir: Path, mode: str, nodes: int) -> None:
    """Exit unless `aframe-dag status --json` says the run is a done `mode` run of `nodes`."""
    out = subprocess.run([aframe, "status", str(run_dir), "--json"], capture_output=True)
    if out.returncode:
        sys.exit(f"status {run_dir} failed ({out.returncode}): {out.stderr.decode()}")
    data = json.loads(out.stdout)
    done = sum(stage["done"] for stage in data["stages"])
    total = sum(stage["total"] or 0 for stage in data["stages"])
    if (data["mode"], data["state"], done, total) != (mode, "done", nodes, nodes):
        sys.exit(f"status {run_dir}: {data['mode']} run, {data['state']}, {done}/{total} done")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,200000", help="comma-separated N")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each, best counts")
    parser.add_argument("--keep", action="store_true", help="leave the status run dirs")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    aframe, python = installed_aframe()
    WORK.mkdir(parents=True, exist_ok=True)
    os.chdir(WORK)  # every child runs here, whatever the caller's directory holds
    compile_installed(python)
    work = Path(tempfile.mkdtemp(prefix="status-", dir=WORK))  # left behind if a check fails
    err = work / "stderr"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"machine: {machine()}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M %Z')}; load average {load}; outputs in {work}")

    columns = ["build", "status DAGMan", "status run-local"]
    results: dict[int, list[tuple[float, float]]] = {}
    for n in sizes:
        config = work / f"bench-{n}.yaml"
        config.write_text(CONFIG.substitute(n=n, signals=10 * n))
        dirs = {"dagman": work / f"dagman-{n}", "local": work / f"local-{n}"}
        for mode, finish in (("dagman", finish_dagman), ("local", finish_local)):
            run([aframe, "build", str(config), "--run-dir", str(dirs[mode])], err)
            finish(dirs[mode])
            check_status(aframe, dirs[mode], mode, n + 1)
        best = [(float("inf"), 0.0)] * len(columns)
        for rep in range(args.repeat):
            out = work / f"build-{n}-{rep}"
            times = [run([aframe, "build", str(config), "--run-dir", str(out)], err)]
            check("build", out / "aframe.dag", n + 1, n)
            shutil.rmtree(out)
            times += [run([aframe, "status", str(dirs[mode])], err) for mode in dirs]
            best = [min(b, t) for b, t in zip(best, times, strict=True)]
        results[n] = best
        if not args.keep:
            for path in dirs.values():
                shutil.rmtree(path)

    head = ["nodes", *(f"{c} s (MB)" for c in columns), "DAGMan/build", "run-local/build"]
    print("\n| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for n, best in results.items():
        cells = [f"{n:,}", *(f"{t:.3f} ({mb:.0f})" for t, mb in best)]
        cells += [f"{t / best[0][0]:.2f}" for t, _ in best[1:]]
        print("| " + " | ".join(cells) + " |")
    print("\ngrowth: time at N / time at the previous N, over N / previous N (1.00 is linear)")
    print("| nodes | " + " | ".join(columns) + " |\n|" + "---|" * (len(columns) + 1))
    for previous, n in pairwise(sizes):
        ratios = [
            now[0] / then[0] / (n / previous)
            for now, then in zip(results[n], results[previous], strict=True)
        ]
        print(f"| {previous:,} → {n:,} | " + " | ".join(f"{r:.2f}" for r in ratios) + " |")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\nload average at the end: {load}")
    if args.keep:
        print(f"run dirs left in {work}")
    else:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
