"""Time writing one DAG with aframe-dag, a bare f-string script, htcondor.dags and ezdag.

The DAG: N `gen` nodes with VARS and RETRY, one `merge` node, one edge PARENT gen-0 ...
gen-(N-1) CHILD merge, gen.sub and merge.sub. Each writer is its own process:
aframe-dag is `aframe-dag build CONFIG --run-dir DIR` (imports included); raw is plain
f-strings (the floor for these bytes); htcondor.dags is HTCondor's writer
(htcondor==24.0.24, the last wheel with it); ezdag is its Layer/Node/Option API.

At each N (10^3, 10^4, 10^5) every writer runs 5 times, interleaved, into a fresh dir under
benchmarks/.work/; the table has the best wall time, that run's peak RSS (os.wait4), and
ratios. Each output is checked (N+1 JOB lines, the edge, both .sub files; raw's node lines
equal aframe-dag's) before its time counts. Last, `aframe-dag expand` of a run-time
sub-DAG of 10^4 nodes.

aframe-dag is the project's installed console script (the `aframe-dag` next to the Python
running this, else on PATH); raw runs on that script's Python. htcondor.dags and ezdag run
in a virtualenv of their own outside the tree, --venv or $AFRAME_DAG_BENCH_VENV, by default
${XDG_CACHE_HOME:-~/.cache}/aframe-dag/bench-venv, made on first use from PyPI with only
htcondor==24.0.24 and ezdag; if that fails, the run says why and measures the other two.
Children run in benchmarks/.work/, so the caller's directory does not matter.

    python benchmarks/build.py                      # about a minute
    python benchmarks/build.py --sizes 1000,10000   # quicker
    rm -rf ~/.cache/aframe-dag/bench-venv           # remove the comparison env
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
from string import Template

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work"  # ignored by the repository's .gitignore
VENV_VAR = "AFRAME_DAG_BENCH_VENV"  # where the htcondor.dags and ezdag env lives
COMPARE = ["htcondor==24.0.24", "ezdag"]  # 24.0.24: the last htcondor wheel with htcondor.dags
REPEATS, EXPAND_NODES = 5, 10_000
# Imports the installed aframe_dag (run from WORK, so no checkout in the cwd shadows it)
# and compiles it to bytecode.
COMPILE = (
    "import compileall, os, aframe_dag; "
    "compileall.compile_dir(os.path.dirname(aframe_dag.__file__), quiet=1)"
)

CONFIG = Template("""name: bench
condor: {container: none}
stages:
  gen:
    foreach: {count: {num_jobs: $n, num_signals: $signals}}
    command: python3 -c pass --index={{ item.index }} --num-signals={{ item.num_signals }}
    retry: 2
  merge:
    after: [gen]
    command: python3 -c pass
""")
EXPAND_CONFIG = Template("""name: bench
condor: {container: none}
stages:
  fetch:
    foreach: {segments: {file: $segfile, max_duration: 100}}
    command: python3 -c pass --start={{ item.start }} --end={{ item.end }}
""")
# What aframe-dag's .sub files set for this config; htcondor.dags and ezdag set the same.
COMMON = {
    "universe": "vanilla", "executable": "/usr/bin/env", "transfer_executable": "false",
    "getenv": "KRB5_KTNAME, X509_USER_PROXY, GWDATAFIND_SERVER, NDSSERVER, LIGO_USERNAME, "
    "DEFAULT_SEGMENT_SERVER, AWS_ENDPOINT_URL",
    "request_cpus": "1", "request_memory": "2GB", "request_disk": "1GB",
    "periodic_remove": "(JobStatus == 5 && time() - EnteredCurrentStatus > 3600)",
    "use_oauth_services": "scitokens",
}  # fmt: skip

# Each writer runs as `PYTHON -c CODE N OUT_DIR COMMON_JSON`.
RAW = r"""
import json, os, sys
n, out, c = int(sys.argv[1]), os.path.abspath(sys.argv[2]), json.loads(sys.argv[3])
for d in ("logs/gen", "logs/merge"):
    os.makedirs(f"{out}/{d}")
