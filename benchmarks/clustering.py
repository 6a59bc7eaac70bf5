"""Build an N-item fan-out with tasks_per_job k: condor jobs, submit time, build time, file sizes.

For each N (10^3, 10^4, 10^5) and k (1, 10, 100), one config: a `gen` stage with
`foreach: {count: {num_jobs: N}}`, `tasks_per_job: k`, container mode none and a /bin/true
command. Each is built 3 times, interleaved, with the installed `aframe-dag build` (the
console script build.py finds, its package compiled to bytecode first) into a fresh run dir
under benchmarks/.work/, where every child runs; the table has the best wall time of the
whole process, that run's peak RSS (the os.wait4 launcher of build.py), the JOB lines of
the written aframe.dag, the sizes of aframe.dag and gen.tasks, and the least time DAGMan
needs to submit those jobs.
Every output is checked first: ceil(N/k) JOB lines whose names and VARS cover gen-0 ...
gen-(N-1) in order, and for k > 1 a gen.tasks of N lines (for k = 1, none).

DAGMan submits at most DAGMAN_MAX_SUBMITS_PER_INTERVAL jobs (default 100) per
DAGMAN_USER_LOG_SCAN_INTERVAL (default 5 s): 20 jobs/s, so at best jobs / 20 seconds. The
HTCondor manual: "The maximum rate at which DAGMan can submit jobs is
DAGMAN_MAX_SUBMITS_PER_INTERVAL / DAGMAN_USER_LOG_SCAN_INTERVAL" (admin manual,
configuration macros, DAGMan; docs/admin-manual/configuration-macros.rst in 23.0.28 and
24.0.24, docs/admin-manual/configuration/dagman.rst in 25.x). The same defaults, 100 and 5,
are in src/condor_utils/param_info.in of all three.

    python benchmarks/clustering.py                               # about 20 s
    python benchmarks/clustering.py --items 1000,10000 --k 1,10   # quicker
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

# benchmarks/build.py: its launcher, machine line and lookup of the installed aframe-dag
from build import WORK, compile_installed, installed_aframe, machine, run

REPEATS = 3
MAX_SUBMITS_PER_INTERVAL = 100  # DAGMAN_MAX_SUBMITS_PER_INTERVAL default
SCAN_INTERVAL_S = 5  # DAGMAN_USER_LOG_SCAN_INTERVAL default, seconds
SUBMITS_PER_S = MAX_SUBMITS_PER_INTERVAL / SCAN_INTERVAL_S

CONFIG = """name: bench
condor: {{container: none}}
stages:
  gen:
    foreach: {{count: {{num_jobs: {n}}}}}
    tasks_per_job: {k}
    command: /bin/true --index={{{{ item.index }}}}
