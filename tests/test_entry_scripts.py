"""Tests for the standalone entry scripts in aframe_dag/entry.

Argument handling is tested in-process (the scripts import only the standard
library at import time). Real runs execute each script as a subprocess with
PYTHONPATH set to tests/fake_aframe, a test double of Aframe's ``ledger`` and
``h5py`` that records every library call as a JSON line in $FAKE_LEDGER_LOG.
Expected calls are written out as Aframe's law tasks would make them on the
same inputs (aframe/tasks/data/waveforms/*.py, aframe/tasks/infer/infer.py).
Fake data files are JSON: {"attrs": {"length": N}, "waveform_shape": [...]}.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ENTRY = Path(__file__).resolve().parents[1] / "aframe_dag" / "entry"
FAKE = Path(__file__).resolve().parent / "fake_aframe"
SCRIPTS = [
    "merge_training_waveforms",
    "merge_validation_waveforms",
    "merge_testing_waveforms",
    "aggregate_inference",
]


def load(name: str) -> ModuleType:
    """Import an entry script from its file, as the container would run it."""
    spec = importlib.util.spec_from_file_location(f"entry_{name}", ENTRY / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(name: str, args: list, log: Path) -> tuple[int, str, list[dict]]:
    """Run a script against the fake library; return (rc, stderr, calls)."""
    env = {**os.environ, "PYTHONPATH": str(FAKE), "FAKE_LEDGER_LOG": str(log)}
    proc = subprocess.run(
        [sys.executable, str(ENTRY / f"{name}.py"), *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    calls = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
    return proc.returncode, proc.stderr, calls


def fake_file(path: Path, length: int, waveform_shape: list[int] | None = None) -> Path:
    """Write a fake ledger data file understood by tests/fake_aframe."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data: dict = {"attrs": {"length": length}}
    if waveform_shape is not None:
        data["waveform_shape"] = waveform_shape
    path.write_text(json.dumps(data))
    return path


def main_error(name: str, argv: list[str], capsys) -> str:
    """Run a script's main in-process, expect exit 2, return its stderr."""
    with pytest.raises(SystemExit) as exc:
        load(name).main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err
    return err