def sub(stage, about, args):
    return (f"# aframe-dag bench: stage {stage}\n# {about}\n\nuniverse = vanilla\n"
            f"executable = /usr/bin/env\narguments = \"{args}\"\ntransfer_executable = false\n"
            f"initialdir = {out}\ngetenv = {c['getenv']}\n\nrequest_cpus = 1\n"
            f"request_memory = 2GB\nrequest_disk = 1GB\n# held longer than 3600 s: removed, "
            f"so the node fails and DAGMan moves on\nperiodic_remove = {c['periodic_remove']}\n"
            f"\nlog = logs/{stage}.log\noutput = logs/{stage}/$(JOB).out\n"
            f"error = logs/{stage}/$(JOB).err\nuse_oauth_services = scitokens\n\nqueue\n")
with open(f"{out}/gen.sub", "w") as f:
    f.write(sub("gen", f"{n} nodes (count fan-out); each sets index, num_signals through VARS.",
                "python3 -c pass \\\n    '--index=$(index)' \\\n"
                "    '--num-signals=$(num_signals)'"))
with open(f"{out}/merge.sub", "w") as f:
    f.write(sub("merge", "One node.", "python3 -c pass"))
with open(f"{out}/aframe.dag", "w") as f:
    f.write(f"# aframe-dag bench: the whole workflow.\n# Submit with: condor_submit_dag "
            f"{out}/aframe.dag\n# Nodes of a stage share its .sub file and differ only by VARS.\n"
            "\n# Node jobs are submitted from DAGMan's environment, which holds only a few "
            "variables;\n# these are the ones the .sub files take with getenv (manual: DAGMan, "
            "ENV command).\nENV GET KRB5_KTNAME X509_USER_PROXY GWDATAFIND_SERVER NDSSERVER "
            "LIGO_USERNAME DEFAULT_SEGMENT_SERVER AWS_ENDPOINT_URL\n"
            f"JOBSTATE_LOG {out}/aframe.jobstate.log\nNODE_STATUS_FILE {out}/aframe.status 30\n"
            f"\n# gen: {n} nodes\n")
    f.writelines(f'JOB gen-{i} {out}/gen.sub\nVARS gen-{i} index="{i}" num_signals="10"\n'
                 f"RETRY gen-{i} 2\n" for i in range(n))
    f.write(f"\n# merge: one node\nJOB merge {out}/merge.sub\n\n# Dependencies: every node of "
            f"a parent stage before every node of its child.\n"
            f"PARENT {' '.join(f'gen-{i}' for i in range(n))} CHILD merge\n")
"""
# Both libraries name nodes with a NodeNameFormatter; this one gives gen-0 ... and merge.
PRELUDE = r"""
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
"""
DAGS = PRELUDE + r"""
args = "\"python3 -c pass '--index=$(index)' '--num-signals=$(num_signals)'\""
dag = dags.DAG()
gen = dag.layer(name="gen", retries=2,
                submit_description=htcondor.Submit({**common, "arguments": args, **files("gen")}),
                vars=[{"index": str(i), "num_signals": "10"} for i in range(n)])
gen.child_layer(name="merge", submit_description=htcondor.Submit(
    {**common, "arguments": '"python3 -c pass"', **files("merge")}))
dags.write_dag(dag, out, dag_file_name="aframe.dag", node_name_formatter=Names())
"""  # fmt: skip
EZDAG = PRELUDE + r"""
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
(gen_layer,), (merge_layer,) = dag.glob("gen"), dag.glob("merge")
gen_layer.add_children(merge_layer)  # ezdag infers edges only from file inputs/outputs
dag.write(out)
"""  # fmt: skip


# Runs argv[1:] and prints wall seconds, its peak RSS (KB) and exit code. A child spawned
# straight from this script would report at least this script's own peak RSS (Linux counts
# the pre-exec memory in ru_maxrss), so a small launcher spawns it instead.
LAUNCH = """import os, sys, time
started = time.perf_counter()
pid = os.posix_spawnp(sys.argv[1], sys.argv[1:], os.environ,
                      file_actions=[(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)])
