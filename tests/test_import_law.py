"""`import-law` on law cfgs holding the real sandbox values; `build --gpus` and run-local;
every aframe-dag command of README's "Coming from law"."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import IMAGES, REPO, SANDBOX, run_cli

from aframe_dag import lawcfg
from aframe_dag.config import load_config

LAW = Path(__file__).parent / "law"
BBH, BNS = LAW / "bbh.cfg", LAW / "bns.cfg"
BUNDLED = REPO / "configs"
PROGRAMS = Path(__file__).parent / "pool_programs.py"


# --- helpers ---------------------------------------------------------------------------


def imported(cfg: Path, out: Path) -> dict[str, Any]:
    """Import `cfg` into `out` with the CLI; the YAML it wrote."""
    code, stdout, err = run_cli("import-law", str(cfg), "-o", str(out))
    assert code == 0, err
    assert stdout.startswith(f"wrote {out}: extends ")
    return yaml.safe_load(out.read_text())


def over(tmp_path: Path, sections: dict[str, dict[str, str]], base: Path = BBH) -> Path:
    """A cfg that inherits `base` and sets `sections` over it."""
    lines = ["[core]", f"inherit = {base}"]
    for section, keys in sections.items():
        lines += ["", f"[{section}]", *(f"{key} = {text}" for key, text in keys.items())]
    path = tmp_path / "over.cfg"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_dir_files(config: Path, run_dir: Path, image_dir: Path, *extra: str) -> dict[str, Any]:
    """Build `config` into `run_dir`; every file of it, then remove it (so that the next
    build goes to the same path). fingerprints.json without its time and command line."""
    code, _, err = run_cli(
        "build", str(config), "--run-dir", str(run_dir), "--image-dir", str(image_dir), *extra
    )
    assert code == 0, err
    found: dict[str, Any] = {
        str(p.relative_to(run_dir)): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()
    }
    fingerprints = json.loads(found.pop("fingerprints.json"))
    del fingerprints["written"]  # the time of the build
    fingerprints.get("build", {}).pop("command", None)  # the command line: names the config
    found["fingerprints.json"] = fingerprints
    shutil.rmtree(run_dir)
    return found


def changed(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[tuple[str, str]]]:
    """The files that differ, each with its (old, new) lines."""
    assert sorted(before) == sorted(after)
    diffs = {}
    for name in before:
        if before[name] == after[name] or name == "fingerprints.json":
            continue
        old, new = before[name].decode().splitlines(), after[name].decode().splitlines()
        assert len(old) == len(new), name
        diffs[name] = [(a, b) for a, b in zip(old, new, strict=True) if a != b]
    return diffs


def listing(text: str, title: str) -> list[tuple[str, str, str]]:
    """The (section, key, why) entries of an imported config's `# title:` comment block."""
    block = text.split(f"\n# {title}:\n", 1)[1].split("\n\n", 1)[0]
    entries = re.sub(r"\n#     ", " ", block).splitlines()
    found = []
    for entry in entries:
        section, rest = re.fullmatch(r"#   \[(\S+)\] (.*)", entry).groups()  # type: ignore[union-attr]
        keys, _, why = rest.partition(": ")
        found += [(section, key, why) for key in keys.split(", ")]
    return found


# --- the real pipeline's values build as the bundled configs --------------------------


@pytest.mark.parametrize(("cfg", "bundled"), [(BBH, "sandbox.yaml"), (BNS, "bns.yaml")])
def test_the_real_cfgs_build_byte_for_byte_as_the_bundled_configs(
    tmp_path: Path, image_dir: Path, ligo_env: None, cfg: Path, bundled: str
) -> None:
    config = tmp_path / "imported.yaml"
    # nothing differs: the imported config is the bundled one
    assert imported(cfg, config) == {"extends": str(BUNDLED / bundled)}
    run_dir = tmp_path / "run"
    ours = run_dir_files(config, run_dir, image_dir)
    theirs = run_dir_files(BUNDLED / bundled, run_dir, image_dir)
    assert ours.keys() == theirs.keys()
    for name, content in ours.items():
        assert content == theirs[name], name


