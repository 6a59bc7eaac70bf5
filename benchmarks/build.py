"""How long does it take to write one DAG with aframe-dag, and with the alternatives?

Writes the same two-stage DAG (N `gen` nodes with VARS and RETRY, one `merge` node, one
PARENT gen-0 ... gen-(N-1) CHILD merge edge, gen.sub and merge.sub) with four writers, each
as its own process, at 10^3, 10^4 and 10^5 nodes:

  aframe-dag     `aframe-dag build CONFIG --run-dir DIR` (whole process, imports included)
  raw            a bare Python script with f-strings (the floor for writing these bytes)
  htcondor.dags  HTCondor's own DAG writer (htcondor==24.0.24, the last wheel that has it)
  ezdag          ezdag's Layer/Node/Option API on top of htcondor.dags

Each writer runs 3 times per size into a fresh dir under benchmarks/.work/; the table shows
the best wall time and the child's peak RSS (os.wait4). Every output is checked (N+1 JOB
lines, the edge, both .sub files; raw must match aframe-dag's files byte for byte) before
its time counts. It also times `aframe-dag expand` of a run-time sub-DAG of 10^4 nodes.

htcondor.dags and ezdag run in benchmarks/.venv-compare, created on first use (needs PyPI);
without it those columns are reported as not measured.

    python benchmarks/build.py                      # 10^3, 10^4, 10^5 nodes
    python benchmarks/build.py --sizes 1000,10000   # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work"
VENV = HERE / ".venv-compare"
VENV_PY = VENV / "bin" / "python"
REPEATS = 3
EXPAND_NODES = 10_000

CONFIG = """name: bench
condor: {{container: none}}
stages:
  gen:
    foreach: {{count: {{num_jobs: {n}, num_signals: {signals}}}}}
    command: python3 -c pass --index={{{{ item.index }}}} --num-signals={{{{ item.num_signals }}}}
    retry: 2
  merge:
    after: [gen]
    command: python3 -c pass
"""
EXPAND_CONFIG = """name: bench
condor: {{container: none}}
stages:
  fetch:
    foreach: {{segments: {{file: {segfile}, max_duration: 100}}}}
    command: python3 -c pass --start={{{{ item.start }}}} --end={{{{ item.end }}}}
