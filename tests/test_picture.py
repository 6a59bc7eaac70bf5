"""The run's picture: DOT from real run dirs (built, run, failed), rendered by graphviz."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from conftest import run_cli

from aframe_dag.errors import RunDirError
from aframe_dag.picture import TIMES, GraphvizError, node_states, render, to_dot

needs_dot = pytest.mark.skipif(
    shutil.which("dot") is None, reason="graphviz's dot is not installed"
)

# The one-node stage writes the segments the run-time stage fans out over: 250 s and
# 80 s, split at 100 s, make 4 nodes.
SEGMENTS = (
    "import pathlib; pathlib.Path('{{ run_dir }}/seg.txt')"
    ".write_text('0 1000 1250 250' + chr(10) + '1 2000 2080 80' + chr(10))"
)
GEN_FAILS_AT_7 = "import sys; sys.exit(int('{{ item.index }}') == 7)"


def build(tmp_path: Path, gen: str = "pass") -> Path:
    """gen (20 nodes) -> merge (1 node, writes seg.txt) -> fetch (decided at run time)."""
    config = tmp_path / "pic.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "pic",
                "condor": {"container": "none", "use_oauth_services": "", "getenv": ["PATH"]},
                "stages": {
                    "gen": {
                        "foreach": {"count": {"num_jobs": 20}},
                        "command": [sys.executable, "-c", gen],
                    },
                    "merge": {"after": ["gen"], "command": [sys.executable, "-c", SEGMENTS]},
                    "fetch": {
                        "after": ["merge"],
                        "foreach": {
                            "segments": {"file": "{{ run_dir }}/seg.txt", "max_duration": 100}
                        },
                        "command": [sys.executable, "-c", "pass"],
                    },
                },
            },
            sort_keys=False,
        )
    )
    run_dir = tmp_path / "run"
    code, _, err = run_cli("build", str(config), "--run-dir", str(run_dir))
    assert code == 0, err
    return run_dir


def run_local(run_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aframe_dag", "run-local", str(run_dir), "--jobs", "4"],
        capture_output=True,
        text=True,
        check=False,
    )


def status_file(path: Path, statuses: dict[str, int]) -> None:
    """A NODE_STATUS_FILE as DAGMan writes it (ClassAds; 5 done, 6 error)."""
    ads = ['[\n  Type = "DagStatus";\n  DagStatus = 6; /* "STATUS_ERROR" */\n]']
    ads += [
        f'[\n  Type = "NodeStatus";\n  Node = "{node}";\n  NodeStatus = {status};\n'
        f'  StatusDetails = "";\n  RetryCount = 0;\n]'
        for node, status in statuses.items()
    ]
    ads.append('[\n  Type = "StatusEnd";\n  EndTime = 1795646208;\n  NextUpdate = 0;\n]')
    path.write_text("\n".join(ads) + "\n")


def parse(dot: str) -> tuple[dict[str, list[str]], dict[str, dict[str, str]], list[tuple]]:
    """(cluster -> box ids in order, box id -> attributes, visible edges) of to_dot's text."""
    clusters: dict[str, list[str]] = {}
    boxes: dict[str, dict[str, str]] = {}
    edges = []
    cluster = None
    attr = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|[^,\]\s]+)')
    for line in dot.splitlines():
        if match := re.match(r'\s*subgraph "cluster_(\w+)" \{', line):
            cluster = match.group(1)
            clusters[cluster] = []
        elif line.strip() == "}":
            cluster = None
        elif match := re.match(r'\s*"([^"]+)" -> "([^"]+)"(.*);$', line):
            if "invis" not in match.group(3):
                edges.append((match.group(1), match.group(2)))
        elif match := re.match(r'\s*"([^"]+)" \[(.*)\];$', line):
            boxes[match.group(1)] = {k: v.strip('"') for k, v in attr.findall(match.group(2))}
            if cluster is not None:
                clusters[cluster].append(match.group(1))
    return clusters, boxes, edges


