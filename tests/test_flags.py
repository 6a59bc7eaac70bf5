"""The seed's everyday flags: --use-wandb, --dev, --train-remote, build --check, secrets."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import htcondor2
import pytest
import yaml
from conftest import SANDBOX, run_cli

PROGRAMS = Path(__file__).parent / "pool_programs.py"
KEY = "k" * 40


def sandbox(run_dir: Path, image_dir: Path, *args: str) -> tuple[int, str, str]:
    return run_cli(
        "build", str(SANDBOX), "--run-dir", str(run_dir), "--image-dir", str(image_dir), *args
    )


def arguments(sub: Path) -> str:
    text = re.sub(r"(?m)^include : .*$", "SERVICE_ADDRESS = h:1", sub.read_text())
    return htcondor2.Submit(text).expand("arguments")


# --- W&B ----------------------------------------------------------------------------


def test_use_wandb_without_a_key_is_an_error_naming_it(
    tmp_path: Path, image_dir: Path, ligo_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    code, _, err = sandbox(tmp_path / "run", image_dir, "--use-wandb")
    assert code == 1
    assert err.startswith("Error: WANDB_API_KEY: not set, and --use-wandb needs it")
    assert not (tmp_path / "run").exists()


def test_a_key_in_the_wrong_format_is_refused_by_wandb_itself(
    tmp_path: Path, image_dir: Path, ligo_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "too-short")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    code, _, err = sandbox(tmp_path / "run", image_dir, "--use-wandb")
    assert code == 1 and "API key" in err and "40" in err


def test_use_wandb_adds_the_logger_options_and_passes_the_key_by_name(
    tmp_path: Path, image_dir: Path, ligo_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    monkeypatch.setenv("WANDB_ENTITY", "ml4gw")
    monkeypatch.setenv("WANDB_TAGS", "bbh, sandbox")
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    monkeypatch.delenv("WANDB_RUN_GROUP", raising=False)
    run_dir = tmp_path / "bbh-1"
    code, _, err = sandbox(run_dir, image_dir, "--use-wandb", "--wandb-name", "first try")
    assert code == 0, err
    args = arguments(run_dir / "train.sub")
    expected = [
        "--trainer.logger+=WandbLogger",
        "--trainer.logger.job_type=train",
        f"--trainer.logger.save_dir={run_dir}/training",
        "'--trainer.logger.name=first try'",
        "--trainer.logger.entity=ml4gw",
        "--trainer.logger.project=aframe",
        "--trainer.logger.group=bbh-sandbox-bbh-1",  # the pipeline run
        "--trainer.logger.tags+=bbh --trainer.logger.tags+=sandbox",
    ]
    for option in expected:
        assert option in args
    train = htcondor2.Submit((run_dir / "train.sub").read_text())
    assert "WANDB_API_KEY" in train["getenv"]
    assert "WANDB_API_KEY" in (run_dir / "aframe.dag").read_text()  # ENV GET, by name
    assert "WandbLogger" not in arguments(run_dir / "export.sub")
    assert "WANDB_API_KEY" not in htcondor2.Submit((run_dir / "export.sub").read_text())["getenv"]
    for path in run_dir.rglob("*"):
        assert not path.is_file() or KEY not in path.read_text(errors="replace"), path


def test_offline_mode_needs_no_key(
    tmp_path: Path, image_dir: Path, ligo_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    code, _, err = sandbox(tmp_path / "run", image_dir, "--use-wandb")
    assert code == 0, err


# --- --dev ---------------------------------------------------------------------------


def aframe_checkout(path: Path) -> Path:
    (path / "projects" / "train").mkdir(parents=True)
    (path / "pyproject.toml").write_text('[tool.poetry]\nname = "aframe"\nversion = "0.1"\n')
    return path


def test_dev_binds_the_checkout_at_opt_aframe_in_every_image(
    tmp_path: Path, image_dir: Path, ligo_env: None
) -> None:
    checkout = aframe_checkout(tmp_path / "aframe")
    run_dir = tmp_path / "run"
    code, _, err = sandbox(run_dir, image_dir, "--dev-path", str(checkout))
    assert code == 0, err
    subs = sorted(run_dir.glob("*.sub"))
    assert len(subs) == 16
    for sub in subs:
        assert f"--bind {checkout}:/opt/aframe " in arguments(sub), sub.name


def test_dev_finds_the_checkout_holding_the_working_directory(
    tmp_path: Path, image_dir: Path, ligo_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkout = aframe_checkout(tmp_path / "aframe")
    (checkout / ".git").mkdir()
    (checkout / "projects" / "train" / "deep").mkdir()
    monkeypatch.chdir(checkout / "projects" / "train" / "deep")
    monkeypatch.delenv("AFRAME_REPO", raising=False)
    run_dir = tmp_path / "run"
    code, _, err = sandbox(run_dir, image_dir, "--dev")
    assert code == 0, err
    assert f"--bind {checkout}:/opt/aframe " in arguments(run_dir / "train.sub")


def test_dev_with_a_path_that_is_not_an_aframe_checkout_is_an_error(
    tmp_path: Path, image_dir: Path, ligo_env: None
) -> None:
    code, _, err = sandbox(tmp_path / "run", image_dir, "--dev-path", str(tmp_path))
    assert code == 1
    assert err.strip() == (
        f"Error: --set dev.path: {tmp_path} (dev.path) is not an aframe checkout "
        "(no pyproject.toml naming aframe beside projects/)"
    )


def test_dev_without_containers_is_an_error(
    tmp_path: Path, image_dir: Path, ligo_env: None
) -> None:
    checkout = aframe_checkout(tmp_path / "aframe")
    code, _, err = sandbox(
        tmp_path / "run", image_dir, "--dev-path", str(checkout), "--container", "none"
    )
    assert code == 1 and "--dev binds a checkout into apptainer images" in err


# --- --train-remote ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["apptainer", "container-universe"])
def test_a_remote_job_gets_its_entry_scripts_at_their_mirrored_paths(
    tmp_path: Path, image_dir: Path, ligo_env: None, mode: str
) -> None:
    run_dir = tmp_path / "run"
    code, _, err = sandbox(run_dir, image_dir, "--train-remote", "--container", mode)
    assert code == 0, err
    sub = htcondor2.Submit((run_dir / "train.sub").read_text())
    oom = f"{str(run_dir).lstrip('/')}/entry/oom.py"
    assert oom in [p.strip() for p in sub["transfer_input_files"].split(",")]
    assert f" {oom} -- " in sub.expand("arguments")  # not by name: the mirror holds it


def test_a_remote_command_using_an_unsent_local_path_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "remote.yaml"
    stage = {
        "command": "{{ python }} train.py --data={{ run_dir }}/data/in.h5 --out={{ run_dir }}/o",
        "outputs": ["{{ run_dir }}/o/model.npz"],
    }
    pipeline = {"name": "r", "condor": {"container": "none"}, "stages": {"train": stage}}
    config.write_text(yaml.safe_dump(pipeline))
    code, _, err = run_cli(
        "build", str(config), "--run-dir", str(tmp_path / "run"), "--train-remote"
    )
    assert code == 1 and err.count("\n") == 1, err
    assert f"stages.train.command: uses {tmp_path}/run/data/in.h5, which a job without" in err
    assert "list it (or its directory) in stages.train.inputs" in err
    stage["inputs"] = ["{{ run_dir }}/data/in.h5"]
    config.write_text(yaml.safe_dump(pipeline))
    (tmp_path / "run/data").mkdir(parents=True)
    (tmp_path / "run/data/in.h5").touch()
    code, _, err = run_cli(
        "build", str(config), "--run-dir", str(tmp_path / "run"), "--train-remote"
    )
    assert code == 0, err


def test_remote_gpu_memory_set_twice_is_an_error_naming_both_keys(
    tmp_path: Path, image_dir: Path, ligo_env: None
) -> None:
    code, _, err = sandbox(
        tmp_path / "run", image_dir, "--train-remote", "--set", "remote.gpus_minimum_memory=40000"
    )
    assert code == 1, err
    assert "remote.gpus_minimum_memory (40000 MB) and stages.train.resources.gpu_memory" in err
    code, _, err = sandbox(
        tmp_path / "run", image_dir, "--train-remote",
        "--set", "remote.gpus_minimum_memory=40000",
        "--set", "stages.train.resources.gpu_memory=null",
        "--set", "stages.train.resources.max_gpu_memory=null",
    )  # fmt: skip
    assert code == 0, err
    sub = htcondor2.Submit((tmp_path / "run/train.sub").read_text())
    assert sub["gpus_minimum_memory"] == "40000"


def test_train_remote_transfers_inputs_and_outputs_and_constrains_the_gpu(
    tmp_path: Path, image_dir: Path, ligo_env: None
) -> None:
    run_dir = tmp_path / "run"
    code, _, err = sandbox(run_dir, image_dir, "--train-remote")
    assert code == 0, err
    sub = htcondor2.Submit((run_dir / "train.sub").read_text())
    rel = str(run_dir).lstrip("/")
    assert sub["should_transfer_files"] == "YES"
    assert sub["preserve_relative_paths"] == "true"
    assert sub["initialdir"] == "/"
    inputs = [p.strip() for p in sub["transfer_input_files"].split(",")]
    assert inputs == [
        f"{rel}/data/train/background/background",
        f"{rel}/data/train/training_waveforms.hdf5",
        f"{rel}/data/train/val_waveforms.hdf5",
        f"{rel}/entry/resume.py",  # the wrappers the command starts with come along too
        f"{rel}/entry/oom.py",
        str(image_dir / "train.sif").lstrip("/"),
    ]
    assert f" python {rel}/entry/oom.py -- python {rel}/entry/resume.py " in sub.expand("arguments")
    # an evicted job resumes from the checkpoint it last handed HTCondor
    assert sub["checkpoint_exit_code"] == "85"
    ckpt = f"{rel}/training/lightning_logs/version_0/checkpoints/last.ckpt"
    assert sub["transfer_checkpoint_files"] == ckpt
    assert sub["transfer_output_files"] == f"{rel}/training"
    # the train stage's GPU memory: 16 GB, doubled after running out, up to 80 GB
    assert sub["require_gpus"] == "GlobalMemoryMb >= min({81920, 16384 * pow(2, NumJobStarts)})"
    assert sub["log"] == f"{run_dir}/logs/train.log"
    args = sub.expand("arguments")
    assert f" {str(image_dir / 'train.sif').lstrip('/')} " in args  # the image comes along
    assert "--bind" not in args  # nothing of this machine's is there
    assert f"--data.background_dir={rel}/data/train/background " in args
    assert f"--trainer.logger.save_dir={rel}/training" in args
    assert "--config=/opt/aframe/projects/train/train.yaml" in args  # inside the image
    env = sub["environment"]
    assert f"AFRAME_TRAIN_WAVEFORMS_DIR={rel}/data/train" in env
    assert f"AFRAME_RESULTS_DIR={run_dir}/results" in env  # unrelated: left alone
    # only train runs remote
    assert "should_transfer_files" not in (run_dir / "export.sub").read_text()


def test_s3_inputs_need_credential_files(tmp_path: Path, image_dir: Path, ligo_env: None) -> None:
    # the training waveforms from S3; what else the command uses is sent as before
    url = (
        '["s3://bucket/train/training_waveforms.hdf5", "{{ dirs.train_background }}/background",'
        ' "{{ dirs.train_waveforms }}/val_waveforms.hdf5"]'
    )
    base = ["--train-remote", "--set", f"stages.train.inputs={url}"]
    code, _, err = sandbox(tmp_path / "a", image_dir, *base)
    assert code == 1 and "needs remote.aws_access_key_id_file" in err
    keys = tmp_path / "keys"
    keys.mkdir()
    code, _, err = sandbox(
        tmp_path / "b", image_dir, *base,
        "--set", f"remote.aws_access_key_id_file={keys}/id",
        "--set", f"remote.aws_secret_access_key_file={keys}/secret",
    )  # fmt: skip
    assert code == 0, err
    sub = htcondor2.Submit((tmp_path / "b" / "train.sub").read_text())
    assert "s3://bucket/train/training_waveforms.hdf5" in sub["transfer_input_files"]
    assert sub["aws_secret_access_key_file"] == f"{keys}/secret"


def test_remote_values_reach_the_job_ad_as_written(
    tmp_path: Path, image_dir: Path, ligo_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # $ENV(...) in a remote value would be expanded by condor_submit into the job ad,
    # which every user of the pool can read: each arrives as written, or is refused
    monkeypatch.setenv("HOSTILE", "leaked")
    run_dir = tmp_path / "run"
    keys = tmp_path / "keys$ENV(HOSTILE)"
    code, _, err = sandbox(
        run_dir, image_dir, "--train-remote",
        "--set", "remote.output_destination=osdf:///ligo/$ENV(HOSTILE)/$RANDOM_INTEGER(1,9)",
        "--set", f"remote.aws_access_key_id_file={keys}/id",
        "--set", f"remote.aws_secret_access_key_file={keys}/secret",
    )  # fmt: skip
    assert code == 0, err
    sub = htcondor2.Submit((run_dir / "train.sub").read_text())
    assert sub.expand("output_destination") == "osdf:///ligo/$ENV(HOSTILE)/$RANDOM_INTEGER(1,9)"
    assert sub.expand("aws_access_key_id_file") == f"{keys}/id"
    assert "leaked" not in (run_dir / "train.sub").read_text()
    code, _, err = sandbox(
        tmp_path / "comma", image_dir, "--train-remote", "--set",
        'stages.train.inputs=["/data/a,b", "{{ dirs.train_background }}/background", '
        '"{{ dirs.train_waveforms }}/val_waveforms.hdf5"]',
    )  # fmt: skip
    assert code == 1
    assert err.strip() == (
        "Error: stages.train.inputs: 'data/a,b' contains ',', which separates HTCondor's file lists"
    )


def test_run_local_runs_a_remote_stage_in_a_scratch_dir_and_brings_outputs_back(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "in.txt").write_text("input")
    script = (
        "import pathlib,os;"
        "src=pathlib.Path('{{ dirs.data }}/in.txt'.lstrip('/'));"
        "out=pathlib.Path('{{ dirs.out }}'.lstrip('/'));"
        "out.mkdir(parents=True);"
        "(out/'model.txt').write_text(src.read_text()+' seen in '+os.getcwd())"
    )
    config = tmp_path / "remote.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "remote",
                "dirs": {"data": str(data), "out": "{{ run_dir }}/out"},
                "condor": {"container": "none", "use_oauth_services": "", "getenv": ["PATH"]},
                "remote": {"enabled": True, "stages": ["train"]},
                "stages": {
                    "train": {
                        "command": [sys.executable, "-c", script],
                        "inputs": ["{{ dirs.data }}/in.txt"],
                        "outputs": ["{{ dirs.out }}/model.txt"],
                    }
                },
            }
        )
    )
    run_dir = tmp_path / "run"
    code, _, err = run_cli("build", str(config), "--run-dir", str(run_dir))
    assert code == 0, err
    done = subprocess.run(
        [sys.executable, "-m", "aframe_dag", "run-local", str(run_dir)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = (run_dir / "out" / "model.txt").read_text()
    assert text.startswith("input seen in ") and "/.aframe-dag/scratch/train" in text
    assert not (run_dir / ".aframe-dag" / "scratch" / "train").exists()


# --- build --check ---------------------------------------------------------------------


def test_check_reports_every_problem_on_its_own_line_and_writes_nothing(
    tmp_path: Path, image_dir: Path, ligo_env: None
) -> None:
    run_dir = tmp_path / "run"
    code, out, err = sandbox(run_dir, image_dir, "--check")
    assert code == 1
    assert err.strip() == "Error: 7 of 12 checks failed"
    assert "ok    tokens: scitokens (the service's default scopes): query_train," in out
    lines = out.splitlines()
    assert "ok    condor.accounting_group: ligo.dev.o4.cbc.allsky.aframe" in lines
    assert (
        f"FAIL  image of query_train: {image_dir}/data.sif is not a SIF image "
        "(no SIF magic in its header)" in lines
    )
    assert any(line.startswith("FAIL  run dir: ") and "under /tmp" in line for line in lines)
    assert not run_dir.exists()


def test_a_bad_accounting_group_stops_the_build(
    tmp_path: Path, image_dir: Path, ligo_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIGO_GROUP", "LIGO Dev")
    code, _, err = sandbox(tmp_path / "run", image_dir)
    assert code == 1
    assert err.strip() == (
        "Error: condor.accounting_group: 'LIGO Dev' is not an accounting tag like "
        "ligo.dev.o4.cbc.allsky"
    )


# --- secrets ---------------------------------------------------------------------------

MARKERS = {
    "WANDB_API_KEY": "wandb0marker" * 4,
    "AWS_SECRET_ACCESS_KEY": "aws-secret-marker-7f3a",
    "AWS_ACCESS_KEY_ID": "AKIAMARKER0000000001",
    "GITLAB_TOKEN": "glpat-token-marker-91",
    "DB_PASSWORD": "password-marker-ab12",
    "SIGNING_KEY": "signing-key-marker-cd",
}


def test_secrets_reach_jobs_by_name_and_no_file_or_output_holds_them(tmp_path: Path) -> None:
    config = tmp_path / "secrets.yaml"
    check = (
        "import os,sys,hashlib;"
        f"names={sorted(MARKERS)!r};"
        "missing=[n for n in names if not os.environ.get(n)];"
        "sys.exit('missing '+str(missing)) if missing else None;"
        "digest=hashlib.sha256(''.join(os.environ[n] for n in names).encode());"
        "open(sys.argv[1],'w').write(digest.hexdigest())"
    )
    config.write_text(
        yaml.safe_dump(
            {
                "name": "secrets",
                "dirs": {"out": "{{ run_dir }}/out"},
                "condor": {"container": "none", "use_oauth_services": "", "getenv": ["PATH"]},
                "stages": {
                    "use": {
                        "command": [sys.executable, "-c", check, "{{ dirs.out }}/digest"],
                        "getenv": sorted(MARKERS),
                        "outputs": ["{{ dirs.out }}/digest"],
                    }
                },
            }
        )
    )
    run_dir = tmp_path / "run"
    env = {**os.environ, **MARKERS, "WANDB_MODE": "offline"}
    outputs = []
    for args in (
        ["build", str(config), "--run-dir", str(run_dir)],
        ["run-local", str(run_dir), "--dry-run"],
        ["run-local", str(run_dir)],
        ["status", str(run_dir)],
        ["status", str(run_dir), "--json"],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "aframe_dag", *args],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout + done.stderr)
    assert (run_dir / "out" / "digest").stat().st_size == 64  # the job saw every secret
    assert "WANDB_API_KEY=<hidden>" in outputs[1]
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert len(files) > 5
    for name, value in MARKERS.items():
        for text in outputs:
            assert value not in text, name
        for path in files:
            assert value not in path.read_text(errors="replace"), (name, path)


def test_a_secret_written_into_the_config_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITLAB_TOKEN", MARKERS["GITLAB_TOKEN"])
    base = {
        "name": "leak",
        "condor": {"container": "none", "use_oauth_services": ""},
    }
    cases = {
        "environment": ({"a": {"command": "true", "environment": {"GITLAB_TOKEN": "x"}}},
                        "stages.a.environment: GITLAB_TOKEN is a secret and would be written "
                        "into the .sub file"),
        "by-value": ({"a": {"command": "echo ${env:GITLAB_TOKEN}"}},
                     "config.yaml would hold the value of $GITLAB_TOKEN, a secret"),
    }  # fmt: skip
    for name, (stages, message) in cases.items():
        config = tmp_path / f"{name}.yaml"
        config.write_text(yaml.safe_dump({**base, "stages": stages}))
        run_dir = tmp_path / name
        code, _, err = run_cli("build", str(config), "--run-dir", str(run_dir))
        assert code == 1 and message in err, err
        assert len(err.strip().splitlines()) == 1
        assert not run_dir.exists()


def test_the_demo_trains_with_a_wandb_logger_offline_and_the_key_stays_out(
    tmp_path: Path,
) -> None:
    """The real wandb package, offline: the run's records hold the metrics and the run
    group, and neither they nor anything else in the run dir hold the API key."""
    run_dir = tmp_path / "demo"
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_API_KEY": KEY}
    env.pop("WANDB_RUN_GROUP", None)
    for args in (
        ["build", "demo", "--run-dir", str(run_dir), "--use-wandb", "--target", "train"],
        ["run-local", str(run_dir), "--gpus", "0"],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "aframe_dag", *args],
            env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert KEY not in done.stdout + done.stderr
    (records,) = (run_dir / "training" / "wandb").glob("offline-run-*/run-*.wandb")
    data = records.read_bytes()
    assert b"validation_accuracy" in data and b"aframe-demo-demo" in data  # metric, group
    for path in run_dir.rglob("*"):
        assert not path.is_file() or KEY.encode() not in path.read_bytes(), path