_, status, usage = os.wait4(pid, 0)
print(time.perf_counter() - started, usage.ru_maxrss, os.waitstatus_to_exitcode(status))"""


def run(cmd: list[str], log: Path) -> tuple[float, float]:
    """Run cmd; return (wall seconds, the child's peak RSS in MB); exit on failure."""
    with open(log, "wb") as err:
        launch = [sys.executable, "-I", "-S", "-c", LAUNCH, *cmd]
        done = subprocess.run(launch, stdout=subprocess.PIPE, stderr=err, text=True)
    wall, rss, code = done.stdout.split() or ["0", "0", str(done.returncode)]
    if int(code) or done.returncode:
        shown = " ".join([*cmd[:2], "CODE", *cmd[3:]] if cmd[1:2] == ["-c"] else cmd)
        sys.exit(f"failed ({code}): {shown}\n{log.read_text()}")
    return float(wall), int(rss) / 1024


def check(label: str, dag: Path, jobs: int, parents: int) -> None:
    """Exit unless dag has `jobs` JOB lines and exactly gen-0 ... gen-(parents-1) before merge."""
    lines = dag.read_text().splitlines()
    found = sum(line.startswith("JOB ") for line in lines)
    edges = [line.split() for line in lines if line.startswith("PARENT ")]
    edge = {name for words in edges if words[-2:] == ["CHILD", "merge"] for name in words[1:-2]}
    subs = not parents or all((dag.parent / f"{s}.sub").is_file() for s in ("gen", "merge"))
    if found != jobs or edge != {f"gen-{i}" for i in range(parents)} or not subs:
        sys.exit(f"{label}: wrong output in {dag} ({found} JOB lines, {len(edge)} parents)")


def differing(raw: Path, aframe: Path) -> list[str]:
    """Exit unless raw's node lines equal aframe-dag's; return the files that differ at all."""

    def text(run_dir: Path, name: str) -> str:
        return (run_dir / name).read_text().replace(str(run_dir), "RUN")

    def nodes(run_dir: Path) -> list[str]:
        return [line for line in text(run_dir, "aframe.dag").splitlines() if line[:1].isupper()]

    if nodes(raw) != nodes(aframe):
        sys.exit(f"raw: the nodes in {raw}/aframe.dag differ from those in {aframe}/aframe.dag")
    return [f for f in ("aframe.dag", "gen.sub", "merge.sub") if text(raw, f) != text(aframe, f)]


def default_venv() -> Path:
    """$AFRAME_DAG_BENCH_VENV, else ${XDG_CACHE_HOME:-~/.cache}/aframe-dag/bench-venv."""
    if os.environ.get(VENV_VAR):
        return Path(os.environ[VENV_VAR]).expanduser().absolute()
    cache = Path(os.environ.get("XDG_CACHE_HOME", ""))
    root = cache if cache.is_absolute() else Path.home() / ".cache"  # XDG: ignore a relative one
    return root / "aframe-dag" / "bench-venv"


def installed_aframe() -> tuple[str, str]:
    """The installed `aframe-dag` console script and the Python it runs on; exit if none.

    The script next to sys.executable comes first (the real one, not a pyenv shim), then PATH.
    """
    exe = Path(sys.executable).with_name("aframe-dag")
    script = str(exe) if exe.is_file() else shutil.which("aframe-dag")
    if not script:
        sys.exit(
            f"aframe-dag is not installed: no aframe-dag next to {sys.executable} or on PATH; "
            f"install the project (pip install -e {HERE.parent}) and run this with its Python"
        )
    with open(script, "rb") as f:
        words = f.readline().removeprefix(b"#!").decode(errors="replace").split()
    python = words[0] if words and Path(words[0]).name.startswith("python") else ""
    return script, python if os.access(python, os.X_OK) else sys.executable


def compile_installed(python: str) -> None:
    """Compile the installed aframe_dag to bytecode, as pip leaves an installed package.

    Under PYTHONDONTWRITEBYTECODE an editable checkout has none, and would be compiled on
    every run.
    """
    subprocess.run([python, "-c", COMPILE], check=True)


def compare_venv(venv: Path, base: str) -> str | None:
    """Make `venv` with htcondor.dags and ezdag (from `base`); return why not, or None."""
    python = venv / "bin" / "python"
    probe = [str(python), "-W", "ignore", "-c", "import htcondor.dags, ezdag"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return None
    if venv.is_dir() and any(venv.iterdir()) and not (venv / "pyvenv.cfg").is_file():
        return f"{venv} is not empty and not a virtualenv; remove it or pass another --venv"
    print(f"creating {venv} ({', '.join(COMPARE)}) ...", flush=True)
    for step in (
        # the base of aframe-dag's own Python, so both envs pay about the same start-up
        [base, "-m", "venv", "--clear", str(venv)],
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *COMPARE],
        probe,
    ):
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode:
            last = ((done.stderr or done.stdout).strip().splitlines() or ["no output"])[-1]
            return f"`{' '.join(step[1:])}` failed: {last}"
    return None


def machine() -> str:
    with open("/proc/cpuinfo") as info:
        models = [line.split(":", 1)[1].strip() for line in info if line.startswith("model name")]
    cpu = models[0] if models else platform.machine()
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="comma-separated N")
    parser.add_argument(
        "--venv",
        type=lambda path: Path(path).expanduser().absolute(),
        default=default_venv(),
        help=f"the htcondor.dags and ezdag env (default %(default)s, from ${VENV_VAR} or XDG)",
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    aframe, python = installed_aframe()  # raw runs on aframe-dag's own Python
    WORK.mkdir(parents=True, exist_ok=True)
    os.chdir(WORK)  # every child runs here, whatever the caller's directory holds
    why_not = compare_venv(args.venv, python)
    venv_python = str(args.venv / "bin" / "python")
    compile_installed(python)  # every writer runs from bytecode
    work = Path(tempfile.mkdtemp(prefix="run-", dir=WORK))  # left behind if a check fails
    err, common = work / "stderr", json.dumps(COMMON)
    writers = {"aframe-dag": [aframe, "build"], "raw": [python, "-c", RAW]}
    if why_not is None:
        writers["htcondor.dags"] = [venv_python, "-c", DAGS]
        writers["ezdag"] = [venv_python, "-c", EZDAG]

    print(f"machine: {machine()}")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"date: {time.strftime('%Y-%m-%d %H:%M %Z')}; load average {load}; outputs in {work}")
    print(f"aframe-dag: {aframe} (raw on {python})")
    if why_not:
        print(f"htcondor.dags and ezdag NOT measured: {why_not}")
    else:
        print(f"htcondor.dags and ezdag: {venv_python}")
    starts = {"python -c pass": [python, "-c", "pass"]}
    if why_not is None:
        starts["comparison env's python -c pass"] = [venv_python, "-c", "pass"]
    start = {k: min(run(cmd, err)[0] for _ in range(REPEATS)) for k, cmd in starts.items()}
    rss_floor = run(["true"], err)[1]  # what the launcher itself leaves in ru_maxrss
    print("start-up alone: " + ", ".join(f"{k} {v:.3f} s" for k, v in start.items()))
    print(f"peak RSS of `true` spawned the same way: {rss_floor:.0f} MB\n")

    results: dict[int, dict[str, tuple[float, float]]] = {}
    differ: set[str] = set()  # raw files not byte-identical to aframe-dag's (a template changed)
    fixed = float("inf")  # best `aframe-dag --version`, measured between the builds
    for n in sizes:
        config = work / f"bench-{n}.yaml"
        config.write_text(CONFIG.substitute(n=n, signals=10 * n))
        best: dict[str, tuple[float, float]] = {}
        for rep in range(REPEATS):
            outs = {name: work / f"{name}-{n}-{rep}" for name in writers}
            for name, cmd in writers.items():
                if name == "aframe-dag":
                    full = [*cmd, str(config), "--run-dir", str(outs[name])]
                else:
                    full = [*cmd, str(n), str(outs[name]), common]
                wall, rss = run(full, err)
                check(name, outs[name] / "aframe.dag", n + 1, n)
                best[name] = min(best.get(name, (wall, rss)), (wall, rss))
            fixed = min(fixed, run([aframe, "--version"], err)[0])  # imports, start-up
            differ.update(differing(outs["raw"], outs["aframe-dag"]))
            for out in outs.values():
                shutil.rmtree(out)
        results[n] = best

    if differ:
        print(f"note: raw's {', '.join(sorted(differ))} no longer equal aframe-dag's byte for byte")
    names = ["aframe-dag", "raw", "htcondor.dags", "ezdag"]
    head = ["nodes", *(f"{w} s (MB)" for w in names), "aframe/raw", "aframe/dags", "aframe/ezdag"]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for n, best in results.items():
        cells = [f"{n:,}"] + [f"{best[w][0]:.3f} ({best[w][1]:.0f})" for w in names if w in best]
        cells += ["n/a"] * (len(names) - len(best))
        cells += [f"{best['aframe-dag'][0] / best[w][0]:.2f}" for w in names[1:] if w in best]
        cells += ["n/a"] * (len(names) - len(best))
        print("| " + " | ".join(cells) + " |")
    print(f"\naframe-dag --version (imports and start-up alone): {fixed:.3f} s")
    print("aframe-dag s per 1000 nodes: whole run; above --version; from the previous size")
    previous = (0, fixed)
    for n, best in results.items():
        total = best["aframe-dag"][0]
        step = (total - previous[1]) / (n - previous[0]) * 1000
        print(f"  {n:>7,}: {total / n * 1000:.4f}; {(total - fixed) / n * 1000:.4f}; {step:.4f}")
        previous = (n, total)

    # a stage whose segments file appears only after build: a run-time SUBDAG
    segfile, run_dir, config = work / "segments.txt", work / "expand-run", work / "expand.yaml"
    config.write_text(EXPAND_CONFIG.substitute(segfile=segfile))
    run([aframe, "build", str(config), "--run-dir", str(run_dir)], err)
    if "SUBDAG EXTERNAL fetch" not in (run_dir / "aframe.dag").read_text():
        sys.exit("expand: fetch was not written as a run-time sub-DAG")
    seconds = EXPAND_NODES * 100  # one segment, cut into 100 s pieces
    stop = 1_000_000_000 + seconds
    segfile.write_text(f"# seg\tstart\tstop\tduration\n0\t1000000000\t{stop}\t{seconds}\n")
    expand = [aframe, "expand", str(run_dir), "fetch"]
    wall, rss = min(run(expand, err) for _ in range(REPEATS))
    check("expand", run_dir / "fetch.dag", EXPAND_NODES, 0)
    print(f"aframe-dag expand, {EXPAND_NODES:,} nodes: {wall:.3f} s ({rss:.0f} MB)")

    # the completeness check: rebuild a 10^5-node run whose outputs all exist
    n = max(sizes)
    config, run_dir = work / "complete.yaml", work / "complete-run"
    outputs = '    outputs: ["{{ run_dir }}/out/part-{{ item.index }}.txt"]\n'
    config.write_text(  # gen declares one output per node
        CONFIG.substitute(n=n, signals=10 * n).replace("    retry: 2\n", "    retry: 2\n" + outputs)
    )
    (run_dir / "out").mkdir(parents=True)
    for i in range(n):
        (run_dir / "out" / f"part-{i}.txt").touch()
    rebuild = [aframe, "build", str(config), "--run-dir", str(run_dir)]
    wall, rss = min(run(rebuild, err) for _ in range(REPEATS))
    done = (run_dir / "aframe.dag").read_text().count(" DONE\n")
    if done != n:
        sys.exit(f"completeness: {done} of {n} gen nodes DONE")
    print(f"aframe-dag build over {n:,} existing outputs (all DONE): {wall:.3f} s ({rss:.0f} MB)")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
