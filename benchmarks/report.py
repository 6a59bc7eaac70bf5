"""Time `aframe-dag report` of a finished N-node run, under DAGMan and run-local, against its build.

For each N (10^4, 10^5) it builds build.py's config (a `gen` stage of N nodes, a `merge`
stage after it) and times, each as a whole process (imports included):

- build: `aframe-dag build CONFIG --run-dir DIR`, into a fresh run dir;
- report DAGMan: `aframe-dag report DIR -o report.html --json report.json` of a run dir as
  a finished DAGMan run leaves it: status.py's node status file and jobstate log, and each
  stage's node log (logs/gen.log, logs/merge.log) with a submit, execute, image-size and
  terminate event per job, the text of HTCondor 23.9.6's own events in
  tests/status_samples/pool_held/logs/hold_me.log.released (about 1.5 kB a job);
- report run-local: the same of a run dir as a finished run-local run leaves it
  (status.py's record);
- graph: `aframe-dag graph DIR -o dag.svg` of the DAGMan run dir: the drawing the page
  embeds;
- node logs: a bare Python that only reads the node logs with `rundir.job_events`, the
  reader report uses (htcondor2.JobEventLog, and the fields report takes of each event);
- JobEventLog: a bare Python that only iterates the node logs' events with
  htcondor2.JobEventLog (the parser report reads them with), the floor of report DAGMan.

Each report is checked first: `--json` must say the run is done, N+1 of N+1 nodes, with
N+1 jobs (DAGMan: every node log event was read). The six run interleaved, --repeat times
(default 3); each column is the best wall time with that run's peak RSS, from build.py's
os.wait4 launcher.

    python benchmarks/report.py                          # about 3 minutes
    python benchmarks/report.py --sizes 1000,10000 --repeat 2
    python benchmarks/report.py --keep                   # leave the run dirs, to profile them
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# benchmarks/build.py and status.py: the config, the launcher, the finished run dirs' records
from build import CONFIG, WORK, check, compile_installed, installed_aframe, machine, run
from status import SUBMITS_PER_S, finish_dagman, finish_local, node_names

HERE = Path(__file__).resolve().parent
SAMPLE = HERE.parent / "tests/status_samples/pool_held/logs/hold_me.log.released"
KEPT = ("000", "001", "006", "005")  # submit, execute, image size, terminate
ITERATE = """
import sys, htcondor2
for log in sys.argv[1:]:
    for event in htcondor2.JobEventLog(log).events(stop_after=0):
        pass
"""
READ = """
import sys
from pathlib import Path
from aframe_dag import rundir
for log in sys.argv[1:]:
    rundir.job_events(Path(log), strict=True)
"""


def event_texts() -> list[str]:
    """The sample's submit, execute, image-size and terminate events, as HTCondor wrote them."""
    events = SAMPLE.read_text().split("...\n")
    return [event for event in events if event[:3] in KEPT]


def write_node_logs(run_dir: Path) -> list[Path]:
    """Each stage's node log of a run that succeeded: a job per node, in DAG order, at
    DAGMan's submit rate (as status.py's jobstate log)."""
    events = event_texts()
    names = node_names(run_dir / "aframe.dag")
    first = int(time.time()) - len(names) // SUBMITS_PER_S - 2
    by_log: dict[Path, list[str]] = {}
    for seq, name in enumerate(names, 1):
        stage = "gen" if name.startswith("gen-") else name
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(first + 1 + seq // 20))
        head = f"\\1 ({100 + seq:03d}.000.000) {stamp}"  # the event's code, this job, now
        by_log.setdefault(run_dir / f"logs/{stage}.log", []).extend(
            re.sub(r"^(\d{3}) \(786\.000\.000\) \S+ \S+", head, event, count=1).replace(
                "DAG Node: hold_me", f"DAG Node: {name}"
            )
            for event in events
        )
    for log, texts in by_log.items():
        log.write_text("...\n".join(texts) + "...\n")
    return list(by_log)


def check_report(aframe: str, run_dir: Path, mode: str, nodes: int, out: Path) -> None:
    """Exit unless `report --json` says the run is a done `mode` run of `nodes` jobs."""
    done = subprocess.run([aframe, "report", str(run_dir), "--json", str(out)], capture_output=True)
    if done.returncode:
        sys.exit(f"report {run_dir} failed ({done.returncode}): {done.stderr.decode()}")
    data = json.loads(out.read_text())
    totals = data["totals"]
    found = (data["mode"], data["state"], totals["done"], totals["nodes"], totals["attempts"])
    if found != (mode, "done", nodes, nodes, nodes):
        sys.exit(f"report {run_dir}: {found}, not {(mode, 'done', nodes, nodes, nodes)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated N")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each, best counts")
    parser.add_argument("--keep", action="store_true", help="leave the run dirs")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    aframe, python = installed_aframe()
    WORK.mkdir(parents=True, exist_ok=True)
    os.chdir(WORK)  # every child runs here, whatever the caller's directory holds
    compile_installed(python)
    work = Path(tempfile.mkdtemp(prefix="report-", dir=WORK))  # left behind if a check fails
    err = work / "stderr"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"machine: {machine()}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M %Z')}; load average {load}; outputs in {work}")

    columns = ["build", "report DAGMan", "report run-local", "graph", "node logs", "JobEventLog"]
    results: dict[int, list[tuple[float, float]]] = {}
    for n in sizes:
        config = work / f"bench-{n}.yaml"
        config.write_text(CONFIG.substitute(n=n, signals=10 * n))
        dirs = {"dagman": work / f"dagman-{n}", "local": work / f"local-{n}"}
        for mode, finish in (("dagman", finish_dagman), ("local", finish_local)):
            run([aframe, "build", str(config), "--run-dir", str(dirs[mode])], err)
            finish(dirs[mode])
        logs = [str(log) for log in write_node_logs(dirs["dagman"])]
        size = sum(Path(log).stat().st_size for log in logs) / 1e6
        print(f"{n:,} nodes: node logs {size:.0f} MB")
        for mode, run_dir in dirs.items():
            check_report(aframe, run_dir, mode, n + 1, work / f"check-{mode}.json")
        best = [(float("inf"), 0.0)] * len(columns)
        for rep in range(args.repeat):
            out = work / f"build-{n}-{rep}"
            times = [run([aframe, "build", str(config), "--run-dir", str(out)], err)]
            check("build", out / "aframe.dag", n + 1, n)
            shutil.rmtree(out)
            for run_dir in dirs.values():
                page, data = work / "report.html", work / "report.json"
                times.append(run([aframe, "report", str(run_dir), "-o", str(page),
                                  "--json", str(data)], err))  # fmt: skip
            times.append(run([aframe, "graph", str(dirs["dagman"]), "-o", str(work / "dag.svg")],
                             err))  # fmt: skip
            times.append(run([python, "-c", READ, *logs], err))
            times.append(run([python, "-c", ITERATE, *logs], err))
            best = [min(b, t) for b, t in zip(best, times, strict=True)]
        results[n] = best
        if not args.keep:
            for path in dirs.values():
                shutil.rmtree(path)

    head = ["nodes", *(f"{c} s (MB)" for c in columns), "DAGMan/build", "run-local/build"]
    print("\n| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for n, best in results.items():
        cells = [f"{n:,}", *(f"{t:.3f} ({mb:.0f})" for t, mb in best)]
        cells += [f"{t / best[0][0]:.2f}" for t, _ in best[1:3]]
        print("| " + " | ".join(cells) + " |")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\nload average at the end: {load}")
    if args.keep:
        print(f"run dirs left in {work}")
    else:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