"""


def check(run_dir: Path, n: int, k: int) -> tuple[int, int, int]:
    """Exit unless run_dir holds n items in ceil(n/k) jobs; return (jobs, dag, tasks bytes)."""
    dag, tasks = run_dir / "aframe.dag", run_dir / "gen.tasks"
    lines = dag.read_text().splitlines()
    jobs = [line.split()[1] for line in lines if line.startswith("JOB ")]
    items = [f"gen-{i}" for i in range(n)]
    if k == 1:  # a node per item, named for it, and no tasks file
        names, in_vars, tasks_ok = items, items, not tasks.exists()
    else:  # JOB gen-FIRST-LAST, VARS gen-FIRST-LAST tasks="gen-FIRST ... gen-LAST"
        names = [f"gen-{i}-{min(i + k, n) - 1}" for i in range(0, n, k)]
        vars_lines = (line.partition(' tasks="')[2] for line in lines if line.startswith("VARS "))
        in_vars = [name for value in vars_lines for name in value.rstrip('"').split()]
        listed = tasks.read_text().splitlines() if tasks.exists() else []
        tasks_ok = [line.split(" ", 1)[0] for line in listed] == items
    wrong = []
    if jobs != names or len(jobs) != math.ceil(n / k):
        first = jobs[0] if jobs else "none"
        wrong.append(f"{len(jobs)} JOB lines from {first}, not {len(names)} from {names[0]}")
    if in_vars != items:
        wrong.append(f"the VARS name {len(in_vars)} tasks, not gen-0 ... gen-{n - 1}")
    if not tasks_ok:
        wrong.append("gen.tasks is there" if k == 1 else f"gen.tasks does not list the {n} items")
    if wrong:
        sys.exit(f"N={n}, k={k}: wrong output in {run_dir}: {'; '.join(wrong)}")
    return len(jobs), dag.stat().st_size, tasks.stat().st_size if k > 1 else 0


def size(n_bytes: int) -> str:
    return f"{n_bytes / 1e3:.1f} kB" if n_bytes < 1e6 else f"{n_bytes / 1e6:.2f} MB"


def duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hms = f" ({minutes // 60}:{minutes % 60:02}:{secs:02})" if seconds >= 60 else ""
    return f"{seconds:,.1f} s{hms}"


def numbers(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=numbers, default="1000,10000,100000", help="N list")
    parser.add_argument("--k", type=numbers, default="1,10,100", help="tasks_per_job list")
    args = parser.parse_args()
    if min(args.items) < 1 or min(args.k) < 1:
        parser.error("--items and --k must be at least 1")
    # the console script next to this Python (not a pyenv shim), else on PATH; from
    # bytecode, as pip leaves an installed package: with PYTHONDONTWRITEBYTECODE set, an
    # edited editable checkout would otherwise be compiled again by every build
    aframe, python = installed_aframe()
    build = [aframe, "build"]
    WORK.mkdir(parents=True, exist_ok=True)
    os.chdir(WORK)  # every child runs here, whatever the caller's directory holds
    compile_installed(python)
    work = Path(tempfile.mkdtemp(prefix="clustering-", dir=WORK))  # left behind if a check fails
    err = work / "stderr"

    print(f"machine: {machine()}")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"date: {time.strftime('%Y-%m-%d %H:%M %Z')}; load average {load}; run dirs in {work}")
    print(f"aframe-dag: {aframe}")
    print(
        f"DAGMan's default rate: DAGMAN_MAX_SUBMITS_PER_INTERVAL {MAX_SUBMITS_PER_INTERVAL} / "
        f"DAGMAN_USER_LOG_SCAN_INTERVAL {SCAN_INTERVAL_S} s = {SUBMITS_PER_S:g} jobs/s\n"
    )
    started = time.perf_counter()
    rows = []
    for n in args.items:
        configs = {k: work / f"n{n}-k{k}.yaml" for k in args.k}
        for k, config in configs.items():
            config.write_text(CONFIG.format(n=n, k=k))
        best: dict[int, tuple[float, float]] = {}
        files: dict[int, tuple[int, int, int]] = {}
        for rep in range(REPEATS):
            for k, config in configs.items():
                run_dir = work / f"n{n}-k{k}-{rep}"
                wall, rss = run([*build, str(config), "--run-dir", str(run_dir)], err)
                files[k] = check(run_dir, n, k)  # before the time counts
                best[k] = min(best.get(k, (wall, rss)), (wall, rss))
                shutil.rmtree(run_dir)
        for k in args.k:
            jobs, dag, tasks = files[k]
            wall, rss = best[k]
            cells = [f"{n:,}", f"{k}", f"{jobs:,}", duration(jobs / SUBMITS_PER_S),
                     f"{wall:.3f} ({rss:.0f})", size(dag), size(tasks) if tasks else "-",
                     size(dag + tasks)]  # fmt: skip
            rows.append(cells)

    head = ["items N", "k", "condor jobs", f"submit ≥ (at {SUBMITS_PER_S:g}/s)",
            f"build s (MB), best of {REPEATS}", "aframe.dag", "gen.tasks", "both"]  # fmt: skip
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for cells in rows:
        print("| " + " | ".join(cells) + " |")
    sub = work / f"n{max(args.items)}-k{args.k[0]}-0" / "gen.sub"  # sizes grow with this path
    print(f"\neach JOB line holds its .sub's absolute path, e.g. {sub} ({len(str(sub))} chars)")
    print(f"{len(rows) * REPEATS} builds in {time.perf_counter() - started:.0f} s")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