"""
# Submit settings aframe-dag writes for this config; htcondor.dags and ezdag get the same.
COMMON = {
    "universe": "vanilla", "executable": "/usr/bin/env", "transfer_executable": "false",
    "getenv": "KRB5_KTNAME, X509_USER_PROXY, GWDATAFIND_SERVER, NDSSERVER, LIGO_USERNAME, "
    "DEFAULT_SEGMENT_SERVER, AWS_ENDPOINT_URL",
    "request_cpus": "1", "request_memory": "2GB", "request_disk": "1GB",
    "use_oauth_services": "scitokens",
}  # fmt: skip

# Each writer below runs as `python -c CODE N OUT_DIR COMMON_JSON`.
RAW = r'''
import json, os, sys
n, out, c = int(sys.argv[1]), os.path.abspath(sys.argv[2]), json.loads(sys.argv[3])
for d in ("logs/gen", "logs/merge"):
    os.makedirs(f"{out}/{d}")
def sub(stage, about, args):
    return (f"# aframe-dag bench: stage {stage}\n# {about}\n\nuniverse = vanilla\n"
            f"executable = /usr/bin/env\narguments = \"{args}\"\ntransfer_executable = false\n"
            f"initialdir = {out}\ngetenv = {c['getenv']}\n\nrequest_cpus = 1\n"
            f"request_memory = 2GB\nrequest_disk = 1GB\n\nlog = logs/{stage}.log\n"
            f"output = logs/{stage}/$(JOB).out\nerror = logs/{stage}/$(JOB).err\n"
            f"use_oauth_services = scitokens\n\nqueue\n")
with open(f"{out}/gen.sub", "w") as f:
    f.write(sub("gen", f"{n} nodes (count fan-out); each sets index, num_signals through VARS.",
                "python3 -c pass \\\n    '--index=$(index)' \\\n    '--num-signals=$(num_signals)'"))
with open(f"{out}/merge.sub", "w") as f:
    f.write(sub("merge", "One node.", "python3 -c pass"))
with open(f"{out}/aframe.dag", "w") as f:
    f.write(f"# aframe-dag bench: the whole workflow.\n# Submit with: condor_submit_dag "
            f"{out}/aframe.dag\n# Nodes of a stage share its .sub file and differ only by VARS.\n"
            f"\nJOBSTATE_LOG {out}/aframe.jobstate.log\nNODE_STATUS_FILE {out}/aframe.status 30\n"
            f"\n# gen: {n} nodes\n")
    f.writelines(f'JOB gen-{i} {out}/gen.sub\nVARS gen-{i} index="{i}" num_signals="10"\n'
                 f"RETRY gen-{i} 2\n" for i in range(n))
    f.write(f"\n# merge: one node\nJOB merge {out}/merge.sub\n\n# Dependencies: every node of "
            f"a parent stage before every node of its child.\n"
            f"PARENT {' '.join(f'gen-{i}' for i in range(n))} CHILD merge\n")
'''
# Both libraries name nodes through a NodeNameFormatter: this one gives gen-0 ... and merge.
PRELUDE = r'''
import json, sys, warnings
from pathlib import Path
warnings.simplefilter("ignore")  # htcondor warns that there is no condor_config
import htcondor
from htcondor import dags
n, out, common = int(sys.argv[1]), Path(sys.argv[2]).absolute(), json.loads(sys.argv[3])
class Names(dags.NodeNameFormatter):
    def generate(self, layer, index):
        return f"{layer}-{index}" if layer == "gen" else layer
    def parse(self, name):
        layer, _, index = name.partition("-")
        return layer, int(index or 0)
def files(stage):
    return {"initialdir": str(out), "log": f"logs/{stage}.log",
            "output": f"logs/{stage}/$(JOB).out", "error": f"logs/{stage}/$(JOB).err"}
'''
DAGS = PRELUDE + r'''
args = "\"python3 -c pass '--index=$(index)' '--num-signals=$(num_signals)'\""
dag = dags.DAG()
gen = dag.layer(name="gen", retries=2,
                submit_description=htcondor.Submit({**common, "arguments": args, **files("gen")}),
                vars=[{"index": str(i), "num_signals": "10"} for i in range(n)])
gen.child_layer(name="merge", submit_description=htcondor.Submit(
    {**common, "arguments": '"python3 -c pass"', **files("merge")}))
dags.write_dag(dag, out, dag_file_name="aframe.dag", node_name_formatter=Names())
'''
EZDAG = PRELUDE + r'''
from ezdag import DAG, Layer, Node, Option
desc = {k: v for k, v in common.items() if k not in ("universe", "executable")}
def layer(name, retries):
    return Layer(common["executable"], name=name, retries=retries, transfer_files=False,
                 log_dir=f"logs/{name}", submit_description={**desc, **files(name)})
gen, merge = layer("gen", 2), layer("merge", 0)
gen.extend(Node(arguments=["python3", "-c", "pass", Option("index", i), Option("num-signals", 10)])
           for i in range(n))
merge += Node(arguments=["python3", "-c", "pass"])
dag = DAG("aframe", formatter=Names())
dag.attach(gen)
dag.attach(merge)
dag.glob("gen").add_children(dag.glob("merge"))  # ezdag infers edges only from file I/O
dag.write(out)
'''


def run(cmd: list[str], log: Path) -> tuple[float, float]:
    """Run cmd; return (wall seconds, child peak RSS in MB); exit on failure."""
    with open(log, "wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd[:3])} ...\n{log.read_text()}")
    return wall, usage.ru_maxrss / 1024


def check(label: str, out: Path, n: int, dag: str = "aframe.dag", stage: str = "gen") -> None:
    """Exit unless out holds n stage nodes (+1 merge, if stage is gen) and the edge."""
    lines = (out / dag).read_text().splitlines()
    jobs = sum(line.startswith("JOB ") for line in lines)
    parents = {
        name
        for line in lines
        if line.startswith("PARENT ") and line.endswith(" CHILD merge")
        for name in line.split()[1:-2]
    }
    ok = jobs == n + 1 and parents == {f"gen-{i}" for i in range(n)}
    if stage != "gen":  # a sub-DAG of one stage: n nodes, no edge
        ok = jobs == n
    elif not ((out / "gen.sub").is_file() and (out / "merge.sub").is_file()):
        ok = False
    if not ok:
        sys.exit(f"{label}: wrong output in {out} ({jobs} JOB lines, {len(parents)} parents)")


def same_files(a: Path, b: Path) -> None:
    """Exit unless the raw writer's files equal aframe-dag's, run dir paths aside."""
    for name in ("aframe.dag", "gen.sub", "merge.sub"):
        if (a / name).read_text().replace(str(a), "RUN") != (b / name).read_text().replace(
            str(b), "RUN"
        ):
            sys.exit(f"raw: {name} differs from aframe-dag's ({a} vs {b})")


def compare_venv() -> str | None:
    """Make sure the compare venv imports htcondor.dags and ezdag; return why not, or None."""
    probe = [str(VENV_PY), "-W", "ignore", "-c", "import htcondor.dags, ezdag"]
    if VENV_PY.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return None
    print(f"creating {VENV} (htcondor==24.0.24, ezdag) ...", flush=True)
    steps = [
        [sys.executable, "-m", "venv", str(VENV)],
        [str(VENV_PY), "-m", "pip", "install", "-q", "htcondor==24.0.24", "ezdag"],
        probe,
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode:
            lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
            return f"`{' '.join(step[1:4])}` failed: {lines[-1]}"
    (VENV / ".gitignore").write_text("*\n")
    return None


def machine() -> str:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if "model name" in line),
        platform.machine(),
    )
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="comma-separated N")
    sizes = [int(s) for s in parser.parse_args().sizes.split(",")]
    exe = Path(sys.executable).with_name("aframe-dag")  # the console script, not a shim
    aframe = str(exe) if exe.exists() else shutil.which("aframe-dag") or "aframe-dag"
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / ".gitignore").write_text("*\n")
    work = Path(tempfile.mkdtemp(prefix="run-", dir=WORK))
    common = json.dumps(COMMON)

    why_not = compare_venv()
    writers = {"aframe-dag": [], "raw": [sys.executable, "-c", RAW]}
    if why_not is None:
        writers["htcondor.dags"] = [str(VENV_PY), "-c", DAGS]
        writers["ezdag"] = [str(VENV_PY), "-c", EZDAG]
    print(f"machine: {machine()}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M %Z')}; outputs on {work}")
    if why_not:
        print(f"htcondor.dags and ezdag NOT measured: {why_not}")

    floor = min(run([sys.executable, "-c", "pass"], work / "err")[0] for _ in range(REPEATS))
    start = min(run([aframe, "--version"], work / "err")[0] for _ in range(REPEATS))
    print(f"start-up alone: python -c pass {floor:.3f} s, aframe-dag --version {start:.3f} s\n")

    results: dict[int, dict[str, tuple[float, float]]] = {}
    for n in sizes:
        config = work / f"bench-{n}.yaml"
        config.write_text(CONFIG.format(n=n, signals=10 * n))
        best: dict[str, tuple[float, float]] = {}
        for rep in range(REPEATS):
            for name, cmd in writers.items():
                out = work / f"{name}-{n}-{rep}"
                if name == "aframe-dag":
                    full = [aframe, "build", str(config), "--run-dir", str(out)]
                else:
                    full = [*cmd, str(n), str(out), common]
                wall, rss = run(full, work / "err")
                check(name, out, n)
                if name == "raw":
                    same_files(out, work / f"aframe-dag-{n}-{rep}")
                best[name] = min(best.get(name, (wall, rss)), (wall, rss))
            for name in writers:
                shutil.rmtree(work / f"{name}-{n}-{rep}")
        results[n] = best

    names = ["aframe-dag", "raw", "htcondor.dags", "ezdag"]
    head = ["nodes", *(f"{w} s (MB)" for w in names), "aframe/raw", "aframe/dags", "aframe/ezdag"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for n, best in results.items():
        cells = [f"{n:,}"]
        cells += [f"{best[w][0]:.3f} ({best[w][1]:.0f})" if w in best else "n/a" for w in names]
        cells += [f"{best['aframe-dag'][0] / best[w][0]:.2f}" if w in best else "n/a" for w in names[1:]]  # fmt: skip
        print("| " + " | ".join(cells) + " |")
    per_k = ", ".join(f"{n:,}: {b['aframe-dag'][0] / n * 1000:.3f} s" for n, b in results.items())
    print(f"\naframe-dag seconds per 1000 nodes: {per_k}")

    # a run-time sub-DAG: the segments file appears only after build
    segfile, run_dir = work / "segments.txt", work / "expand-run"
    config = work / "expand.yaml"
    config.write_text(EXPAND_CONFIG.format(segfile=segfile))
    run([aframe, "build", str(config), "--run-dir", str(run_dir)], work / "err")
    if "SUBDAG EXTERNAL fetch" not in (run_dir / "aframe.dag").read_text():
        sys.exit("expand: fetch was not written as a run-time sub-DAG")
    duration = EXPAND_NODES * 100
    segfile.write_text(f"# seg\tstart\tstop\tduration\n0\t1000000000\t{10**9 + duration}\t{duration}\n")  # fmt: skip
    wall, rss = min(run([aframe, "expand", str(run_dir), "fetch"], work / "err") for _ in range(REPEATS))  # fmt: skip
    check("expand", run_dir, EXPAND_NODES, dag="fetch.dag", stage="fetch")
    print(f"aframe-dag expand, {EXPAND_NODES:,} nodes: {wall:.3f} s ({rss:.0f} MB)")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