def aggregate_call(cls, files, fname, base=None, ifos=None, **kwargs) -> dict:
    """Expected record of a ``cls.aggregate(files, fname, **kwargs)`` call."""
    call = {"call": "aggregate", "cls": cls, "base": base, "ifos": ifos}
    call.update(files=[str(f) for f in files], fname=str(fname), dtype=None)
    call.update({"clean": True, "chunks": None, "length": None, **kwargs})
    return call


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize("name", SCRIPTS)
def test_import_needs_only_stdlib(name):
    script = ENTRY / f"{name}.py"
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('m', {str(script)!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "assert callable(module.build_parser) and callable(module.main)\n"
        "print(sorted({'ledger', 'h5py', 'numpy'} & set(sys.modules)))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(FAKE)}  # importable, must not be imported
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", SCRIPTS)
def test_no_arguments_is_usage_error(name, capsys):
    assert "required" in main_error(name, [], capsys)


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_exits_zero(name, capsys):
    with pytest.raises(SystemExit) as exc:
        load(name).main(["--help"])
    assert exc.value.code == 0
    assert "--input-dir" in capsys.readouterr().out


def test_parse_training_args():
    args = (
        load("merge_training_waveforms")
        .build_parser()
        .parse_args(["--input-dir", "tmp", "--output-file", "out/training_waveforms.hdf5"])
    )
    assert args.input_dir == Path("tmp")
    assert args.output_file == Path("out/training_waveforms.hdf5")


def test_parse_validation_args(capsys):
    parser = load("merge_validation_waveforms").build_parser()
    args = parser.parse_args(
        ["--input-dir", "tmp", "--output-file", "v.hdf5", "--ifos", "H1", "L1"]
    )
    assert (args.input_dir, args.output_file) == (Path("tmp"), Path("v.hdf5"))
    assert args.ifos == ["H1", "L1"]
    err = main_error(
        "merge_validation_waveforms", ["--input-dir", "t", "--output-file", "v"], capsys
    )
    assert "--ifos" in err


def test_parse_testing_args(capsys):
    parser = load("merge_testing_waveforms").build_parser()
    argv = [
        "--input-dir",
        "d",
        "--waveforms-file",
        "w.hdf5",
        "--rejected-file",
        "r.hdf5",
    ]
    args = parser.parse_args([*argv, "--ifos", "H1", "L1", "V1"])
    assert args.input_dir == Path("d")
    assert (args.waveforms_file, args.rejected_file) == (Path("w.hdf5"), Path("r.hdf5"))
    assert args.ifos == ["H1", "L1", "V1"]
    assert "--ifos" in main_error("merge_testing_waveforms", argv, capsys)
    assert "expected at least one" in main_error(
        "merge_testing_waveforms", [*argv, "--ifos"], capsys
    )


def test_parse_inference_args():
    parser = load("aggregate_inference").build_parser()
    args = parser.parse_args(["--input-dir", "tmp", "--output-dir", "results"])
    assert (args.input_dir, args.output_dir) == (Path("tmp"), Path("results"))
    assert args.keep_input is False
    assert parser.parse_args(["--input-dir", "a", "--output-dir", "b", "--keep-input"]).keep_input


def _argv(name: str, input_dir: Path, tmp_path: Path) -> list[str]:
    """Valid arguments for `name` reading from `input_dir`."""
    out = ["--output-file", str(tmp_path / "out.hdf5")]
    extra = {
        "merge_training_waveforms": out,
        "merge_validation_waveforms": [*out, "--ifos", "H1", "L1"],
        "merge_testing_waveforms": [
            *("--waveforms-file", str(tmp_path / "w.hdf5")),
            *("--rejected-file", str(tmp_path / "r.hdf5")),
            *("--ifos", "H1", "L1"),
        ],
        "aggregate_inference": ["--output-dir", str(tmp_path / "results")],
    }[name]
    return ["--input-dir", str(input_dir), *extra]


@pytest.mark.parametrize("name", SCRIPTS)
def test_missing_input_dir(name, tmp_path, capsys):
    err = main_error(name, _argv(name, tmp_path / "nope", tmp_path), capsys)
    assert "nope does not exist" in err


@pytest.mark.parametrize("name", SCRIPTS)
def test_no_input_files(name, tmp_path, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "unrelated.txt").write_text("")
    err = main_error(name, _argv(name, tmp_path / "in", tmp_path), capsys)
    assert "found in" in err
    assert (tmp_path / "in").exists()


@pytest.mark.parametrize("name", ["merge_training_waveforms", "merge_validation_waveforms"])
def test_waveform_parts_need_integer_branch(name, tmp_path, capsys):
    fake_file(tmp_path / "in" / "waveforms-0.hdf5", 1)
    fake_file(tmp_path / "in" / "waveforms-x.hdf5", 1)
    err = main_error(name, _argv(name, tmp_path / "in", tmp_path), capsys)
    assert "unexpected files" in err and "waveforms-x.hdf5" in err


@pytest.mark.parametrize("name", ["merge_training_waveforms", "merge_validation_waveforms"])
def test_output_file_inside_removed_input_dir(name, tmp_path, capsys):
    fake_file(tmp_path / "in" / "waveforms-0.hdf5", 1)
    argv = _argv(name, tmp_path / "in", tmp_path)
    argv[argv.index("--output-file") + 1] = str(tmp_path / "in" / "out.hdf5")
    assert "inside --input-dir" in main_error(name, argv, capsys)


def test_testing_part_missing_file(tmp_path, capsys):
    fake_file(tmp_path / "in" / "tmp-0" / "waveforms.hdf5", 1)
    name = "merge_testing_waveforms"
    err = main_error(name, _argv(name, tmp_path / "in", tmp_path), capsys)
    assert "missing input files" in err and "rejected-parameters.hdf5" in err


def test_inference_node_missing_file(tmp_path, capsys):
    fake_file(tmp_path / "in" / "1-2_shifts-0-1" / "background.hdf5", 1)
    name = "aggregate_inference"
    err = main_error(name, _argv(name, tmp_path / "in", tmp_path), capsys)
    assert "missing input files" in err and "foreground.hdf5" in err


def test_inference_bad_node_name(tmp_path, capsys):
    for f in ("background.hdf5", "foreground.hdf5"):
        fake_file(tmp_path / "in" / "seg_shifts-a-b" / f, 1)
    name = "aggregate_inference"
    err = main_error(name, _argv(name, tmp_path / "in", tmp_path), capsys)
    assert "cannot parse node directory name 'seg_shifts-a-b'" in err


def test_inference_output_inside_input_needs_keep(tmp_path, capsys):
    argv = ["--input-dir", str(tmp_path), "--output-dir", str(tmp_path / "results")]
    assert "--keep-input" in main_error("aggregate_inference", argv, capsys)


def test_inference_node_order_and_shift_parsing(tmp_path):
    names = [
        "1244100000-5000.5_shifts-0-1e-05",
        "1244035783-20000_shifts-10-20",
        "1244035783-20000_shifts-2-4",
        "1244035783-20000_shifts-0-0",
        "1244035783-20000_shifts-1-2",
        "1244100000-5000.5_shifts-0--1",
    ]
    for n in names:
        for f in ("background.hdf5", "foreground.hdf5"):
            fake_file(tmp_path / n / f, 1)
    nodes = load("aggregate_inference").find_nodes(tmp_path)
    assert [(d.name, shifts) for d, shifts in nodes] == [
        ("1244035783-20000_shifts-0-0", (0.0, 0.0)),
        ("1244035783-20000_shifts-1-2", (1.0, 2.0)),
        ("1244035783-20000_shifts-2-4", (2.0, 4.0)),
        ("1244035783-20000_shifts-10-20", (10.0, 20.0)),
        ("1244100000-5000.5_shifts-0-1e-05", (0.0, 1e-05)),
        ("1244100000-5000.5_shifts-0--1", (0.0, -1.0)),
    ]


# ------------------------------------------------------------ real runs


@pytest.mark.parametrize(("num_files", "n", "chunk_rows"), [(11, 5, 55), (3, 100, 64)])
def test_training_run(tmp_path, num_files, n, chunk_rows):
    src, out = tmp_path / "training_waveforms", tmp_path / "data" / "training.hdf5"
    # law branch order is numeric: waveforms-2 comes before waveforms-10
    parts = [fake_file(src / f"waveforms-{i}.hdf5", n, [n, 2, 2048]) for i in range(num_files)]
    args = ["--input-dir", src, "--output-file", out]
    rc, err, calls = run("merge_training_waveforms", args, tmp_path / "calls.jsonl")
    assert rc == 0, err
    name = "WaveformPolarizationSet"
    cls = {"cls": name, "base": name, "ifos": ["cross", "plus"]}
    assert calls == [
        {"call": "read", **cls, "fname": str(parts[0])},
        aggregate_call(**cls, files=parts, fname=out, chunks=[chunk_rows, 2048]),
    ]
    assert out.exists() and not src.exists()


def test_validation_run(tmp_path):
    src, out = tmp_path / "val", tmp_path / "data" / "val_waveforms.hdf5"
    parts = [fake_file(src / f"waveforms-{i}.hdf5", 3) for i in (0, 1, 2, 10)]
    args = ["--input-dir", src, "--output-file", out, "--ifos", "H1", "L1"]
    rc, err, calls = run("merge_validation_waveforms", args, tmp_path / "calls.jsonl")
    assert rc == 0, err
    assert calls == [
        aggregate_call("WaveformSet", parts, out, base="WaveformSet", ifos=["H1", "L1"])
    ]
    assert out.exists() and not src.exists()


def test_testing_run(tmp_path):
    # like the law task, outputs and tmp-* dirs share one directory
    src = tmp_path / "test_waveforms"
    waveforms, rejected = src / "waveforms.hdf5", src / "rejected-parameters.hdf5"
    branches = [0, 1, 2, 10]
    wave_parts = [fake_file(src / f"tmp-{i}" / "waveforms.hdf5", 4) for i in branches]
    rej_parts = [fake_file(src / f"tmp-{i}" / "rejected-parameters.hdf5", 9) for i in branches]
    args = ["--input-dir", src, "--waveforms-file", waveforms]
    args += ["--rejected-file", rejected, "--ifos", "H1", "L1"]
    rc, err, calls = run("merge_testing_waveforms", args, tmp_path / "calls.jsonl")
    assert rc == 0, err
    assert calls == [
        aggregate_call(
            "ResponseSet",
            wave_parts,
            waveforms,
            base="InterferometerResponseSet",
            ifos=["H1", "L1"],
        ),
        aggregate_call("InjectionParameterSet", rej_parts, rejected),
    ]
    assert sorted(p.name for p in src.iterdir()) == [
        "rejected-parameters.hdf5",
        "waveforms.hdf5",
    ]


# (node name in law branch order, background length, foreground length)
NODES = [
    ("1244035783-20000_shifts-0-0", 7, 0),
    ("1244035783-20000_shifts-1-2", 11, 3),
    ("1244035783-20000_shifts-2-4", 13, 0),
    ("1244035783-20000_shifts-10-20", 17, 5),
    ("1244100000-5000_shifts-0-0", 19, 2),
    ("1244100000-5000_shifts-1-2", 23, 1),
]


def expected_infer_calls(nodes, src: Path, out: Path) -> list[dict]:
    """The calls Infer.run makes for `nodes` (metadata lengths, branch order)."""
    zero = [(n, b) for n, b, _ in nodes if n.endswith("shifts-0-0")]
    back = [(n, b) for n, b, _ in nodes if not n.endswith("shifts-0-0")]
    fore = [n for n, _, f in nodes if f > 0]
    calls = [
        aggregate_call(
            "EventSet",
            [src / n / "background.hdf5" for n, _ in back],
            out / "background.hdf5",
            length=sum(b for _, b in back),
            clean=False,
        ),
        aggregate_call(
            "RecoveredInjectionSet",
            [src / n / "foreground.hdf5" for n in fore],
            out / "foreground.hdf5",
            length=sum(f for *_, f in nodes),
            clean=False,
        ),
    ]
    if zero:
        calls.append(
            aggregate_call(
                "EventSet",
                [src / n / "background.hdf5" for n, _ in zero],
                out / "0lag.hdf5",
                length=sum(b for _, b in zero),
                clean=False,
            )
        )
    if back:
        event_set = {"cls": "EventSet", "base": None, "ifos": None}
        calls += [
            {"call": "read", **event_set, "fname": str(out / "background.hdf5")},
            {"call": "sort_by", **event_set, "attr": "detection_statistic"},
            {
                "call": "write",
                **event_set,
                "fname": str(out / "background.hdf5"),
                "chunks": None,
            },
        ]
    return calls


@pytest.mark.parametrize(
    "nodes",
    [
        NODES,
        [n for n in NODES if not n[0].endswith("shifts-0-0")],  # no zero lag
        [n for n in NODES if n[0].endswith("shifts-0-0")],  # zero lag only
    ],
    ids=["all", "no-zero-lag", "zero-lag-only"],
)
@pytest.mark.parametrize("keep", [False, True], ids=["remove", "keep-input"])
def test_inference_run(tmp_path, nodes, keep):
    src, out = tmp_path / "infer_tmp", tmp_path / "results"
    for name, background, foreground in reversed(nodes):
        fake_file(src / name / "background.hdf5", background)
        fake_file(src / name / "foreground.hdf5", foreground)
    args = ["--input-dir", src, "--output-dir", out] + (["--keep-input"] if keep else [])
    rc, err, calls = run("aggregate_inference", args, tmp_path / "calls.jsonl")
    assert rc == 0, err
    assert calls == expected_infer_calls(nodes, src, out)
    assert (out / "background.hdf5").exists() and (out / "foreground.hdf5").exists()
    assert (out / "0lag.hdf5").exists() == any(n.endswith("0-0") for n, *_ in nodes)
    assert src.exists() == keep
    if keep:  # clean=False: per-node files are untouched
        assert len(list(src.glob("*/*.hdf5"))) == 2 * len(nodes)