def test_written_into_the_working_directory_it_names_the_bundled_config(
    tmp_path: Path, image_dir: Path, ligo_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert imported(BNS, Path("mine.yaml")) == {"extends": "bns.yaml"}
    # named as the bundled config, it would extend itself: by its path
    assert imported(BNS, Path("bns.yaml")) == {"extends": str(BUNDLED / "bns.yaml")}
    for config in ("mine.yaml", "bns.yaml"):
        code, out, err = run_cli("validate", config, "--image-dir", str(image_dir))
        assert (code, out) == (0, f"{config}: OK (15 stages)\n"), err
    code, out, _ = run_cli("import-law", str(BBH))  # printed: it may be saved anywhere
    assert yaml.safe_load(out) == {"extends": str(SANDBOX)}


# --- one cfg value changes exactly the commands that use it ------------------------------

CHANGES = {  # cfg values over bbh.cfg: the lines that change, each as (old, new) words
    "kernel length, shared through [luigi_base]": (
        {"luigi_base": {"kernel_length": "2"}},
        {
            "train.sub": ("--data.kernel_length=1.5", "--data.kernel_length=2"),
            "export.sub": ("--kernel_length=1.5", "--kernel_length=2"),
            "config.yaml": ("kernel_length: 1.5", "kernel_length: 2"),
        },
    ),
    "a task's own value": (
        {"luigi_FetchTrain": {"min_duration": "512"}},
        {
            "query_train.sub": ("--min_duration=1024", "--min_duration=512"),
            "config.yaml": ("--min_duration=1024", "--min_duration=512"),
        },
    ),
    "a task's request_memory": (
        {"luigi_Train": {"request_memory": "96GB"}},
        {
            "train.sub": ("request_memory = 80GB", "request_memory = 96GB"),
            "config.yaml": ("memory: 80GB", "memory: 96GB"),
        },
    ),
    "a value of a stage whose nodes are decided at run time": (
        {"luigi_TestingWaveforms": {"jitter": "0.5"}},
        {
            "generate_testing_waveforms.sub": ("--jitter=0.1", "--jitter=0.5"),
            "config.yaml": ("--jitter=0.1", "--jitter=0.5"),
        },
    ),
}


@pytest.mark.parametrize("case", CHANGES.keys())
def test_one_cfg_value_changes_exactly_the_commands_that_use_it(
    tmp_path: Path, image_dir: Path, ligo_env: None, case: str
) -> None:
    sections, lines = CHANGES[case]
    run_dir = tmp_path / "run"
    base = tmp_path / "base.yaml"
    imported(BBH, base)
    before = run_dir_files(base, run_dir, image_dir)
    config = tmp_path / "changed.yaml"
    imported(over(tmp_path, sections), config)
    after = run_dir_files(config, run_dir, image_dir)
    diffs = changed(before, after)
    assert sorted(diffs) == sorted(lines)
    for name, (old, new) in lines.items():
        ((was, now),) = diffs[name]  # one line: the command's, or the resource's
        assert old in was, name
        assert now == was.replace(old, new), name


def test_one_task_s_own_value_changes_exactly_its_stage_s_command(
    tmp_path: Path, image_dir: Path, ligo_env: None
) -> None:
    run_dir = tmp_path / "run"
    base = tmp_path / "base.yaml"
    imported(BBH, base)
    before = run_dir_files(base, run_dir, image_dir)
    config = tmp_path / "changed.yaml"
    tree = imported(over(tmp_path, {"luigi_Train": {"kernel_length": "2"}}), config)
    # ExportLocal's stays params.kernel_length: the train stage has a value of its own
    assert tree == {"extends": str(SANDBOX), "stages": {"train": {"params": {"kernel_length": 2}}}}
    assert "      kernel_length: 2  # [luigi_Train] kernel_length\n" in config.read_text()
    after = run_dir_files(config, run_dir, image_dir)
    assert sorted(before) == sorted(after)
    differ = sorted(name for name in before if before[name] != after[name])
    assert differ == ["config.yaml", "fingerprints.json", "train.sub"]
    old, new = before["train.sub"].decode(), after["train.sub"].decode()
    assert "--data.kernel_length=1.5 " in old
    assert new == old.replace("--data.kernel_length=1.5 ", "--data.kernel_length=2 ")
    resolved = yaml.safe_load(after["config.yaml"])
    assert resolved["stages"]["train"].pop("params") == {"kernel_length": 2}
    assert resolved == yaml.safe_load(before["config.yaml"])
    # only train's fingerprint differs; its inputs say why it runs again, export's do not
    was, now = before["fingerprints.json"], after["fingerprints.json"]
    assert [s for s in was["stages"] if was["stages"][s] != now["stages"][s]] == ["train"]
    inputs = {s: now["inputs"][now["stages"][s]]["config"] for s in ("train", "export")}
    assert inputs["train"]["params.kernel_length"] == "2"
    assert inputs["export"]["params.kernel_length"] == "1.5"


def test_a_value_most_tasks_share_is_params_the_others_are_their_stages_own(
    tmp_path: Path,
) -> None:
    cfg = over(
        tmp_path,
        {
            "luigi_ExportLocal": {"kernel_length": "2"},  # Train's stays [luigi_base]'s
            "luigi_FetchTest": {"max_duration": "5000"},  # FetchTrain's stays 20000
            "luigi_SandboxInfer": {"streams_per_gpu": "4"},  # ExportLocal's stays 6
        },
    )
    tree = yaml.safe_load(lawcfg.import_law(cfg).text)
    own = {name: stage["params"] for name, stage in tree["stages"].items() if "params" in stage}
    assert own == {
        "export": {"kernel_length": 2},
        # the testing waveforms and inference read FetchTest's files: its max_duration
        # names them (query_test reads none)
        "fetch_test": {"max_duration": 5000},
        "generate_testing_waveforms": {"max_duration": 5000},
        "infer": {"max_duration": 5000, "streams_per_gpu": 4},
    }
    assert "params" not in tree  # the shared values are the bundled ones
    assert tree["stages"]["infer"]["max_jobs"] == 4  # 2 * (4 * 1 // 2): SandboxInfer's streams


def test_two_tasks_disagreeing_on_one_dir_is_an_error_naming_both(tmp_path: Path) -> None:
    cfg = over(tmp_path, {"luigi_Train": {"run_dir": "/a"}, "luigi_paths": {"train_rundir": "/b"}})
    message = fails("import-law", str(cfg))
    assert message == (
        f"Error: {cfg}:8: [luigi_paths] train_rundir: /b differs from [luigi_Train] run_dir "
        f"= /a ({cfg}:5); aframe-dag has one dirs.train_run: give both the same value"
    )


def test_a_task_s_own_value_no_stage_of_it_reads_is_an_error(tmp_path: Path) -> None:
    cfg = over(tmp_path, {"luigi_TestingWaveforms": {"start": "1241443784"}})
    message = fails("import-law", str(cfg))
    assert message == (
        f"Error: {cfg}:5: [luigi_TestingWaveforms] start: 1241443784 differs from "
        f"[luigi_FetchTrain] end = 1241443783 ({LAW / 'base.cfg'}:54); no stage of "
        "TestingWaveforms (generate_testing_waveforms, merge_testing_waveforms) reads "
        "params.train_stop: give both the same value"
    )


# --- every mapped key --------------------------------------------------------------------

# a new value for each mapped key, as the cfg writes it, and what the config then holds
# (a command's flag: the word `FLAG=TEXT` in it); by key, or by (section, key)
NEW: dict[str | tuple[str, str], tuple[str, Any]] = {
    "sample_rate": ("4096", 4096),
    "max_duration": ("10000", 10000),
    "flag": ("DMT-ANALYSIS_READY:1", "DMT-ANALYSIS_READY:1"),
    "ifos": ('["H1", "L1", "V1"]', ["H1", "L1", "V1"]),
    "channels": ("['H1:GDS-CALIB', 'L1:GDS-CALIB']", ["H1:GDS-CALIB", "L1:GDS-CALIB"]),
    ("luigi_FetchTrain", "start"): ("1240000000", 1240000000),
    ("luigi_FetchTrain", "end"): ("1241000000", 1241000000),
    ("luigi_FetchTest", "start"): ("1241000000", 1241000000),
    ("luigi_FetchTest", "end"): ("1245000000", 1245000000),
    ("luigi_TestingWaveforms", "start"): ("1241000000", 1241000000),
    ("luigi_TestingWaveforms", "end"): ("1245000000", 1245000000),
    "min_duration": ("512", "512"),
    "request_memory": ("4096", "4096MB"),  # HTCondor's unit: MB
    "request_disk": ("2GB", "2GB"),
    "request_cpus": ("3", 3),
    "request_gpus": ("2", 2),
    "prior": ("priors.priors.my_prior", "priors.priors.my_prior"),
    "source_prior": ("priors.priors.my_prior", "priors.priors.my_prior"),
    "waveform_duration": ("4", 4),
    "minimum_frequency": ("10", 10),
    "reference_frequency": ("20", 20),
    "waveform_approximant": ("IMRPhenomXPHM", "IMRPhenomXPHM"),
    "right_pad": ("1", 1),
    "num_jobs": ("20", 20),
    "num_signals": ("1_000", 1000),
    "highpass": ("16", 16),
    "lowpass": ("512", 512),
    "snr_threshold": ("8", 8),
    "max_num_samples": ("1000", 1000),
    "shifts": ("[0, 2]", [0, 2]),
    "spacing": ("32", 32),
    "buffer": ("24", 24),
    "seed": ("42", 42),
    "psd_length": ("32", 32),
    "jitter": ("0.5", "0.5"),
    "fftlength": ("4", 4),  # not 2: bns.yaml's
    "kernel_length": ("2", 2),
    "fduration": ("2", 2),
    "train_config": ("$AFRAME_CONFIGS/train.yaml", "${env:AFRAME_CONFIGS}/train.yaml"),
    "export_config": ("${AFRAME_CONFIGS}/export.yaml", "${env:AFRAME_CONFIGS}/export.yaml"),
    "inference_sampling_rate": ("8", 8),
    "streams_per_gpu": ("4", 4),
    "batch_size": ("64", 64),
    "platform": ("ONNX", "ONNX"),
    "Tb": ("2592000", 2592000),
    "rate_per_gpu": ("50", 50),
    "cluster_window_length": ("4", "4"),
    "integration_window_length": ("1", "1"),
    "model_name": ("aframe", "aframe"),
    "model_version": ("3", "3"),
    "zero_lag": ("false", False),
    "triton_image": ("hermes/triton:22.12", lawcfg.CVMFS_ML4GW + "hermes/triton:22.12"),
    "mass_combos": ("[[30, 30], [10, 10]]", [[30, 30], [10, 10]]),
    "entity": ("ml4gw", "ml4gw"),
    "project": ("aframe-bbh", "aframe-bbh"),
    "name": ("run-7", "run-7"),
    "group": ("o3-replay", "o3-replay"),
    "tags": ("bbh, o3", ["bbh", "o3"]),
    "retries": ("2", 2),
    "tasks_per_job": ("4", 4),
    "parallel_jobs": ("8", 8),
    "accounting_group": ("ligo.prod.o4.cbc.allsky.aframe", "ligo.prod.o4.cbc.allsky.aframe"),
    "accounting_group_user": ("marie.curie", "marie.curie"),
    "image": ("my.sif", "my.sif"),  # relative: in the image dir, as law's container_root
    "container_root": ("/images", "/images"),
    "dt": ("100", "100"),
}
ROOT = "$AFRAME_TEST_ROOT"  # the dirs: where the build test can write
for key, where in {
    "run_dir": "training", "background_dir": "train/background", "waveforms_dir": "train",
    "train_background_dir": "train/background", "train_waveforms_dir": "train",
    "train_rundir": "training", "test_background_dir": "test/background",
    "test_waveforms_dir": "test", "results_dir": "results", "tmp_dir": "tmp",
}.items():  # fmt: skip
    NEW[key] = (f"{ROOT}/{where}", "${env:AFRAME_TEST_ROOT}/" + where)
for (section, key), (where, kept) in {  # a task's dir that aframe-dag keeps at DIR/NAME: DIR
    ("luigi_FetchTrain", "data_dir"): ("train/background/background", "train/background"),
    ("luigi_FetchTrain", "segments_file"): ("train/background/segments.txt", "train/background"),
    ("luigi_FetchTest", "data_dir"): ("test/background/background", "test/background"),
    ("luigi_FetchTest", "segments_file"): ("test/background/segments.txt", "test/background"),
    ("luigi_TrainingWaveforms", "output_dir"): ("train", "train"),
    ("luigi_TrainingWaveforms", "tmp_dir"): ("tmp/training_waveforms", "tmp"),
    ("luigi_ValidationWaveforms", "background_dir"): ("train/background", "train/background"),
    ("luigi_ValidationWaveforms", "output_dir"): ("train", "train"),
    ("luigi_ValidationWaveforms", "tmp_dir"): ("tmp/val", "tmp"),
    ("luigi_TestingWaveforms", "background_dir"): ("test/background", "test/background"),
    ("luigi_TestingWaveforms", "output_dir"): ("test", "test"),
    ("luigi_ExportLocal", "repository_directory"): ("results/model_repo", "results"),
    ("luigi_SandboxInfer", "output_dir"): ("results", "results"),
    ("luigi_SandboxSV", "output_dir"): ("results/plots", "results"),
}.items():
    NEW[(section, key)] = (f"{ROOT}/{where}", "${env:AFRAME_TEST_ROOT}/" + kept)

MAPPED = [
    (section, key, rule)
    for section, spec in lawcfg.RULES.items()
    for key, rule in spec.keys.items()
    if isinstance(rule, lawcfg.Place)
]


def new_value(section: str, key: str) -> tuple[str, Any]:
    found = NEW.get((section, key), NEW.get(key))
    assert found is not None, f"give [{section}] {key} a new value in NEW"
    return found


def place_of(section: str, key: str) -> tuple[tuple[str, ...], str] | None:
    rule = lawcfg.RULES.get(section, lawcfg.Section({})).keys.get(key)
    return (rule.path, rule.flag) if isinstance(rule, lawcfg.Place) else None


def with_siblings(section: str, key: str) -> dict[str, dict[str, str]]:
    """[section] key at its new value, with every key of bbh.cfg that sets the same place
    at its own new value (one value for them all: none is a task's own)."""
    text, _ = new_value(section, key)
    place = place_of(section, key)
    sections: dict[str, dict[str, str]] = {section: {key: text}}
    for other, keys in lawcfg.read_cfg(BBH).values.items():
        for other_key in keys:
            if place_of(other, other_key) == place:
                sections.setdefault(other, {})[other_key] = new_value(other, other_key)[0]
    return sections


def at(tree: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        tree = tree[key]
    return tree


@pytest.mark.parametrize(("section", "key", "rule"), MAPPED, ids=[f"{s}.{k}" for s, k, _ in MAPPED])
def test_every_mapped_key_sets_its_place(
    tmp_path: Path, section: str, key: str, rule: lawcfg.Place
) -> None:
    _, expected = new_value(section, key)
    sections = with_siblings(section, key)
    written = lawcfg.import_law(over(tmp_path, sections)).text
    tree = yaml.safe_load(written)
    value = at(tree, rule.path)
    if rule.flag:  # the bundled command with this one word changed
        bundled = at(yaml.safe_load(SANDBOX.read_text()), rule.path)
        assert re.search(rf"(?<!\S){re.escape(rule.flag)}=\S+", bundled), rule.flag
        word = f"{rule.flag}={expected}"
        assert value == re.sub(rf"(?<!\S){re.escape(rule.flag)}=\S+", word, bundled)
        assert value != bundled
    else:
        assert value == expected
    # the value's comment names every key it comes from
    line = next(line for line in written.splitlines() if f"[{section}] {key}" in line)
    assert not line.startswith("#   "), line  # a value's, not the listings'
    for other, keys in sections.items():
        assert all(f"[{other}] {k}" in line for k in keys), (line, other, keys)


def test_every_mapped_param_and_dir_reaches_a_bundled_stage() -> None:
    """A value the import sets in params or dirs changes a command, a path or a fan-out."""
    stages = yaml.safe_dump(yaml.safe_load(SANDBOX.read_text())["stages"], width=2**30)
    for _, _, rule in MAPPED:
        if rule.path[0] in ("params", "dirs"):
            name = ".".join(rule.path)
            assert re.search(rf"\b{re.escape(name)}\b", stages), name


def test_every_mapped_key_at_once_builds(
    tmp_path: Path, image_dir: Path, ligo_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    sections: dict[str, dict[str, str]] = {}
    for section, key, _ in MAPPED:
        for name, keys in with_siblings(section, key).items():
            sections.setdefault(name, {}).update(keys)
    triton = image_dir / "tritonserver-22.12.sif"  # an image that exists, by its path
    triton.touch()
    (image_dir / "my.sif").touch()  # every task's image (--image-dir wins over container_root)
    sections["luigi_SandboxInfer"]["triton_image"] = str(triton)
    config = tmp_path / "all.yaml"
    tree = imported(over(tmp_path, sections), config)
    assert tree["extends"] == str(SANDBOX)
    for section, key, rule in MAPPED:
        if not rule.flag and key != "triton_image":
            assert at(tree, rule.path) == new_value(section, key)[1], (section, key)
    # two streams a job: 2 * (streams_per_gpu * server_gpus // 2) jobs at once
    assert tree["stages"]["infer"]["max_jobs"] == 4
    monkeypatch.setenv("AFRAME_TEST_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("AFRAME_CONFIGS", str(tmp_path / "configs"))
    monkeypatch.setenv("WANDB_API_KEY", "a" * 40)
    run_dir = tmp_path / "run"
    code, _, err = run_cli(
        "build", str(config), "--run-dir", str(run_dir), "--image-dir", str(image_dir),
        "--use-wandb",
    )  # fmt: skip
    assert code == 0, err
    resolved = load_config(config).config
    assert resolved.wandb.tags == ["bbh", "o3"]
    assert resolved.stages["train"].resources.memory == "4096MB"
    train = (run_dir / "train.sub").read_text()
    assert "--data.kernel_length=2 " in train
    assert "--trainer.logger.name=run-7 " in train  # [luigi_wandb] name, with --use-wandb
    assert f"--data.background_dir={tmp_path}/data/train/background " in train
    assert "request_gpus = 2" in train
    assert "--client.model_name=aframe " in (run_dir / "infer.sub").read_text()
    assert f" {triton} " in (run_dir / "infer-service.sub").read_text()


def test_the_bundled_triton_image_stands_for_law_s_default(tmp_path: Path) -> None:
    text = "hermes/tritonserver:23.01"  # law's image, our tritonserver.sif
    cfg = over(tmp_path, {"luigi_SandboxInfer": {"triton_image": text}})
    tree = yaml.safe_load(lawcfg.import_law(cfg).text)
    assert tree == {"extends": str(SANDBOX)}
    cfg = over(tmp_path, {"luigi_SandboxInfer": {"triton_image": "/images/triton.sif"}})
    tree = yaml.safe_load(lawcfg.import_law(cfg).text)
    assert tree["stages"]["infer"]["service"]["image"] == "/images/triton.sif"


def test_empty_values_are_unset(tmp_path: Path) -> None:
    cfg = over(tmp_path, {"luigi_Train": {"request_memory": "", "lowpass": "", "fftlength": ""}})
    written = lawcfg.import_law(cfg).text
    assert yaml.safe_load(written) == {"extends": str(SANDBOX)}  # the bundled values stand
    same = listing(written, "Same as sandbox.yaml")
    assert ("luigi_Train", "request_memory", "empty: unset, as the bundled config's") in same


def test_condor_settings_become_the_stage_s_resources(tmp_path: Path) -> None:
    cfg = over(
        tmp_path,
        {
            "luigi_SandboxInfer": {"request_memory": "6G", "request_disk": "1G"},  # as bundled
            "luigi_FetchTest": {"request_memory": "2048", "request_disk": "4096"},  # MB, KB
            "luigi_TrainingWaveforms": {"request_cpus": "2", "workflow": "htcondor"},
        },
    )
    tree = yaml.safe_load(lawcfg.import_law(cfg).text)
    assert tree["stages"] == {
        "generate_training_waveforms": {"resources": {"cpus": 2}},
        "fetch_test": {"resources": {"memory": "2048MB", "disk": "4096KB"}},
    }


# --- reading the cfg as law does -----------------------------------------------------------


def law_copy(root: Path, inherit: str) -> Path:
    """bbh.cfg and base.cfg in `root` and `root`/shared, bbh's inherit written as given."""
    (root / "shared").mkdir(parents=True)
    shutil.copy(LAW / "base.cfg", root / "shared" / "base.cfg")
    text = (LAW / "bbh.cfg").read_text().replace("inherit = base.cfg", f"inherit = {inherit}")
    (root / "sandbox.cfg").write_text(text)
    return root / "sandbox.cfg"


@pytest.mark.parametrize(
    "inherit",
    ["shared/base.cfg", "./shared/../shared/base.cfg", "{root}/shared/base.cfg",
     "$LAW_ROOT/shared/base.cfg", "${LAW_ROOT}/shared/base.cfg", "~/shared/base.cfg"],
)  # fmt: skip
def test_inherit_relative_absolute_and_with_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, inherit: str
) -> None:
    root = tmp_path / "run"
    monkeypatch.setenv("LAW_ROOT", str(root))
    monkeypatch.setenv("HOME", str(root))
    cfg = law_copy(root, inherit.replace("{root}", str(root)))
    monkeypatch.chdir(tmp_path)  # relative to the file that inherits, not to here
    ours = lawcfg.import_law(cfg).text
    expected = lawcfg.import_law(BBH).text
    assert ours.split("\n", 1)[1] == expected.split("\n", 1)[1]  # all but the cfg's name


def test_a_chain_of_inherits_the_inheriting_file_wins(tmp_path: Path) -> None:
    middle = over(tmp_path, {"luigi_base": {"kernel_length": "3"}})
    middle = middle.rename(tmp_path / "middle.cfg")
    spacing = {"spacing": "&::buffer", "buffer": "20"}  # &::key: the same section's
    cfg = over(tmp_path, {"luigi_TestingWaveforms": spacing}, middle)
    tree = yaml.safe_load(lawcfg.import_law(cfg).text)
    assert tree["params"] == {"kernel_length": 3, "spacing": 20, "buffer": 20}


def test_references_to_another_section_and_to_the_same_one(tmp_path: Path) -> None:
    cfg = over(
        tmp_path,
        {
            "luigi_base": {"my_seed": "7"},
            "luigi_Train": {"seed": "&::luigi_base::my_seed"},
            "luigi_TestingWaveforms": {"seed": "&::luigi_Train::seed", "buffer": "&::spacing"},
        },
    )
    written = lawcfg.import_law(cfg).text
    assert yaml.safe_load(written)["params"] == {"seed": 7}
    (line,) = [line for line in written.splitlines() if line.startswith("  seed:")]
    assert line == (
        "  seed: 7  # [luigi_TestingWaveforms] seed, [luigi_Train] seed (= [luigi_base] my_seed)"
    )


def test_literals_as_law_reads_them(tmp_path: Path) -> None:
    cfg = over(
        tmp_path,
        {
            "luigi_base": {"ifos": "['H1', 'L1', 'V1']", "shifts": "(0, 1, 1)"},
            "luigi_TestingWaveforms": {"num_signals": "250_000"},
            "luigi_SandboxInfer": {"zero_lag": "False", "model_name": "aframe-stream-2"},
            "luigi_Train": {"precompute_train_waveforms": "true"},  # as bundled
        },
    )
    tree = yaml.safe_load(lawcfg.import_law(cfg).text)
    assert tree["params"]["ifos"] == ["H1", "L1", "V1"]
    assert tree["params"]["shifts"] == [0, 1, 1]
    infer = tree["stages"]["infer"]
    assert infer["foreach"]["timeslides"]["zero_lag"] is False
    assert " --client.model_name=aframe-stream-2 " in infer["command"]
    assert "train" not in tree["stages"]  # precompute_train_waveforms = true: as bundled
    assert tree["stages"]["generate_testing_waveforms"]["foreach"]["timeslides"] == {
        "num_signals": 250000
    }


def fails(*args: str) -> str:
    """The CLI's one line of error (exit code 1, nothing on stdout, no traceback)."""
    code, out, err = run_cli(*args)
    assert (code, out) == (1, ""), err
    assert len(err.splitlines()) == 1 and err.endswith("\n"), err
    assert err.startswith("Error: ") and "Traceback" not in err
    return err.rstrip("\n")


ERRORS = {
    "unset variable": (
        "[core]\ninherit = $NO_SUCH_LAW_DIR/base.cfg\n",
        "{cfg}:2: [core] inherit: environment variable NO_SUCH_LAW_DIR is not set "
        "(export it, or write the path)",
    ),
    "unset variable in braces": (
        "[core]\ninherit = ${NO_SUCH_LAW_DIR}/base.cfg\n",
        "{cfg}:2: [core] inherit: environment variable NO_SUCH_LAW_DIR is not set "
        "(export it, or write the path)",
    ),
    "inherited file missing": (
        "[core]\ninherit = {tmp}/nowhere.cfg\n",
        "{cfg}:2: [core] inherit: no such file '{tmp}/nowhere.cfg'",
    ),
    "inherit cycle": (
        "[core]\ninherit = {cfg}\n",
        "{cfg}:2: [core] inherit: {cfg} makes a cycle",
    ),
    "dangling reference to a section's key": (
        f"[core]\ninherit = {BBH}\n[luigi_Train]\nkernel_length = &::luigi_base::kernel\n",
        "{cfg}:4: [luigi_Train] kernel_length: refers to [luigi_base] kernel, which is not set",
    ),
    "dangling reference in the section": (
        f"[core]\ninherit = {BBH}\n[luigi_TestingWaveforms]\nspacing = &::spaces\n",
        "{cfg}:4: [luigi_TestingWaveforms] spacing: refers to [luigi_TestingWaveforms] spaces, "
        "which is not set",
    ),
    "reference cycle": (
        f"[core]\ninherit = {BBH}\n[luigi_TestingWaveforms]\nspacing = &::buffer\n"
        "buffer = &::luigi_base::gap\n[luigi_base]\ngap = &::luigi_TestingWaveforms::spacing\n",
        "{cfg}:7: [luigi_base] gap: references make a cycle: [luigi_TestingWaveforms] spacing "
        "-> [luigi_TestingWaveforms] buffer -> [luigi_base] gap -> [luigi_TestingWaveforms] "
        "spacing",
    ),
    "a task aframe-dag has no stage for": (
        f"[core]\ninherit = {BBH}\n[luigi_TuneTask]\ntune_config = tune.yaml\n",
        "{cfg}:3: [luigi_TuneTask]: aframe-dag has no stage for task TuneTask (it maps "
        "luigi_FetchTrain, luigi_FetchTest, luigi_TrainingWaveforms, luigi_ValidationWaveforms, "
        "luigi_TestingWaveforms, luigi_Train, luigi_ExportLocal, luigi_SandboxInfer, "
        "luigi_SandboxSV)",
    ),
    "an unknown key": (
        f"[core]\ninherit = {BBH}\n[luigi_Train]\nkernel_lenght = 2\n",
        "{cfg}:4: [luigi_Train] kernel_lenght: unknown key; did you mean 'kernel_length'?",
    ),
    "a workflow other than htcondor": (
        f"[core]\ninherit = {BBH}\n[luigi_FetchTest]\nworkflow = local\n",
        "{cfg}:4: [luigi_FetchTest] workflow: 'local': every aframe-dag stage is an HTCondor "
        "job (`run-local` runs the same jobs on this machine): remove the key or set htcondor",
    ),
    "a choice aframe-dag does not offer": (
        f"[core]\ninherit = {BBH}\n[luigi_Train]\nprecompute_train_waveforms = false\n",
        "{cfg}:4: [luigi_Train] precompute_train_waveforms: 'false': aframe-dag's train stage "
        "reads precomputed training waveforms",
    ),
    "a memory without a number": (
        f"[core]\ninherit = {BBH}\n[luigi_Train]\nrequest_memory = lots\n",
        "{cfg}:4: [luigi_Train] request_memory: must be a number with a unit (K, M, G, T), "
        "e.g. 16GB; got 'lots'",
    ),
    "a command word with a space": (
        f"[core]\ninherit = {BBH}\n[luigi_SandboxInfer]\nmodel_name = my model\n",
        "{cfg}:4: [luigi_SandboxInfer] model_name: 'my model' cannot go into the command "
        "(one word of A-Z a-z 0-9 ._:/+-)",
    ),
    "a task's dir aframe-dag keeps elsewhere": (
        f"[core]\ninherit = {BBH}\n[luigi_FetchTrain]\ndata_dir = /data/train\n",
        "{cfg}:4: [luigi_FetchTrain] data_dir: aframe-dag keeps it at DIR/background: give "
        "DIR/background, got '/data/train'",
    ),
    "older Aframe's training data dir": (
        f"[core]\ninherit = {BBH}\n[luigi_Train]\ndata_dir = /data/train\n",
        "{cfg}:4: [luigi_Train] data_dir: older Aframe's training data dir: give "
        "background_dir = DIR/background and waveforms_dir = DIR instead",
    ),
    "inference timeseries": (
        f"[core]\ninherit = {BBH}\n[luigi_SandboxInfer]\nreturn_timeseries = true\n",
        "{cfg}:4: [luigi_SandboxInfer] return_timeseries: 'true': aframe-dag's inference "
        "writes no timeseries",
    ),
    "part of a workflow": (
        f"[core]\ninherit = {BBH}\n[luigi_FetchTest]\nbranches = 0:10\n",
        "{cfg}:4: [luigi_FetchTest] branches: '0:10': law's way to run or accept part of a "
        "workflow: every node of a DAG must succeed",
    ),
    "no jobs at once": (
        f"[core]\ninherit = {BBH}\n[luigi_FetchTrain]\nparallel_jobs = 0\n",
        "{cfg}:4: [luigi_FetchTrain] parallel_jobs: must be a whole number >= 1, got '0'",
    ),
    "a key set twice": (
        "[luigi_Train]\nseed = 1\nseed = 2\n",
        "{cfg}:3: [luigi_Train] seed: set twice in the section",
    ),
}


@pytest.mark.parametrize("case", ERRORS.keys())
def test_errors_are_one_line_naming_file_section_and_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    monkeypatch.delenv("NO_SUCH_LAW_DIR", raising=False)
    text, message = ERRORS[case]
    cfg = tmp_path / "mine.cfg"
    cfg.write_text(text.replace("{cfg}", str(cfg)).replace("{tmp}", str(tmp_path)))
    out = tmp_path / "mine.yaml"
    expected = message.format(cfg=cfg, tmp=tmp_path)
    assert fails("import-law", str(cfg), "-o", str(out)) == f"Error: {expected}"
    assert not out.exists()


def test_errors_in_a_real_process_have_no_traceback(tmp_path: Path) -> None:
    cfg = tmp_path / "tune.cfg"
    cfg.write_text(f"[core]\ninherit = {BBH}\n[luigi_TuneTask]\ntune_config = tune.yaml\n")
    done = subprocess.run(
        [sys.executable, "-m", "aframe_dag", "import-law", str(cfg)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.startswith(f"Error: {cfg}:3: [luigi_TuneTask]: aframe-dag has no stage")
    assert len(done.stderr.splitlines()) == 1


def test_inherit_under_luigi_core_is_not_read_and_the_listing_says_so(tmp_path: Path) -> None:
    cfg = tmp_path / "mine.cfg"
    head = f"[luigi_core]\ninherit = {LAW}/base.cfg\n\n[luigi_SandboxSV]\n"
    cfg.write_text(head + "mass_combos = [[30, 30]]\n")
    written = lawcfg.import_law(cfg).text
    # nothing of base.cfg: the file inherits nothing, and says why
    assert yaml.safe_load(written) == {
        "extends": str(SANDBOX),
        "params": {"mass_combos": [[30, 30]]},
    }
    assert listing(written, "Not carried over") == [
        (
            "luigi_core",
            "inherit",
            "not read by law, which follows [core] inherit only: nothing is inherited from "
            "the file it names",
        )
    ]
    # a value it would have inherited: the error names the reason too
    cfg.write_text(head + "ifos = &::luigi_base::ifos\n")
    assert fails("import-law", str(cfg)) == (
        f"Error: {cfg}:5: [luigi_SandboxSV] ifos: refers to [luigi_base] ifos, which is not "
        f"set (law reads no [luigi_core] inherit: nothing was inherited from {LAW}/base.cfg)"
    )


def test_an_existing_output_is_replaced_only_with_force(tmp_path: Path) -> None:
    out = tmp_path / "mine.yaml"
    out.write_text("name: mine\n")
    assert fails("import-law", str(BBH), "-o", str(out)) == (
        f"Error: {out}: exists; pass --force to replace it"
    )
    assert out.read_text() == "name: mine\n"
    code, _, err = run_cli("import-law", str(BBH), "-o", str(out), "--force")
    assert code == 0, err
    assert yaml.safe_load(out.read_text()) == {"extends": str(SANDBOX)}


# --- every cfg key mapped or listed once ----------------------------------------------------


@pytest.mark.parametrize("cfg", [BBH, BNS])
def test_every_cfg_key_is_listed_once_as_the_same_or_not_carried_over(cfg: Path) -> None:
    written = lawcfg.import_law(cfg).text
    bundle = "bns.yaml" if cfg == BNS else "sandbox.yaml"
    same = listing(written, f"Same as {bundle}")
    ignored = listing(written, "Not carried over")
    keys = [(s, k) for s, keys in lawcfg.read_cfg(cfg).values.items() for k in keys]
    listed = [(s, k) for s, k, _ in same + ignored]
    assert sorted(listed) == sorted(keys)  # each once
    assert all(why for _, _, why in ignored)
    reasons = {(s, k): why for s, k, why in ignored}
    assert reasons[("luigi_Train", "use_wandb")] == "handled by `build --use-wandb`"
    assert reasons[("luigi_core", "local_scheduler")] == "a luigi scheduler setting"
    assert reasons[("luigi_base", "batch_size")] == (
        "no task key that aframe-dag reads refers to it"
    )
    assert reasons[("luigi_base", "kernel_length")] == (
        "shared: read through the task keys that refer to it"
    )
    assert reasons[("logging", "law")].startswith("a law setting")
    assert reasons[("luigi_SandboxInfer", "sequence_id")].startswith("not read")
    if cfg == BNS:
        assert reasons[("luigi_ExportLocal", "q")] == (
            "not a parameter of the task: nothing reads it"
        )


def test_the_keys_every_aframe_task_has_are_listed_with_their_reasons(tmp_path: Path) -> None:
    law = {"log_file": "law.log", "print_status": "0", "dev": "true", "gpus": "0"}
    jobs = {"condor_directory": "/condor/fetch", "job_log": "fetch.log", "poll_interval": "2"}
    jobs |= {"walltime": "24", "max_runtime": "24", "htcondor_pool": "cit", "cancel_jobs": "false"}
    must = {"prefix": "background", "acceptance": "1", "tolerance": "0", "branch": "-1"}
    infer = {"parallel_jobs": "12", "gpus": "0,1"}
    infer |= {"return_timeseries": "false", "remove_tmpdir": "true"}
    cfg = over(
        tmp_path,
        {
            "luigi_FetchTrain": {**law, **jobs, **must},
            "luigi_ExportLocal": {"batch_file": "batch.hdf5", "train_task": "aframe.Train"},
            "luigi_SandboxInfer": infer,
            "luigi_Train": {"gpus": "0,1"},
        },
    )
    written = lawcfg.import_law(cfg).text
    assert yaml.safe_load(written) == {"extends": str(SANDBOX)}
    same = {(s, k) for s, k, _ in listing(written, "Same as sandbox.yaml")}
    assert {("luigi_FetchTrain", k) for k in must} <= same
    assert {
        ("luigi_SandboxInfer", "return_timeseries"),
        ("luigi_SandboxInfer", "remove_tmpdir"),
    } <= same
    reasons = {(s, k): why for s, k, why in listing(written, "Not carried over")}
    logs = "the run dir holds every job's submit file and logs"
    polling = "a setting of law's job submission and polling (DAGMan submits and watches the jobs)"
    action = "a law command-line action, not a setting"
    fetch = {
        "log_file": logs, "condor_directory": logs, "job_log": logs, "poll_interval": polling,
        "print_status": action, "cancel_jobs": action, "dev": "handled by `build --dev`",
        "gpus": "GPU ids of law's machine: `run-local --gpus` gives them (a pool job gets its own)",
        "walltime": "how long law polls a workflow before it gives up: DAGMan waits",
        "max_runtime": "not a parameter of Aframe's tasks (law's example tasks define their "
        "own): nothing reads it",
        "htcondor_pool": "the pool law submits to: submit the DAG on one of its machines",
    }  # fmt: skip
    assert {k: reasons[("luigi_FetchTrain", k)] for k in fetch} == fetch
    assert reasons[("luigi_ExportLocal", "batch_file")] == (
        "not read: ExportLocal takes the batch file beside the weights"
    )
    assert reasons[("luigi_ExportLocal", "train_task")].startswith("the pipeline's training task")
    assert reasons[("luigi_SandboxInfer", "parallel_jobs")] == (
        "DeployInferLocal sets it from streams_per_gpu: stages.infer.max_jobs follows it"
    )
    assert reasons[("luigi_SandboxInfer", "gpus")].startswith("the Triton server's GPUs")
    assert reasons[("luigi_Train", "gpus")] == "handled by `build --gpus IDS`"


def test_a_task_s_workflow_settings_become_its_stage_s(tmp_path: Path) -> None:
    cfg = over(
        tmp_path,
        {
            "luigi_FetchTest": {"retries": "5", "parallel_jobs": "-1", "tasks_per_job": "1"},
            "luigi_TrainingWaveforms": {"retries": "1", "parallel_jobs": "3"},
            "luigi_ValidationWaveforms": {"tasks_per_job": "20", "image": "/images/data-2.sif"},
        },
    )
    tree = yaml.safe_load(lawcfg.import_law(cfg).text)
    assert tree["stages"] == {  # law's defaults (5, -1: no limit, 1) are the bundled ones
        "generate_training_waveforms": {"retry": 1, "max_jobs": 3},
        "generate_validation_waveforms": {"tasks_per_job": 20},
        # law passes no image on to DeployValidationWaveforms: the merge's own
        "merge_validation_waveforms": {"image": "/images/data-2.sif"},
    }


# --- build --gpus ------------------------------------------------------------------------------


def host_pipeline(tmp_path: Path, train: bool = True) -> Path:
    """A pipeline of host commands whose train stage records its GPUs."""
    record = f"{sys.executable} {PROGRAMS} record {{{{ dirs.out }}}}"
    stages: dict[str, Any] = {"prepare": {"command": f"{record}/prepare.json"}}
    if train:
        train_command = f"{record}/train.json"
        stages["train"] = {"after": ["prepare"], "command": train_command, "resources": {"gpus": 1}}
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "local",
                "dirs": {"out": "{{ run_dir }}/out"},
                "condor": {"container": "none", "use_oauth_services": "", "getenv": ["PATH"]},
                "stages": stages,
            },
            sort_keys=False,
        )
    )
    return config


def run_local(run_dir: Path, *args: str, visible: str = "7") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": visible}
    return subprocess.run(
        [sys.executable, "-m", "aframe_dag", "run-local", str(run_dir), *args],
        capture_output=True, text=True, check=False, env=env,
    )  # fmt: skip


def trained_on(run_dir: Path) -> str:
    (line,) = (run_dir / "out" / "train.json").read_text().splitlines()
    return str(json.loads(line)["CUDA_VISIBLE_DEVICES"])


def test_build_gpus_trains_on_them_and_run_local_uses_them(tmp_path: Path) -> None:
    config = host_pipeline(tmp_path)
    run_dir = tmp_path / "run"
    code, out, err = run_cli("build", str(config), "--run-dir", str(run_dir), "--gpus", "0,1")
    assert code == 0, err
    assert re.search(r"(?m)^  train +1 node, 2 GPUs each$", out), out
    assert "run-local on it trains on GPUs 0,1 (unless given --gpus)" in out
    assert "request_gpus = 2" in (run_dir / "train.sub").read_text().splitlines()
    assert (run_dir / ".aframe-dag" / "gpus").read_text() == "0,1\n"
    done = run_local(run_dir)  # CUDA_VISIBLE_DEVICES=7 here: the build's ids win
    assert done.returncode == 0, done.stderr
    assert trained_on(run_dir) == "0,1"

    again = tmp_path / "again"
    assert run_cli("build", str(config), "--run-dir", str(again), "--gpus", "0,1")[0] == 0
    done = run_local(again, "--gpus", "2,3")  # its own --gpus wins
    assert done.returncode == 0, done.stderr
    assert trained_on(again) == "2,3"


def test_a_build_without_gpus_forgets_them(tmp_path: Path) -> None:
    config = host_pipeline(tmp_path)
    run_dir = tmp_path / "run"
    assert run_cli("build", str(config), "--run-dir", str(run_dir), "--gpus", "0,1")[0] == 0
    assert run_cli("build", str(config), "--run-dir", str(run_dir))[0] == 0
    assert "request_gpus = 1" in (run_dir / "train.sub").read_text().splitlines()
    done = run_local(run_dir)
    assert done.returncode == 0, done.stderr
    assert trained_on(run_dir) == "7"  # CUDA_VISIBLE_DEVICES, as before


def test_build_gpus_is_ddp_as_setting_the_train_gpus(
    tmp_path: Path, image_dir: Path, ligo_env: None
) -> None:
    run_dir = tmp_path / "run"
    with_ids = run_dir_files(SANDBOX, run_dir, image_dir, "--gpus", "0,1")
    with_set = run_dir_files(SANDBOX, run_dir, image_dir, "--set", "stages.train.resources.gpus=2")
    assert "--trainer.strategy=ddp" in with_ids["train.sub"].decode()
    assert with_ids.pop(".aframe-dag/gpus") == b"0,1\n"
    assert with_set.pop(".aframe-dag/gpus") == b"\n"
    assert with_ids == with_set


def test_gpus_for_a_pipeline_without_train_is_an_error(tmp_path: Path) -> None:
    config = host_pipeline(tmp_path, train=False)
    run_dir = tmp_path / "run"
    message = fails("build", str(config), "--run-dir", str(run_dir), "--gpus", "0")
    assert message == "Error: --gpus: pipeline local has no train stage to train on them"
    assert not run_dir.exists()


def bad_flag(*args: str) -> str:
    """The CLI's one line for a bad flag (exit code 2, nothing on stdout)."""
    code, out, err = run_cli(*args)
    assert (code, out) == (2, ""), err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err.rstrip("\n")


NOT_AN_ID = "is not a GPU id (an index such as 0 or a GPU-/MIG- UUID); expected comma-separated ids"
BAD_GPUS = {  # --gpus VALUE: why it is refused
    "0,0": "each GPU may be named once, got '0,0'",
    "0,": f"'' {NOT_AN_ID}, got '0,'",
    "gpu0": f"'gpu0' {NOT_AN_ID}, got 'gpu0'",
    " ": f"'' {NOT_AN_ID}, got ' '",
}


@pytest.mark.parametrize("ids", ["", *BAD_GPUS])
def test_an_empty_or_malformed_build_gpus_is_a_bad_flag(tmp_path: Path, ids: str) -> None:
    config = host_pipeline(tmp_path)
    run_dir = tmp_path / "run"
    why = BAD_GPUS[ids] if ids.strip() else f"expected GPU ids such as 0,1, got {ids!r}"
    message = bad_flag("build", str(config), "--run-dir", str(run_dir), "--gpus", ids)
    assert message == f"Error: --gpus: {why} (see aframe-dag build --help)"
    assert not run_dir.exists()


def test_show_and_validate_take_build_s_gpus(tmp_path: Path) -> None:
    config = str(host_pipeline(tmp_path))
    code, shown, err = run_cli("show", config, "--gpus", "0,1")
    assert code == 0, err
    assert yaml.safe_load(shown)["stages"]["train"]["resources"]["gpus"] == 2
    assert run_cli("validate", config, "--gpus", "0,1")[0] == 0
    message = bad_flag("validate", config, "--gpus", "")
    assert (
        message
        == "Error: --gpus: expected GPU ids such as 0,1, got '' (see aframe-dag validate --help)"
    )


@pytest.mark.parametrize("ids", BAD_GPUS)
def test_a_malformed_run_local_gpus_is_a_bad_flag(tmp_path: Path, ids: str) -> None:
    run_dir = tmp_path / "run"
    assert run_cli("build", str(host_pipeline(tmp_path)), "--run-dir", str(run_dir))[0] == 0
    message = bad_flag("run-local", str(run_dir), "--gpus", ids)
    assert message == f"Error: --gpus: {BAD_GPUS[ids]} (see aframe-dag run-local --help)"
    assert not (run_dir / "out" / "prepare.json").exists()  # nothing ran


def test_run_local_gpus_empty_is_no_gpus(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    config = host_pipeline(tmp_path)
    assert run_cli("build", str(config), "--run-dir", str(run_dir), "--gpus", "0")[0] == 0
    done = run_local(run_dir, "--gpus", "")  # none: not the build's 0, nor CUDA_VISIBLE_DEVICES
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (
        "Error: train asks for 1 GPU(s) but run-local was given 0 (--gpus none); give it more"
    )


# --- README's "Coming from law" ----------------------------------------------------------------


def readme_commands() -> list[str]:
    """The aframe-dag command lines of the bash blocks in README's "Coming from law"."""
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Coming from law\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    return [line for block in blocks for line in block.splitlines() if line.strip()]


def test_readme_coming_from_law_commands_run(tmp_path: Path) -> None:
    commands = readme_commands()
    assert len(commands) == 9 and all(c.startswith("aframe-dag ") for c in commands), commands
    home = tmp_path / "home"
    first_run = home / "aframe" / "my-first-run"  # as aframe-init writes it
    first_run.mkdir(parents=True)
    shutil.copy(LAW / "base.cfg", first_run / "base.cfg")
    bbh = (LAW / "bbh.cfg").read_text()
    (first_run / "sandbox.cfg").write_text(bbh.replace("base.cfg", f"{first_run}/base.cfg"))
    images = tmp_path / "containers"  # $AFRAME_CONTAINER_ROOT, and ~/aframe/images/train.sif
    images.mkdir()
    for name in IMAGES:
        (images / name).touch()
    (home / "aframe" / "images").mkdir()
    (home / "aframe" / "images" / "train.sif").touch()
    checkout = home / "aframe-repo"  # --dev binds the checkout of $AFRAME_REPO
    for project in ("data", "train", "export", "infer", "plots"):
        (checkout / "projects" / project / project).mkdir(parents=True)
    (checkout / "pyproject.toml").write_text('[project]\nname = "aframe"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AFRAME_", "LIGO_", "WANDB"))}
    env.update(
        HOME=str(home),
        PATH=f"{Path(sys.executable).parent}:{env['PATH']}",
        AFRAME_CONTAINER_ROOT=str(images),
        AFRAME_REPO=str(checkout),
        LIGO_GROUP="ligo.dev.o4.cbc.allsky.aframe",
        LIGO_USERNAME="albert.einstein",
        WANDB_API_KEY="b" * 40,
    )
    said = {}
    for command in commands:
        if command.startswith("aframe-dag run-local "):
            command += " --dry-run"  # no apptainer here: what it would run
        done = subprocess.run(
            ["bash", "-c", command], capture_output=True, text=True, check=False, env=env,
            cwd=tmp_path,
        )  # fmt: skip
        assert done.returncode == 0, (command, done.stdout[-2000:], done.stderr)
        assert "Error" not in done.stderr, (command, done.stderr)
        said[command] = done.stdout
    imported = yaml.safe_load((first_run / "sandbox.yaml").read_text())
    assert imported == {"extends": str(SANDBOX)}
    assert (first_run / "dag" / "aframe.dag").is_file()
    assert (first_run / ".aframe-dag" / "gpus").read_text() == "0\n"
    trained = home / "aframe" / "results" / "my-first-luigi-run"
    assert (trained / ".aframe-dag" / "gpus").read_text() == "0,1\n"
    train = (trained / "train.sub").read_text()
    assert "--trainer.strategy=ddp" in train
    assert f" {home}/aframe/images/train.sif " in train
    assert "--config=/opt/aframe/projects/train/config.yaml" in train
    assert "--trainer.logger.name=my-first-luigi-run " in train  # --wandb-name
    remote = (home / "aframe" / "results" / "my-remote-run" / "train.sub").read_text()
    assert "request_gpus = 2" in remote.splitlines()
    accounting = (home / "aframe" / "runs" / "accounting" / "train.sub").read_text()
    assert "accounting_group = ligo.dev.o4.cbc.allsky.aframe" in accounting.splitlines()
    local = [c for c in said if c.startswith("aframe-dag run-local ~/aframe/my-first-run")]
    assert [line for line in said[local[0]].splitlines() if line.startswith("# train:")] == [
        f"# train: in {first_run}, 1 GPU(s)"
    ]
    assert not list(tmp_path.glob("*.yaml"))  # nothing written where it ran
