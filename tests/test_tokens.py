"""Tokens a job asks for: use_oauth_services and each service's scopes, per stage."""

from __future__ import annotations

from pathlib import Path

import htcondor2
import pytest
import yaml
from conftest import SANDBOX, run_cli

from aframe_dag import rundir, submit_commands

IGWN = {"permissions": ["gwdatafind.read", "read:/ligo"], "resource": "https://datafind.igwn.org"}


def build(tmp_path: Path, image_dir: Path, data: dict, *args: str) -> tuple[int, str, str]:
    config = tmp_path / "tokens.yaml"
    config.write_text(yaml.safe_dump({"extends": str(SANDBOX), **data}))
    run = tmp_path / "run"
    return run_cli(
        "build", str(config), "--run-dir", str(run), "--image-dir", str(image_dir), *args
    )


def token_lines(sub: Path) -> dict[str, str]:
    parsed = htcondor2.Submit(sub.read_text())
    return {k: v for k, v in parsed.items() if "oauth" in k}


def test_scopes_are_written_as_the_manual_says_and_a_stage_replaces_them(
    tmp_path: Path, image_dir: Path, ligo_env: None
) -> None:
    data = {
        "condor": {"use_oauth_services": "igwn", "oauth": {"igwn": IGWN}},
        "stages": {
            "train": {"use_oauth_services": ""},  # no token at all
            "export": {
                "use_oauth_services": "scitokens, igwn",
                "oauth": {"igwn": {"permissions": ["read:/virgo"], "handle": "virgo"}},
            },
        },
    }
    code, _, err = build(tmp_path, image_dir, data)
    assert code == 0, err
    run = tmp_path / "run"
    assert token_lines(run / "fetch_train.sub") == {
        "use_oauth_services": "igwn",
        "igwn_oauth_permissions": "gwdatafind.read read:/ligo",
        "igwn_oauth_resource": "https://datafind.igwn.org",
    }
    assert token_lines(run / "train.sub") == {}
    assert token_lines(run / "export.sub") == {
        "use_oauth_services": "scitokens, igwn",
        "igwn_oauth_permissions_virgo": "read:/virgo",  # the stage's entry, whole
    }
    # a stage's service asks for its stage's (infer.sub itself includes a file not yet there)
    assert token_lines(run / "infer-service.sub") == token_lines(run / "fetch_train.sub")
    for sub in run.glob("*.sub"):  # every line written is one a submit line cannot set
        for line in sub.read_text().split("\n"):
            if "oauth" in line and not line.startswith("#"):
                key = rundir.submit_command(line)
                assert submit_commands.own_command(key) is not None, key


def test_the_default_is_todays_scitokens_line(
    tmp_path: Path, image_dir: Path, ligo_env: None
) -> None:
    code, _, err = build(tmp_path, image_dir, {})
    assert code == 0, err
    assert token_lines(tmp_path / "run/train.sub") == {"use_oauth_services": "scitokens"}


def test_check_says_which_stages_ask_for_which_scopes(
    tmp_path: Path, image_dir: Path, ligo_env: None
) -> None:
    data = {
        "condor": {"use_oauth_services": "igwn", "oauth": {"igwn": IGWN}},
        "stages": {"train": {"use_oauth_services": "scitokens"}},
    }
    _, out, err = build(tmp_path, image_dir, data, "--check")  # --check fails on /tmp
    lines = [line for line in out.splitlines() if "tokens:" in line]
    assert len(lines) == 2, out + err
    assert "igwn (gwdatafind.read read:/ligo for https://datafind.igwn.org): " in lines[0]
    stages = lines[0].rpartition("): ")[2].split(", ")
    assert "fetch_train" in stages and "train" not in stages
    assert lines[1].endswith("tokens: scitokens (the service's default scopes): train")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {
                "condor": {"use_oauth_services": "igwn", "oauth": {"igwn": IGWN}},
                "stages": {"infer": {"oauth": {"igwn": {"permissions": ["read:/kagra"]}}}},
            },
            "ask igwn for different scopes with one handle",
        ),
        (
            {"stages": {"train": {"oauth": {"igwn": IGWN}}}},
            "stages.train.oauth.igwn: igwn is not among the services stage train asks for",
        ),
        ({"condor": {"oauth": {"igwn": IGWN}}}, "condor.oauth.igwn: no stage asks for igwn"),
        (
            {"condor": {"oauth": {"igwn": {"handle": "a_b"}}}},
            "condor.oauth.igwn.handle: a handle is letters and digits",
        ),
        (
            {"condor": {"oauth": {"igwn": {"permissions": ["read:/a read:/b"]}}}},
            "is not one scope",
        ),
        ({"condor": {"use_oauth_services": "igwn token"}}, "is not a credential service name"),
        (
            {"condor": {"submit": {"igwn_oauth_permissions": "read:/ligo"}}},
            "set it with condor.oauth or stages.NAME.oauth",
        ),
    ],
)
def test_token_mistakes_are_one_line_errors(
    tmp_path: Path, image_dir: Path, ligo_env: None, data: dict, message: str
) -> None:
    code, _, err = build(tmp_path, image_dir, data)
    assert code == 1 and err.count("\n") == 1, err
    assert message in err, err
