"""Why a node runs again: each changed input named, old -> new (`build`, `--explain`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import run_cli
from test_completion import build, finished, pipeline

from aframe_dag import render
from aframe_dag.rundir import COMPLETED, FINGERPRINTS


def line_of(out: str, stage: str) -> str:
    return next(line for line in out.splitlines() if line.startswith(f"  {stage} "))


@pytest.mark.parametrize(
    ("params", "changes", "stage", "reason"),
    [
        ({"rate": 2}, {}, "parts", "params.rate 1 -> 2"),
        ({}, {"other": {"resources": {"memory": "4GB"}}}, "other", "request_memory 2GB -> 4GB"),
        (
            {},
            {"other": {"environment": {"SEED": "7"}}},
            "other",
            "environment SEED (unset) -> 7",
        ),
        ({}, {"other": {"retry": 2}}, "other", None),  # DAGMan's RETRY: not the job's input
    ],
)
def test_the_summary_names_what_changed(
    tmp_path: Path, params: dict, changes: dict, stage: str, reason: str | None
) -> None:
    finished(tmp_path)
    out = build(tmp_path, pipeline(params=params, **changes))
    if reason is None:
        assert line_of(out, stage).endswith("1 complete"), out
    else:
        assert line_of(out, stage).endswith(f"to run ({reason})"), out


def test_a_command_word_is_named_when_no_config_key_explains_it(tmp_path: Path) -> None:
    finished(tmp_path)
    base = pipeline()
    command = base["stages"]["other"]["command"] + " --verbose"
    out = build(tmp_path, pipeline(other={"command": command}))
    assert line_of(out, "other").endswith("1 to run (command (none) -> --verbose)"), out


def test_a_new_image_is_named_by_its_size_and_time(tmp_path: Path) -> None:
    image = tmp_path / "other.sif"
    image.write_bytes(b"v1")
    os.utime(image, ns=(1_700_000_000_000_000_000,) * 2)
    build(tmp_path, pipeline(other={"image": str(image)}))
    assert run_cli("run-local", str(tmp_path / "run"))[0] == 0
    image.write_bytes(b"v2 is longer")
    os.utime(image, ns=(1_700_000_100_000_000_000,) * 2)
    out = build(tmp_path, pipeline(other={"image": str(image)}))
    assert line_of(out, "other").endswith(
        f"1 to run (image {image} (2 bytes, modified at 1700000000) -> {image} (12 bytes, "
        "modified at 1700000100))"
    ), out


def test_explain_names_every_change_of_every_node(tmp_path: Path) -> None:
    finished(tmp_path)
    changed = pipeline(params={"rate": 3}, parts={"environment": {"A": "1", "B": "2", "C": "3"}})
    out = build(tmp_path, changed, "--explain", "parts", "--explain", "fetch")
    # the summary: the first three, and where the rest are
    assert line_of(out, "parts").endswith(
        "3 to run (params.rate 1 -> 3; environment A (unset) -> 1; environment B (unset) -> 2; "
        "1 more: --explain parts)"
    ), out
    every = "params.rate 1 -> 3; environment A (unset) -> 1; environment B (unset) -> 2; " \
        "environment C (unset) -> 3"  # fmt: skip
    assert [f"parts-{i}: {every}" for i in range(3)] == [
        line for line in out.splitlines() if line.startswith("parts-")
    ]
    assert "fetch: no node runs again for a changed input" in out.splitlines()


def test_a_stage_s_own_param_reruns_and_explains_that_stage_only(tmp_path: Path) -> None:
    other = pipeline()["stages"]["other"]
    shared = {"command": other["command"] + " {{ params.rate }}"}  # other reads rate too
    build(tmp_path, pipeline(other=shared))
    assert run_cli("run-local", str(tmp_path / "run"))[0] == 0
    own = pipeline(other=shared, parts={"params": {"rate": 2}})
    out = build(tmp_path, own, "--explain", "parts", "--explain", "other")
    assert line_of(out, "parts").endswith("3 to run (params.rate 1 -> 2)"), out
    assert line_of(out, "other").endswith("1 complete"), out
    assert [line for line in out.splitlines() if line.startswith("parts-")] == [
        f"parts-{i}: params.rate 1 -> 2" for i in range(3)
    ]
    assert "other: no node runs again for a changed input" in out.splitlines()
    # its record of inputs holds the value it ran with; the other stage's, the shared one
    fingerprints = json.loads((tmp_path / "run" / FINGERPRINTS).read_text())
    inputs = {s: fingerprints["inputs"][f]["config"] for s, f in fingerprints["stages"].items()}
    assert (inputs["parts"]["params.rate"], inputs["other"]["params.rate"]) == ("2", "1")


def test_an_item_that_changed_is_named(tmp_path: Path) -> None:
    def values(*listed: int) -> dict:
        parts = pipeline()["stages"]["parts"]
        command = parts["command"] + " {{ item.value }}"
        return pipeline(parts={"foreach": {"list": {"value": list(listed)}}, "command": command})

    build(tmp_path, values(1, 2, 3))
    assert run_cli("run-local", str(tmp_path / "run"))[0] == 0
    out = build(tmp_path, values(1, 2, 5))
    # the other two run again too: merge consumed their outputs, and merge runs again
    assert line_of(out, "parts").endswith("3 to run (item value 3 -> 5, outputs missing)"), out


def test_explain_of_an_unknown_stage_says_the_nearest(tmp_path: Path) -> None:
    finished(tmp_path)
    config = tmp_path / "pipeline.yaml"
    code, _, err = run_cli(
        "build", str(config), "--run-dir", str(tmp_path / "run"), "--explain", "prts"
    )
    assert code == 1
    assert err.endswith("\nError: --explain: unknown stage 'prts'; did you mean 'parts'?\n")


def test_records_from_before_inputs_were_kept_still_say_which_part(tmp_path: Path) -> None:
    finished(tmp_path)
    build(tmp_path, pipeline())  # harvests the run into completed.json
    run_dir = tmp_path / "run"
    for path in (run_dir / COMPLETED, run_dir / FINGERPRINTS):  # as an older build wrote them
        data = json.loads(path.read_text())
        data.pop("inputs")
        path.write_text(json.dumps(data))
    out = build(tmp_path, pipeline(params={"rate": 2}))
    assert line_of(out, "parts").endswith("3 to run (command changed)"), out


def test_completed_json_keeps_the_inputs_of_recorded_fingerprints_only(tmp_path: Path) -> None:
    finished(tmp_path)
    for rate in (2, 3, 4):  # three fingerprints of parts; the nodes recorded with the first
        build(tmp_path, pipeline(params={"rate": rate}))
    saved = json.loads((tmp_path / "run" / COMPLETED).read_text())
    used = {digest.partition("/")[0] for digest in saved["nodes"].values()}
    assert set(saved["inputs"]) == used


@pytest.mark.parametrize(
    ("template", "keys"),
    [
        ("{{ params.a }} {{ params['b'] }} {{ dirs.out }}/x", {"params.a", "params.b", "dirs.out"}),
        ("{{ params | tojson }}", {"params"}),
        ("{% for k in dirs %}{{ k }}{% endfor %} {{ dirs.x }}", {"dirs", "dirs.x"}),
        ("{{ item.index }} {{ stage.name }}", set()),
        ("no template", set()),
    ],
)
def test_referenced_keys(template: str, keys: set[str]) -> None:
    assert render.referenced_keys([template], ("params", "dirs")) == keys