def test_built_run_dir_has_a_cluster_per_stage_and_a_collapsed_fanout(tmp_path: Path) -> None:
    run_dir = build(tmp_path)
    dot = to_dot(run_dir)
    clusters, boxes, edges = parse(dot)
    assert list(clusters) == ["gen", "merge", "fetch"]  # config.yaml's order
    assert clusters == {"gen": ["stage:gen"], "merge": ["merge"], "fetch": ["stage:fetch"]}
    assert boxes["stage:gen"] == {"label": f"gen {TIMES}20"}
    assert boxes["merge"] == {"label": "merge"}
    assert boxes["stage:fetch"] == {"label": "fetch (decided at run time)"}
    assert edges == [("stage:gen", "merge"), ("merge", "stage:fetch")]  # one per pair
    assert 'label="pic: 0 of 21 nodes done; 1 stage decided at run time"' in dot
    assert 'subgraph "cluster_gen" {\n    graph [label="gen",' in dot
    assert to_dot(run_dir) == dot  # deterministic
    assert node_states(run_dir) == {}

    # at the threshold the nodes are drawn one by one, in order, side by side
    clusters, boxes, edges = parse(to_dot(run_dir, collapse=20))
    assert clusters["gen"] == [f"gen-{i}" for i in range(20)]
    assert edges[:2] == [("gen-0", "merge"), ("gen-1", "merge")]
    assert len(edges) == 21
    assert "rank=same; " + " -> ".join(f'"gen-{i}"' for i in range(20)) in to_dot(
        run_dir, collapse=20
    )


def test_run_local_shades_complete_nodes(tmp_path: Path) -> None:
    run_dir = build(tmp_path)
    done = run_local(run_dir)
    assert done.returncode == 0, done.stderr
    dot = to_dot(run_dir)
    clusters, boxes, edges = parse(dot)
    fetch = [f"fetch-{i}" for i in range(1, 5)]
    assert clusters == {"gen": ["stage:gen"], "merge": ["merge"], "fetch": fetch}
    assert boxes["stage:gen"]["label"] == rf"gen {TIMES}20\n20 done"
    for box in ["stage:gen", "merge", *fetch]:
        assert boxes[box]["style"] == "rounded,filled", box
        assert boxes[box]["fillcolor"] == "#d3d3d3"
        assert "color" not in boxes[box]
    assert edges == [("stage:gen", "merge")] + [("merge", f) for f in fetch]
    assert 'label="pic: 25 of 25 nodes done"' in dot
    states = node_states(run_dir)
    assert set(states.values()) == {"done"}
    assert set(states) == {f"gen-{i}" for i in range(20)} | {"merge", "fetch", *fetch}

    # the sub-DAG collapses like any fan-out
    _, boxes, _ = parse(to_dot(run_dir, collapse=3))
    assert boxes["stage:fetch"]["label"] == rf"fetch {TIMES}4\n4 done"

    # a run dir moved elsewhere draws the same (sub-DAGs are read from the run dir)
    moved = tmp_path / "moved"
    run_dir.rename(moved)
    assert to_dot(moved) == dot


def test_failed_nodes_are_marked(tmp_path: Path) -> None:
    run_dir = build(tmp_path, gen=GEN_FAILS_AT_7)
    done = run_local(run_dir)
    assert done.returncode == 1  # gen-7 failed; merge and fetch did not run
    # run-local records its successes; DAGMan's status file says which node failed
    status_file(run_dir / "aframe.status", {"gen-7": 6, "gen-8": 5, "merge": 1, "fetch": 1})
    states = node_states(run_dir)
    assert states["gen-7"] == "failed"
    assert sum(state == "done" for state in states.values()) == 19
    dot = to_dot(run_dir)
    _, boxes, _ = parse(dot)
    gen = boxes["stage:gen"]
    assert gen["label"] == rf"gen {TIMES}20\n19 done, 1 failed"
    assert gen["color"] == gen["fontcolor"] == "#d62728"
    assert gen["penwidth"] == "2"
    assert "fillcolor" not in gen  # not complete
    assert 'label="pic: 19 of 21 nodes done, 1 failed; 1 stage decided at run time"' in dot

    # uncollapsed, the failed node itself carries the mark
    _, boxes, _ = parse(to_dot(run_dir, collapse=20))
    assert boxes["gen-7"] == {
        "label": r"gen-7\nfailed",
        "color": "#d62728",
        "fontcolor": "#d62728",
        "penwidth": "2",
    }
    assert boxes["gen-6"]["fillcolor"] == "#d3d3d3"

    # a success recorded later (a DONE in the .dag, or run-local's record) wins
    with open(run_dir / "aframe.dag", "a") as dag:
        dag.write("DONE gen-7\n")
    assert node_states(run_dir)["gen-7"] == "done"


