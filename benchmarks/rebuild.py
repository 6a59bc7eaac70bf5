"""Time a rebuild in which every node is complete against a fresh build of the same DAG.

The DAG is build.py's (N `gen` nodes and a `merge`), with `gen` declaring one output per
node. Three builds, each the whole `aframe-dag build CONFIG --run-dir DIR` process, best of
5, interleaved:

- fresh: into an empty run dir;
- outputs: into a run dir where every output exists and nothing is recorded (every gen
  node adopted, DONE);
- finished: into a run dir as a finished run leaves it: the fresh build, every output,
  DAGMan's jobstate log (SUBMIT, EXECUTE, JOB_TERMINATED, JOB_SUCCESS per node, as in
  tests/samples/rescue-run.jobstate.log) and run-local's record (start and done per node).
  A rebuild records what it harvested, so before each one the build's own records
  (fingerprints.json, .aframe-dag/completed.json) are put back as the fresh build left them.

    python benchmarks/rebuild.py                 # 10^5 nodes, about a minute
    python benchmarks/rebuild.py --nodes 10000   # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

# benchmarks/build.py: its config, launcher, machine line and lookup of aframe-dag
from build import CONFIG, WORK, compile_installed, installed_aframe, machine, run

REPEATS = 5
OUTPUTS = '    outputs: ["{{ run_dir }}/out/part-{{ item.index }}.txt"]\n'
RECORDS = ("fingerprints.json", ".aframe-dag/completed.json")  # what a rebuild rewrites


def finished_run(run_dir: Path, n: int) -> None:
    """Write what a finished run leaves beside the build: a jobstate log and a record."""
    written = json.loads((run_dir / "fingerprints.json").read_text())["written"]
    t = int(written) + 1  # after the build: these successes are its nodes'
    nodes = [f"gen-{i}" for i in range(n)] + ["merge"]
    with open(run_dir / "aframe.jobstate.log", "w") as log:
        log.write(f"{t} INTERNAL *** DAGMAN_STARTED 14.0 ***\n")
        for job, node in enumerate(nodes, 15):
            log.write(
                f"{t} {node} SUBMIT {job}.0 - - {job}\n{t} {node} EXECUTE {job}.0 - - {job}\n"
                f"{t} {node} JOB_TERMINATED {job}.0 - - {job}\n{t} {node} JOB_SUCCESS 0 - - {job}\n"
            )
        log.write(f"{t} INTERNAL *** DAGMAN_FINISHED 0 ***\n")
    with open(run_dir / "run-local.record", "w") as record:
        record.writelines(
            f"start aframe.dag:{node} {t:.3f}\ndone aframe.dag:{node} {t + 0.5:.3f}\n"
            for node in nodes
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100_000, help="N, the gen nodes")
    n = parser.parse_args().nodes
    aframe, python = installed_aframe()
    WORK.mkdir(parents=True, exist_ok=True)
    os.chdir(WORK)  # every child runs here, whatever the caller's directory holds
    compile_installed(python)
    work = Path(tempfile.mkdtemp(prefix="rebuild-", dir=WORK))  # left behind if a check fails
    err, config = work / "stderr", work / "complete.yaml"
    config.write_text(  # as build.py's completeness check
        CONFIG.substitute(n=n, signals=10 * n).replace("    retry: 2\n", "    retry: 2\n" + OUTPUTS)
    )

    def build(run_dir: Path) -> tuple[float, float]:
        return run([aframe, "build", str(config), "--run-dir", str(run_dir)], err)

    dirs = {"outputs": work / "outputs", "finished": work / "finished"}
    for run_dir in dirs.values():
        (run_dir / "out").mkdir(parents=True)
        for i in range(n):
            (run_dir / "out" / f"part-{i}.txt").touch()
    build(dirs["finished"])
    finished_run(dirs["finished"], n)
    saved = {name: (dirs["finished"] / name).read_bytes() for name in RECORDS}

    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f}; {n:,} gen nodes")
    best: dict[str, tuple[float, float]] = {}
    for rep in range(REPEATS):
        fresh = work / f"fresh-{rep}"
        best["fresh"] = min(best.get("fresh", (1e9, 0)), build(fresh))
        shutil.rmtree(fresh)
        for kind, run_dir in dirs.items():
            for name, data in saved.items() if kind == "finished" else ():
                (run_dir / name).write_bytes(data)
            best[kind] = min(best.get(kind, (1e9, 0)), build(run_dir))
            text = (run_dir / "aframe.dag").read_text()
            want = n + (kind == "finished")  # merge too, when the record says it ran
            if text.count(" DONE\n") != want:
                sys.exit(f"{kind}: {text.count(' DONE' + chr(10))} of {want} nodes DONE")
    for kind, (wall, rss) in best.items():
        ratio = wall / best["fresh"][0]
        print(f"  {kind:<9} {wall:.3f} s ({rss:.0f} MB)  {ratio:.2f}x fresh")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
