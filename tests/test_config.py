"""Config loading: file:line errors, env interpolation, overrides, validation messages."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_cli

from aframe_dag.config import dump_config, load_config
from aframe_dag.errors import ConfigError

MINIMAL = """\
name: demo
params:
  rate: 2048
condor:
  container: none
stages:
  first:
    command: echo {{ params.rate }}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    return path


def test_minimal_config_gets_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL), env={}).config
    assert config.stages["first"].resources.memory == "2GB"
    assert config.condor.use_oauth_services == "scitokens"
    assert config.params == {"rate": 2048}


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\nstages:\n  a: [1, 2\n  b: 3\n")
    with pytest.raises(ConfigError, match=rf"^{path}:4: invalid YAML"):
        load_config(path, env={})


def test_duplicate_key_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "  first:\n    command: echo\n")
    with pytest.raises(ConfigError, match=r":9: duplicate key 'first'"):
        load_config(path, env={})


def test_unknown_key_suggests_the_near_miss(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "    resources: {gpu: 1}\n")
    with pytest.raises(ConfigError) as error:
        load_config(path, env={})
    assert str(error.value) == (
        f"{path}:9: stages.first.resources.gpu: unknown key; did you mean 'gpus'?"
    )


def test_wrong_value_names_key_path_and_allowed_values(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace("container: none", "container: docker"))
    with pytest.raises(ConfigError) as error:
        load_config(path, env={})
    message = str(error.value)
    assert message.startswith(f"{path}:5: condor.container: ")
    assert "must be one of 'apptainer', 'container-universe' or 'none'" in message
    assert "got 'docker'" in message


def test_negative_gpus_is_refused_with_the_bound(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "    resources: {gpus: -1}\n")
    with pytest.raises(ConfigError, match=r":9: stages.first.resources.gpus: .*0.*got -1"):
        load_config(path, env={})


def test_memory_needs_a_unit(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "    resources: {memory: 16}\n")
    with pytest.raises(ConfigError, match=r"stages.first.resources.memory: must be a number"):
        load_config(path, env={})


def test_unknown_generator_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "    foreach: {segment: {file: x}}\n")
    with pytest.raises(ConfigError, match=r"unknown generator.*did you mean 'segments'"):
        load_config(path, env={})


def test_env_interpolation_with_and_without_default(tmp_path: Path) -> None:
    text = MINIMAL.replace("rate: 2048", 'rate: "${env:RATE}"\n  dir: "${env:NOPE:-/data}"')
    config = load_config(write(tmp_path, text), env={"RATE": "4096"}).config
    assert config.params == {"rate": "4096", "dir": "/data"}


def test_missing_env_var_names_it_and_the_alternatives(tmp_path: Path) -> None:
    text = MINIMAL.replace("rate: 2048", 'rate: "${env:RATE}"')
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, text), env={})
    message = str(error.value)
    assert ":3: params.rate: environment variable RATE is not set" in message
    assert "--set params.rate=" in message


def test_set_overrides_any_key_with_yaml_values(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    config = load_config(
        path,
        ["params.rate=4096", "stages.first.resources.gpus=2", "params.ifos=[H1, L1]"],
        env={},
    ).config
    assert config.params == {"rate": 4096, "ifos": ["H1", "L1"]}
    assert config.stages["first"].resources.gpus == 2


def test_bad_override_is_blamed_on_the_flag(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^--set stages.first.resources.gpus: .*got -2"):
        load_config(write(tmp_path, MINIMAL), ["stages.first.resources.gpus=-2"], env={})
    with pytest.raises(ConfigError, match=r"expected dotted\.key=value"):
        load_config(write(tmp_path, MINIMAL), ["params.rate"], env={})


def test_dump_round_trips(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL), env={}).config
    again = write(tmp_path, dump_config(config))
    assert load_config(again, env={}).config == config


def test_a_stage_s_params_replace_params_in_its_templates_only(tmp_path: Path) -> None:
    text = MINIMAL + "  second:\n    command: echo {{ params.rate }}\n    params: {rate: 4096}\n"
    path = write(tmp_path, text)
    config = load_config(path, env={}).config
    assert config.stage_params("second") == {"rate": 4096}
    assert config.stage_params("first") == config.params == {"rate": 2048}
    # written only where a stage has some, and read back as written
    dumped = dump_config(config)
    assert dumped.count("params:") == 2
    assert load_config(write(tmp_path, dumped), env={}).config == config
    path = write(tmp_path, text)
    run_dir = tmp_path / "run"
    code, _, err = run_cli("build", str(path), "--run-dir", str(run_dir))
    assert code == 0, err
    for stage, rate in (("first", 2048), ("second", 4096)):
        assert f'arguments = "echo {rate}"' in (run_dir / f"{stage}.sub").read_text().splitlines()


def test_a_stage_s_param_that_params_lacks_is_an_error_with_the_near_miss(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, MINIMAL + "    params: {rat: 1}\n")
    with pytest.raises(ConfigError) as error:
        load_config(path, env={})
    assert str(error.value) == f"{path}:9: stages.first.params.rat: no params.rat to replace; " \
        "did you mean 'rate'?"  # fmt: skip
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, MINIMAL), ["stages.first.params.sample_rate=1"], env={})
    assert str(error.value) == "--set stages.first.params.sample_rate: no params.sample_rate " \
        "to replace"  # fmt: skip