def test_runtime_stage_whose_pre_script_failed_is_marked(tmp_path: Path) -> None:
    run_dir = build(tmp_path)
    status_file(run_dir / "aframe.status", {f"gen-{i}": 5 for i in range(20)} | {"fetch": 6})
    # recorded after the DAG was written (an older success would belong to an older build)
    (run_dir / "run-local.record").write_text(f"done aframe.dag:merge {time.time():.3f}\n")
    _, boxes, _ = parse(to_dot(run_dir))
    assert boxes["stage:fetch"]["label"] == r"fetch (decided at run time)\nfailed"
    assert boxes["stage:fetch"]["color"] == "#d62728"
    assert boxes["merge"]["style"] == "rounded,filled"


def test_edges_inside_a_stage(tmp_path: Path) -> None:
    run_dir = build(tmp_path)
    # a hand edit: some gen nodes wait for others (and merge for none)
    dag = (run_dir / "aframe.dag").read_text()
    gens = " ".join(f"gen-{i}" for i in range(20))
    dag = dag.replace(f"PARENT {gens} CHILD merge", "PARENT gen-0 gen-1 gen-2 CHILD gen-3 gen-4")
    (run_dir / "aframe.dag").write_text(dag)
    dot = to_dot(run_dir, collapse=30)
    _, _, edges = parse(dot)
    assert edges == [
        ("gen-0", "gen-3"), ("gen-0", "gen-4"), ("gen-1", "gen-3"), ("gen-1", "gen-4"),
        ("gen-2", "gen-3"), ("gen-2", "gen-4"), ("merge", "stage:fetch"),
    ]  # fmt: skip
    assert "rank=same" not in dot  # not forced side by side: dot ranks them
    _, _, edges = parse(to_dot(run_dir))  # collapsed: no edge from the box to itself
    assert edges == [("merge", "stage:fetch")]


@needs_dot
def test_render_png_svg_and_dot(tmp_path: Path) -> None:
    run_dir = build(tmp_path)
    dot = to_dot(run_dir)
    out = tmp_path / "out"
    out.mkdir()
    render(dot, out / "dag.png")
    assert (out / "dag.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    render(dot, out / "dag.svg")
    root = ET.parse(out / "dag.svg").getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert f"gen {TIMES}20" in texts
    assert "fetch (decided at run time)" in texts
    render(dot, out / "dag.dot")
    assert (out / "dag.dot").read_text() == dot
    assert sorted(p.name for p in out.iterdir()) == ["dag.dot", "dag.png", "dag.svg"]
    umask = os.umask(0o022)
    os.umask(umask)
    assert (out / "dag.png").stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600

    # graphviz's complaint about bad DOT is the error; nothing is left behind
    with pytest.raises(GraphvizError, match=r"bad\.png: dot failed: .*syntax error"):
        render("digraph {", out / "bad.png")
    assert sorted(p.name for p in out.iterdir()) == ["dag.dot", "dag.png", "dag.svg"]


def test_two_fanout_rows_are_joined_by_one_cluster_edge(tmp_path: Path) -> None:
    run_dir = build(tmp_path)
    (run_dir / "seg.txt").write_text("0 1000 1250 250\n1 2000 2080 80\n")
    code, _, err = run_cli("expand", str(run_dir), "fetch")  # DAGMan's PRE script
    assert code == 0, err
    # a hand edit: every fetch node also waits for every gen node (20 x 4 dependencies)
    with open(run_dir / "aframe.dag", "a") as dag:
        dag.write("PARENT " + " ".join(f"gen-{i}" for i in range(20)) + " CHILD fetch\n")
    dot = to_dot(run_dir, collapse=20)
    _, _, edges = parse(dot)
    assert ("gen-9", "fetch-2") in edges
    assert 'ltail="cluster_gen", lhead="cluster_fetch"' in dot
    assert len([e for e in edges if e[1].startswith("fetch-")]) == 1 + 4  # + merge -> each


def test_missing_dot_and_unknown_format(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(GraphvizError) as error:
        render("digraph {}\n", tmp_path / "dag.svg")
    assert str(error.value) == (
        "graphviz's `dot` is not installed (apt-get install graphviz); "
        f"write {tmp_path / 'dag.dot'} instead"
    )
    render("digraph {}\n", tmp_path / "dag.dot")  # needs no graphviz
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", "dag.dot"]
    with pytest.raises(GraphvizError, match=r"dag\.jpg: .*FILE\.dot, FILE\.svg, FILE\.png"):
        render("digraph {}\n", tmp_path / "dag.jpg")


def test_not_a_run_dir(tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match=r"no aframe\.dag"):
        to_dot(tmp_path)
