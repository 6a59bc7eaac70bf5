"""`import-law`: a law/luigi `.cfg` (the `[core] inherit` chain, `&::` references) as
an aframe-dag config that extends the closest bundled one and sets only what differs.

The cfg is read as law reads it: Python's ConfigParser (keys as written, `=` or `:`,
whole-line comments, one file's sections and keys each once), `[core] inherit` files
first (relative to the file naming them, `$VAR`/`${VAR}` and `~` expanded), then the
file itself over them; a value that is all `&::section::key` or `&::key` is that key's.
`luigi_X` sections are task X's parameters. An empty value is unset (luigi's None);
others are read as JSON or Python literals (`["H1", "L1"]`, `true`, `500_000`) where the
aframe-dag key holds no string. Every key is mapped (RULES) or ignored with a reason;
a task section aframe-dag has no stage for, or a key it does not know, is an error. A
param that tasks set otherwise is `params.KEY` at the value most of them give, and the
others' stages' own (`stages.STAGE.params.KEY`): law gives each task its own value.
"""

from __future__ import annotations

import ast
import configparser
import json
import os
import re
import textwrap
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from aframe_dag import explain, render, write
from aframe_dag.config import (
    QUANTITY,
    Resources,
    Stage,
    bundled_configs,
    find_config,
    read_user_file,
    read_yaml,
)
from aframe_dag.errors import ConfigError, one_line
from aframe_dag.schema import unknown_key

MAX_CFG_BYTES = 4 * 2**20
BUNDLES = ("sandbox.yaml", "bns.yaml")  # the first is the root the others extend
REF = re.compile(r"&(?:::(?P<section>[^:]+))?::(?P<option>.+)")  # law's option reference
ENV = re.compile(r"\\\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")
FLAG_VALUE = re.compile(r"[A-Za-z0-9_.:/+-]+")  # a value written into a command: one word
# hermes resolves a relative Triton image here (when not beside the working directory)
CVMFS_ML4GW = "/cvmfs/singularity.opensciencegrid.org/ml4gw/"
# luigi's own sections (scheduler, worker, ...): nothing a task reads
LUIGI_OWN = {"core", "worker", "scheduler", "retcode", "email", "smtp", "logging"}


# --- where each cfg key goes ------------------------------------------------------


@dataclass(frozen=True)
class Place:
    """A cfg key's place in an aframe-dag config: a key path, or the `--flag=VALUE` word
    of the command at that path."""

    path: tuple[str, ...]
    flag: str = ""
    convert: Callable[[str], Any] | None = None  # text -> value (raises ValueError)
    bundled_means: str | None = None  # the law value that the bundled config stands for
    # a param: the stages besides its task's own that read the task's value (it names
    # the files they read)
    readers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Ignore:
    reason: str


@dataclass(frozen=True)
class Must:
    """A key aframe-dag supports with one value only."""

    value: Any
    reason: str


@dataclass(frozen=True)
class Refuse:
    reason: str


Rule = Place | Ignore | Must | Refuse


@dataclass(frozen=True)
class Section:
    keys: dict[str, Rule]
    other: Rule | None = None  # for keys not in `keys`; None: an unknown key is an error
    stages: tuple[str, ...] = ()  # the stages doing the task's work: they read its params


def _quantity(unit: str) -> Callable[[str], str]:
    """HTCondor's request_memory (MB) or request_disk (KB): a bare number is in `unit`."""

    def convert(text: str) -> str:
        text = text.strip()
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            text += unit
        match = QUANTITY.fullmatch(text)
        if not match:
            raise ValueError(f"must be a number with a unit (K, M, G, T), e.g. 16GB; got {text!r}")
        return f"{match.group(1)}{match.group(2).upper()}B"

    return convert


def _count(text: str) -> int:
    value = _literal(text)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"must be a whole number, got {text!r}")
    return value


def _positive(text: str) -> int:
    value = _count(text)
    if value < 1:
        raise ValueError(f"must be a whole number >= 1, got {text!r}")
    return value


def _at_once(text: str) -> int | None:
    """law's parallel_jobs: -1 (its default) is no limit."""
    return None if text.strip() == "-1" else _positive(text)


def _under(name: str) -> Callable[[str], str]:
    """A task's directory that aframe-dag keeps at DIR/`name`: DIR."""

    def convert(text: str) -> str:
        parent, _, last = text.rstrip("/").rpartition("/")
        if last != name or not parent:
            raise ValueError(f"aframe-dag keeps it at DIR/{name}: give DIR/{name}, got {text!r}")
        return parent

    return convert


def _tags(text: str) -> list[str]:
    return [tag.strip() for tag in text.split(",") if tag.strip()]


def _triton_image(text: str) -> str:
    return text if text.startswith("/") else CVMFS_ML4GW + text


def _params(*names: str) -> dict[str, Rule]:
    return {name: Place(("params", name)) for name in names}


def _resources(stage: str) -> dict[str, Rule]:
    """A law task's condor settings: its stage's resources."""
    resources = ("stages", stage, "resources")
    return {
        "workflow": Must(
            "htcondor",
            "every aframe-dag stage is an HTCondor job (`run-local` runs the same jobs on "
            "this machine): remove the key or set htcondor",
        ),
        "request_memory": Place((*resources, "memory"), convert=_quantity("MB")),
        "request_disk": Place((*resources, "disk"), convert=_quantity("KB")),
        "request_cpus": Place((*resources, "cpus"), convert=_count),
        "request_gpus": Place((*resources, "gpus"), convert=_count),
    }


NOT_READ = "not a parameter of the task: nothing reads it"
LOGS = "the run dir holds every job's submit file and logs"
LAW_ACTION = "a law command-line action, not a setting"
LAW_JOBS = "a setting of law's job submission and polling (DAGMan submits and watches the jobs)"
EVERY_NODE = "law's way to run or accept part of a workflow: every node of a DAG must succeed"
GPU_IDS = "GPU ids of law's machine: `run-local --gpus` gives them (a pool job gets its own)"
TRAIN_TASK = "the pipeline's training task: the train stage (`--train-remote`: remote training)"


def _workflow(stage: str) -> dict[str, Rule]:
    """A law condor workflow's settings (Aframe's LDGCondorWorkflow, law's HTCondorWorkflow
    and remote workflow): its stage's resources, retries and throttle, every job's
    accounting, and law's job handling."""
    at = ("stages", stage)
    return {
        **_resources(stage),
        "retries": Place((*at, "retry"), convert=_count),
        "tasks_per_job": Place((*at, "tasks_per_job"), convert=_positive),
        "parallel_jobs": Place((*at, "max_jobs"), convert=_at_once),
        "accounting_group": Place(("condor", "accounting_group")),
        "accounting_group_user": Place(("condor", "accounting_group_user")),
        "condor_directory": Ignore(LOGS),
        "htcondor_pool": Ignore("the pool law submits to: submit the DAG on one of its machines"),
        "htcondor_scheduler": Ignore("the schedd law submits to: submit the DAG on its machine"),
        "acceptance": Must(1.0, EVERY_NODE),
        "tolerance": Must(0.0, EVERY_NODE),
        "branch": Must(-1, EVERY_NODE),
        "branches": Must("", EVERY_NODE),
        "pilot": Ignore("how law resolves a workflow's requirements (DAGMan's edges are fixed)"),
        "walltime": Ignore("how long law polls a workflow before it gives up: DAGMan waits"),
        "max_runtime": Ignore(
            "not a parameter of Aframe's tasks (law's example tasks define their own): "
            "nothing reads it"
        ),
        **dict.fromkeys(("cancel_jobs", "cleanup_jobs"), Ignore(LAW_ACTION)),
        **dict.fromkeys(
            ("no_poll", "submission_threads", "poll_interval", "poll_fails", "job_workers"),
            Ignore(LAW_JOBS),
        ),
        **dict.fromkeys(
            ("shuffle_jobs", "ignore_submission", "transfer_logs", "clear_logs"), Ignore(LAW_JOBS)
        ),
    }


def _task(stage: str) -> dict[str, Rule]:
    """What every Aframe task has (AframeSingularityTask, law's Task): the image of its own
    job (law passes no image on to the tasks it requires), the image dir, --dev and the
    GPU ids, law's log file and command-line actions."""
    return {
        "image": Place(("stages", stage, "image")),
        "container_root": Place(("condor", "image_dir"), bundled_means="$AFRAME_CONTAINER_ROOT"),
        "dev": Ignore("handled by `build --dev`"),
        "gpus": Ignore(GPU_IDS),
        "log_file": Ignore(LOGS),
        **dict.fromkeys(
            ("print_deps", "print_status", "print_output", "remove_output", "fetch_output"),
            Ignore(LAW_ACTION),
        ),
    }


def _data(stage: str, job: str) -> dict[str, Rule]:
    """An Aframe data task whose jobs are `stage` and whose own job is `job`."""
    return {**_workflow(stage), **_task(job), "job_log": Ignore(LOGS)}


def _fetch(which: str, readers: tuple[str, ...]) -> dict[str, Rule]:
    """FetchTrain or FetchTest (Fetch, with Query's parameters)."""
    background = ("dirs", f"{which}_background")
    return {
        **_params("sample_rate", "flag", "ifos", "channels"),
        "max_duration": Place(("params", "max_duration"), readers=readers),
        "data_dir": Place(background, convert=_under("background")),
        "segments_file": Place(background, convert=_under("segments.txt")),
        "prefix": Must("background", "aframe-dag's stages read background-START-DURATION.hdf5"),
        **_data(f"fetch_{which}", f"fetch_{which}"),
    }


def _flag(stage: str, flag: str) -> Place:
    return Place(("stages", stage, "command"), flag=flag)


WAVEFORMS = _params(
    "sample_rate", "prior", "waveform_duration", "minimum_frequency", "reference_frequency",
    "waveform_approximant", "right_pad",
)  # fmt: skip
K8S = "Kubernetes training (TrainRemote) only: `build --train-remote` uses stages.train.resources"
SCHEDULER = Ignore("a luigi scheduler setting")
# the validation waveforms' PSD file is the last one FetchTrain writes; the testing
# waveforms and inference read each FetchTest file: they read its max_duration
TRAIN_READERS = ("generate_validation_waveforms",)
TEST_READERS = ("generate_testing_waveforms", "infer")

RULES: dict[str, Section] = {
    "luigi_FetchTrain": Section(
        {
            **_fetch("train", TRAIN_READERS),
            "start": Place(("params", "train_start")),
            "end": Place(("params", "train_stop")),
            "min_duration": _flag("query_train", "--min_duration"),
        },
        stages=("query_train", "fetch_train"),
    ),
    "luigi_FetchTest": Section(
        {
            **_fetch("test", TEST_READERS),
            "start": Place(("params", "train_stop")),
            "end": Place(("params", "test_stop")),
            "min_duration": _flag("query_test", "--min_duration"),
        },
        stages=("query_test", "fetch_test"),
    ),
    "luigi_TrainingWaveforms": Section(
        {
            **WAVEFORMS,
            "num_jobs": Place(
                ("stages", "generate_training_waveforms", "foreach", "count", "num_jobs")
            ),
            "num_signals": Place(
                ("stages", "generate_training_waveforms", "foreach", "count", "num_signals")
            ),
            "output_dir": Place(("dirs", "train_waveforms")),
            "tmp_dir": Place(("dirs", "tmp"), convert=_under("training_waveforms")),
            **_data("generate_training_waveforms", "merge_training_waveforms"),
        },
        stages=("generate_training_waveforms", "merge_training_waveforms"),
    ),
    "luigi_ValidationWaveforms": Section(
        {
            **WAVEFORMS,
            **_params("ifos", "highpass", "lowpass", "snr_threshold", "max_num_samples"),
            "num_jobs": Place(
                ("stages", "generate_validation_waveforms", "foreach", "count", "num_jobs")
            ),
            "num_signals": Place(
                ("stages", "generate_validation_waveforms", "foreach", "count", "num_signals")
            ),
            "background_dir": Place(("dirs", "train_background")),
            "output_dir": Place(("dirs", "train_waveforms")),
            "tmp_dir": Place(("dirs", "tmp"), convert=_under("val")),
            **_data("generate_validation_waveforms", "merge_validation_waveforms"),
        },
        stages=("generate_validation_waveforms", "merge_validation_waveforms"),
    ),
    "luigi_TestingWaveforms": Section(
        {
            **WAVEFORMS,
            **_params("ifos", "highpass", "lowpass", "snr_threshold", "max_num_samples"),
            **_params("shifts", "spacing", "buffer", "seed"),
            "start": Place(("params", "train_stop")),
            "end": Place(("params", "test_stop")),
            "psd_length": Place(("params", "inference_psd_length")),
            "num_signals": Place(
                ("stages", "generate_testing_waveforms", "foreach", "timeslides", "num_signals")
            ),
            "jitter": _flag("generate_testing_waveforms", "--jitter"),
            "background_dir": Place(("dirs", "test_background")),
            "output_dir": Place(("dirs", "test_waveforms")),
            **_data("generate_testing_waveforms", "merge_testing_waveforms"),
        },
        stages=("generate_testing_waveforms", "merge_testing_waveforms"),
    ),
    "luigi_Train": Section(
        {
            **_params("ifos", "fftlength", "kernel_length", "sample_rate", "highpass", "lowpass"),
            **_params("fduration", "seed", "train_config"),
            "run_dir": Place(("dirs", "train_run")),
            "background_dir": Place(("dirs", "train_background")),
            "waveforms_dir": Place(("dirs", "train_waveforms")),
            "precompute_train_waveforms": Must(
                True, "aframe-dag's train stage reads precomputed training waveforms"
            ),
            "use_wandb": Ignore("handled by `build --use-wandb`"),
            "q": Ignore(NOT_READ),
            **{key: Ignore(K8S) for key in ("remote_image", "cpus_per_gpu", "memory_per_cpu")},
            **{key: Ignore(K8S) for key in ("min_gpu_memory", "use_init_container")},
            **{key: Ignore(K8S) for key in ("git_url", "git_ref")},
            **_resources("train"),
            **_task("train"),
            "gpus": Ignore("handled by `build --gpus IDS`"),
            "data_dir": Refuse(
                "older Aframe's training data dir: give background_dir = DIR/background "
                "and waveforms_dir = DIR instead"
            ),
        },
        stages=("train",),
    ),
    "luigi_ExportLocal": Section(
        {
            **_params("fduration", "kernel_length", "inference_sampling_rate", "sample_rate"),
            **_params("ifos", "streams_per_gpu", "export_config"),
            "batch_size": Place(("params", "inference_batch_size")),
            "psd_length": Place(("params", "inference_psd_length")),
            "platform": _flag("export", "--platform"),
            "repository_directory": Place(("dirs", "results"), convert=_under("model_repo")),
            "highpass": Ignore(
                "ExportLocal never passes it on: export.yaml sets the preprocessor's"
            ),
            "fftlength": Ignore(f"{NOT_READ} (export.yaml sets the preprocessor's)"),
            **{key: Ignore(NOT_READ) for key in ("q", "aframe_instances", "preproc_instances")},
            "clean": Ignore(NOT_READ),
            "batch_file": Ignore("not read: ExportLocal takes the batch file beside the weights"),
            "train_task": Ignore(TRAIN_TASK),
            **_task("export"),
        },
        stages=("export",),
    ),
    "luigi_SandboxInfer": Section(
        {
            **_params("fduration", "ifos", "inference_sampling_rate", "Tb", "shifts"),
            **_params("streams_per_gpu", "rate_per_gpu"),
            "batch_size": Place(("params", "inference_batch_size")),
            "psd_length": Place(("params", "inference_psd_length")),
            "cluster_window_length": _flag("infer", "--postprocessor.cluster_window_length"),
            "integration_window_length": _flag(
                "infer", "--postprocessor.integration_window_length"
            ),
            "model_name": _flag("infer", "--client.model_name"),
            "model_version": _flag("infer", "--client.model_version"),
            "zero_lag": Place(("stages", "infer", "foreach", "timeslides", "zero_lag")),
            "triton_image": Place(
                ("stages", "infer", "service", "image"),
                convert=_triton_image,
                bundled_means="hermes/tritonserver:23.01",
            ),
            "sequence_id": Ignore("not read: the inference Sequence derives its own ids"),
            "output_dir": Place(("dirs", "results")),
            "return_timeseries": Must(False, "aframe-dag's inference writes no timeseries"),
            "remove_tmpdir": Must(True, "aggregate_infer deletes the parts it gathers"),
            "train_task": Ignore(TRAIN_TASK),
            **_workflow("infer"),
            "parallel_jobs": Ignore(
                "DeployInferLocal sets it from streams_per_gpu: stages.infer.max_jobs follows it"
            ),
            **_task("aggregate_infer"),  # SandboxInfer is Infer, which aggregates
            "gpus": Ignore(
                "the Triton server's GPUs on law's machine: here the server is a job of its "
                "own (stages.infer.service)"
            ),
        },
        stages=("infer", "aggregate_infer"),
    ),
    "luigi_SandboxSV": Section(
        {
            **_params("mass_combos", "ifos"),
            "source_prior": Place(("params", "prior")),
            "dt": Place(
                ("stages", "sensitive_volume", "command"), flag="--dt", bundled_means="inf"
            ),
            "output_dir": Place(("dirs", "results"), convert=_under("plots")),
            "train_task": Ignore(TRAIN_TASK),
            **_task("sensitive_volume"),
        },
        stages=("sensitive_volume",),
    ),
    "luigi_wandb": Section(
        {
            **{key: Place(("wandb", key)) for key in ("entity", "project", "name", "group")},
            "tags": Place(("wandb", "tags"), convert=_tags),
            "api_key": Ignore(
                "a secret: export WANDB_API_KEY (jobs get it by name, never in a file)"
            ),
            "username": Ignore("not passed to the W&B logger"),
        }
    ),
    "luigi_paths": Section(
        {
            "train_background_dir": Place(("dirs", "train_background")),
            "train_waveforms_dir": Place(("dirs", "train_waveforms")),
            "train_rundir": Place(("dirs", "train_run")),
            "test_background_dir": Place(("dirs", "test_background")),
            "test_waveforms_dir": Place(("dirs", "test_waveforms")),
            "results_dir": Place(("dirs", "results")),
            "tmp_dir": Place(("dirs", "tmp")),
            "condor_dir": Ignore("the run dir holds the submit files and logs"),
        }
    ),
    "luigi_core": Section(
        {
            "inherit": Ignore(
                "not read by law, which follows [core] inherit only: nothing is inherited "
                "from the file it names"
            )
        },
        other=SCHEDULER,
    ),
    "core": Section(
        {
            "inherit": Ignore("followed: the files it names are read first"),
            "extend": Refuse("[core] extend is not supported: inherit the file instead"),
        },
        other=Ignore("a law setting"),
    ),
}
STAGE_DEFAULTS = {f.name: f.default for f in fields(Stage) if f.default is not MISSING}
BASE = "luigi_base"  # shared values: read by tasks only through &::luigi_base:: references


def _rule(section: str) -> Section | None:
    if section in RULES:
        return RULES[section]
    if section == BASE:
        return Section({}, other=Ignore(""))  # its reason depends on the references
    if section.startswith("luigi_") and section[len("luigi_") :] in LUIGI_OWN:
        return Section({}, other=SCHEDULER)
    if not section.startswith("luigi_"):
        return Section({}, other=Ignore("a law setting (law passes no such section to tasks)"))
    return None


def places() -> list[Place]:
    """Every place a cfg key can go (its condor settings' included)."""
    return [rule for s in RULES.values() for rule in s.keys.values() if isinstance(rule, Place)]


# --- reading the cfg, as law does ----------------------------------------------------


@dataclass(frozen=True)
class Value:
    text: str | None  # None: a key with no `=` (unset, as an empty value)
    where: str  # file:line


@dataclass
class Cfg:
    values: dict[str, dict[str, Value]] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)  # section -> file:line

    def merge(self, other: Cfg) -> None:
        """`other` over this one, key by key (law's inherit: the inheriting file wins)."""
        for section, keys in other.values.items():
            self.values.setdefault(section, {}).update(keys)
            self.headers[section] = other.headers[section]


class _Parser(configparser.ConfigParser):
    def optionxform(self, optionstr: str) -> str:
        return optionstr  # law keeps keys as written


def read_cfg(path: Path, chain: tuple[Path, ...] = ()) -> Cfg:
    """A cfg and the files it inherits, merged as law merges them."""
    own = _parse(path)
    merged = Cfg()
    inherit = own.values.get("core", {}).get("inherit")
    if inherit is not None:  # a comma-separated list, as law's
        for name in filter(None, (n.strip() for n in (inherit.text or "").split(","))):
            parent = _inherited(name, path, inherit.where)
            if parent.resolve() in (*chain, path.resolve()):
                raise ConfigError(f"{inherit.where}: [core] inherit: {name} makes a cycle")
            merged.merge(read_cfg(parent, (*chain, path.resolve())))
    merged.merge(own)
    return merged


def _inherited(name: str, path: Path, where: str) -> Path:
    def variable(match: re.Match[str]) -> str:
        if match.group(0) == "\\$":
            return "$"
        variable_name = match.group(1) or match.group(2)
        if variable_name not in os.environ:
            raise ConfigError(
                f"{where}: [core] inherit: environment variable {variable_name} is not set "
                f"(export it, or write the path)"
            )
        return os.environ[variable_name]

    parent = Path(ENV.sub(variable, name)).expanduser()
    parent = parent if parent.is_absolute() else path.parent / parent
    if not parent.is_file():
        raise ConfigError(f"{where}: [core] inherit: no such file {str(parent)!r}")
    return parent


def _parse(path: Path) -> Cfg:
    text = read_user_file(path, MAX_CFG_BYTES, "law cfg file")
    # no interpolation (law cfgs refer with &::), no DEFAULT section (a [DEFAULT] is then
    # a section like any other, named in an error, never spread into every task)
    parser = _Parser(allow_no_value=True, interpolation=None, default_section="\n")
    try:
        parser.read_string(text, source=str(path))
    except configparser.MissingSectionHeaderError as exc:
        raise ConfigError(
            f"{path}:{exc.lineno}: not in a [section]: {exc.line.strip()!r}"
        ) from None
    except configparser.DuplicateSectionError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: [{exc.section}] appears twice") from None
    except configparser.DuplicateOptionError as exc:
        raise ConfigError(
            f"{path}:{exc.lineno}: [{exc.section}] {exc.option}: set twice in the section"
        ) from None
    except configparser.ParsingError as exc:
        number, line = exc.errors[0]
        raise ConfigError(f"{path}:{number}: cannot read {line.strip()!r} (key = value)") from None
    lines = _lines(text, parser)
    cfg = Cfg()
    for section in parser.sections():
        cfg.headers[section] = f"{path}:{lines[(section, None)]}"
        cfg.values[section] = {
            key: Value(parser.get(section, key), f"{path}:{lines.get((section, key), '?')}")
            for key in parser.options(section)
        }
    return cfg


def _lines(text: str, parser: configparser.ConfigParser) -> dict[tuple[str, str | None], int]:
    """The line of each section header and key (ConfigParser keeps none)."""
    found: dict[tuple[str, str | None], int] = {}
    section = ""
    for number, line in enumerate(text.split("\n"), 1):
        stripped = line.strip()
        if not stripped or stripped[0] in "#;" or line[0].isspace():  # continuations too
            continue
        header = parser.SECTCRE.match(stripped)
        if header:
            section = header.group("header")
            found.setdefault((section, None), number)
        else:
            found.setdefault((section, re.split(r"[=:]", stripped, maxsplit=1)[0].strip()), number)
    return found


def resolve(cfg: Cfg, section: str, key: str) -> tuple[str | None, list[tuple[str, str]]]:
    """A key's text, its `&::` references followed, and the keys on the way (the last is
    the one that holds the text)."""
    seen = [(section, key)]
    while True:
        value = cfg.values[section][key]
        match = REF.fullmatch(value.text.strip()) if value.text else None
        if not match:
            return value.text, seen
        target = (match.group("section") or section, match.group("option"))
        if target in seen:
            cycle = " -> ".join(f"[{s}] {k}" for s, k in [*seen, target])
            raise ConfigError(f"{value.where}: [{section}] {key}: references make a cycle: {cycle}")
        if target[1] not in cfg.values.get(target[0], {}):
            unread = cfg.values.get("luigi_core", {}).get("inherit")
            note = (
                f" (law reads no [luigi_core] inherit: nothing was inherited from "
                f"{(unread.text or '').strip()})"
                if unread is not None
                else ""
            )
            raise ConfigError(
                f"{value.where}: [{section}] {key}: refers to [{target[0]}] {target[1]}, "
                f"which is not set{note}"
            )
        section, key = target
        seen.append(target)


def _literal(text: str) -> Any:
    """A JSON or Python literal (`["H1", "L1"]`, `true`, `500_000`), else the text."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for parse in (json.loads, ast.literal_eval):
        try:
            value = parse(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        if _plain(value):
            return _lists(value)
    return text


def _plain(value: Any) -> bool:
    if isinstance(value, list | tuple):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, bool | int | float | str)


def _lists(value: Any) -> Any:
    return [_lists(v) for v in value] if isinstance(value, list | tuple) else value


def _env(text: str) -> str:
    """law expands `$VAR` and `~` when a task reads the value: aframe-dag, at build."""

    def variable(match: re.Match[str]) -> str:
        if match.group(0) == "\\$":
            return "$"
        return "${env:" + (match.group(1) or match.group(2)) + "}"

    text = ENV.sub(variable, text)
    return str(Path(text).expanduser()) if text.startswith("~") else text


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    number = (int, float)
    if isinstance(a, number) and isinstance(b, number):
        return isinstance(a, bool) == isinstance(b, bool) and a == b
    return type(a) is type(b) and a == b


# --- what the bundled configs hold ------------------------------------------------------


def _at(data: dict[str, Any], place: Place) -> Any:
    node: Any = data
    for key in place.path:
        node = node.get(key) if isinstance(node, dict) else None
    if node is None and len(place.path) == 3 and place.path[0] == "stages":
        node = STAGE_DEFAULTS.get(place.path[2])  # a stage's setting it leaves unset
    if place.path[-2:-1] == ("resources",):  # as the cfg's are: 16GB, not 16 GB
        node = getattr(Resources(), place.path[-1]) if node is None else node
        return place.convert(str(node)) if place.convert is not None else node
    if place.flag:
        found = re.search(rf"(?<!\S){re.escape(place.flag)}=(\S+)", node or "")
        if not found:  # the bundled config changed: the tests say so
            raise ConfigError(f"the bundled stages.{place.path[1]}.command has no {place.flag}")
        return _literal(found.group(1))
    return node


def _with_flags(command: str, flags: dict[str, str]) -> str:
    for flag, text in flags.items():
        word = f"{flag}={text}"
        command = re.sub(rf"(?<!\S){re.escape(flag)}=\S+", word.replace("\\", "\\\\"), command)
    return command


# --- importing ------------------------------------------------------------------------

Key = tuple[tuple[str, ...], str]  # a place's path and flag


@dataclass
class Given:
    """What the cfg says for one place: its value and the keys that say it."""

    place: Place
    value: Any
    text: str  # as written (a command's flag takes it so)
    keys: list[str]  # "[luigi_Train] kernel_length"
    wheres: list[str]
    origins: set[str] = field(default_factory=set)  # the keys its references led to
    derived: bool = False  # computed from other keys' values
    own: bool = False  # a stage's own value of a param (stages.STAGE.params.KEY)


@dataclass(frozen=True)
class Imported:
    """An imported config: its YAML text, the bundled config it extends, and counts."""

    text: str
    extends: str  # as written: a bundled config's name, or its path
    values: int  # values it sets
    ignored: int  # cfg keys it does not carry over


def import_law(
    cfg_path: str | Path, output: str | Path | None = None, force: bool = False
) -> Imported:
    """Import a law cfg; with `output`, write it there (an existing file only with `force`)."""
    cfg_path = Path(cfg_path)
    out = Path(output) if output is not None else None
    if out is not None and out.exists() and not force:
        raise ConfigError(f"{out}: exists; pass --force to replace it")
    cfg = read_cfg(cfg_path)
    bundles = {name: read_yaml(bundled_configs() / name)[0] for name in BUNDLES}
    root = bundles[BUNDLES[0]]
    given, same, ignored = _given(cfg, root)
    _derive(given, root)
    choices = []
    for name, data in bundles.items():
        differing = {_key(p) for p in places() if not _same(_at(data, p), _at(root, p))}
        if differing <= set(given):  # every value it changes, the cfg sets too
            changed = [g for g in given.values() if g.own or not _same(g.value, _at(data, g.place))]
            choices.append((len(changed), name, data, changed))
    _, name, data, changed = min(choices, key=lambda choice: choice[0])  # a tie: the first
    same += [
        _entry(k) for g in given.values() if g not in changed and not g.derived for k in g.keys
    ]
    extends = _extends(name, out)
    listed = (_listing(same, cfg), _listing(ignored, cfg))
    text = _text(cfg_path, name, extends, data, changed, *listed)
    if out is not None:
        write.write_file(out, text)
    return Imported(text, extends, len(changed), len(ignored))


def _key(place: Place) -> Key:
    return place.path, place.flag


Entry = tuple[str, str, str]  # a cfg key listed in a comment: section, key, why


def _entry(label: str, why: str = "") -> Entry:
    section, _, key = label[1:].partition("] ")
    return section, key, why


def _given(cfg: Cfg, root: dict[str, Any]) -> tuple[dict[Key, Given], list[Entry], list[Entry]]:
    """Each place's value from the cfg (a param that tasks set otherwise: their stages' own
    too), the keys that change nothing, and the ignored keys with their reasons."""
    values: dict[Key, list[Given]] = {}  # each place's values, one Given for each
    same: list[Entry] = []
    ignored: list[Entry] = []
    referred: set[tuple[str, str]] = set()
    for section, keys in cfg.values.items():
        spec = _rule(section)
        if spec is None:
            tasks = ", ".join(s for s in RULES if s.startswith("luigi_") and s[6].isupper())
            raise ConfigError(
                f"{cfg.headers[section]}: [{section}]: aframe-dag has no stage for task "
                f"{section[len('luigi_') :]} (it maps {tasks})"
            )
        for key, value in keys.items():
            label = f"[{section}] {key}"
            rule = spec.keys.get(key, spec.other)
            if rule is None:
                raise ConfigError(f"{value.where}: {label}: {unknown_key(key, list(spec.keys))}")
            if isinstance(rule, Refuse):
                raise ConfigError(f"{value.where}: {label}: {rule.reason}")
            if isinstance(rule, Ignore):
                if section != BASE:  # listed below, once all references are known
                    ignored.append((section, key, rule.reason))
                continue
            raw, chain = resolve(cfg, section, key)
            referred |= set(chain)
            origin = chain[-1]
            text = (raw or "").strip()
            if isinstance(rule, Must):
                if not _same(_literal(text), rule.value):
                    raise ConfigError(f"{value.where}: {label}: {text!r}: {rule.reason}")
                same.append((section, key, ""))
                continue
            item = _value(rule, text, root, value.where, label)
            if item is UNSET:
                same.append((section, key, "empty: unset, as the bundled config's"))
                continue
            origins = {f"[{origin[0]}] {origin[1]}"} if origin != (section, key) else set()
            found = values.setdefault(_key(rule), [])
            known = next((g for g in found if _same(g.value, item)), None)
            if known is None:
                found.append(Given(rule, item, text, [label], [value.where], origins))
                continue
            known.keys.append(label)
            known.wheres.append(value.where)
            known.origins |= origins
    given: dict[Key, Given] = {}
    for place, found in values.items():
        # the value most keys give (a tie: one read through a reference, then the first)
        shared = max(found, key=lambda g: (len(g.keys), bool(g.origins)))
        given[place] = shared
        for other in found:
            if other is not shared:
                _own(given, shared, other, root)
    for key in cfg.values.get(BASE, {}):
        read = (BASE, key) in referred
        reason = "shared: read through the task keys that refer to it" if read else (
            "no task key that aframe-dag reads refers to it"
        )  # fmt: skip
        ignored.append((BASE, key, reason))
    return given, same, ignored


def _own(given: dict[Key, Given], shared: Given, other: Given, root: dict[str, Any]) -> None:
    """Tasks that set a param otherwise than the rest: as law gives each task its own value,
    each stage of theirs that reads the param gets it (stages.STAGE.params.KEY)."""
    place = other.place

    def differs(why: str) -> ConfigError:
        return ConfigError(
            f"{other.wheres[0]}: {other.keys[0]}: {_flow(other.value)} differs from "
            f"{shared.keys[0]} = {_flow(shared.value)} ({shared.wheres[0]}); {why}"
        )

    if place.path[0] != "params" or place.flag:
        where = ".".join(place.path) + (f" {place.flag}" if place.flag else "")
        raise differs(f"aframe-dag has one {where}: give both the same value")
    name = place.path[1]
    for label, where in zip(other.keys, other.wheres, strict=True):
        section, key, _ = _entry(label)
        rule = RULES[section].keys[key]
        candidates = (*RULES[section].stages, *(rule.readers if isinstance(rule, Place) else ()))
        stages = [s for s in candidates if _reads(root["stages"][s], name)]
        if not stages:
            raise differs(
                f"no stage of {section[len('luigi_') :]} ({', '.join(candidates)}) reads "
                f"params.{name}: give both the same value"
            )
        for stage in stages:
            path = ("stages", stage, "params", name)
            known = given.get((path, ""))
            if known is None:
                given[(path, "")] = Given(
                    Place(path), other.value, other.text, [label], [where], other.origins, own=True
                )
            elif _same(known.value, other.value):
                known.keys.append(label)
                known.wheres.append(where)
            else:
                raise differs(f"stage {stage} reads one params.{name}: give both the same value")


def _reads(stage: dict[str, Any], name: str) -> bool:
    """Whether a bundled stage's templates name params.`name` (or all of params)."""
    found = render.referenced_keys(explain.strings(stage), ("params",))
    return f"params.{name}" in found or "params" in found


UNSET = object()  # an empty value of a place that holds no None: the bundled value stands


def _value(place: Place, text: str, root: dict[str, Any], where: str, label: str) -> Any:
    """A place's value from its cfg text; empty: None (luigi's) for a param, else UNSET."""
    if not text:
        return None if place.path[0] == "params" else UNSET
    if text == place.bundled_means:
        return _at(root, place)
    try:
        if place.convert is not None:
            return place.convert(_env(text))
        if place.flag and not FLAG_VALUE.fullmatch(text):
            raise ValueError(
                f"{text!r} cannot go into the command (one word of A-Z a-z 0-9 ._:/+-)"
            )
    except ValueError as exc:
        raise ConfigError(f"{where}: {label}: {exc}") from None
    # a value takes the type of the bundled one (as luigi's takes its parameter's); dirs
    # and W&B settings are text
    text_only = place.path[0] in ("dirs", "wandb") or isinstance(_at(root, place), str)
    if place.flag or not text_only:
        value = _literal(text)
        return _env(value) if isinstance(value, str) else value
    return _env(text)


def _derive(given: dict[Key, Given], root: dict[str, Any]) -> None:
    """DeployInferLocal runs 2 * (streams_per_gpu * GPUs // 2) inference jobs at once."""
    streams = given.get(_key(Place(("stages", "infer", "params", "streams_per_gpu"))))
    streams = streams or given.get(_key(Place(("params", "streams_per_gpu"))))
    if streams is None:
        return
    if not isinstance(streams.value, int) or isinstance(streams.value, bool):
        raise ConfigError(f"{streams.wheres[0]}: {streams.keys[0]}: must be a whole number")
    place = Place(("stages", "infer", "max_jobs"))
    jobs = 2 * (streams.value * root["params"]["server_gpus"] // 2)
    keys = [f"DeployInferLocal's 2 * (streams_per_gpu * server_gpus // 2): {streams.keys[0]}"]
    given[_key(place)] = Given(place, jobs, str(jobs), keys, streams.wheres[:1], derived=True)


def _extends(name: str, out: Path | None) -> str:
    """The bundled config by name if the imported file finds it so (written in the working
    directory, with no file of that name there), else by its path: printed, it may be
    saved anywhere, and a file named like the bundled one would extend itself."""
    bundled = bundled_configs() / name
    if out is None:
        return str(bundled)
    beside = out.parent / name
    if beside.absolute() == out.absolute():
        return str(bundled)
    found = find_config(beside)
    return name if found.exists() and found.resolve() == bundled.resolve() else str(bundled)


def _listing(entries: list[Entry], cfg: Cfg) -> list[str]:
    """Entries as comment lines, `[section] key, key: why`, a line per section and reason
    in the cfg's order (wrapped)."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for section in cfg.values:
        for entry_section, key, why in entries:
            if entry_section == section:
                grouped.setdefault((section, why), []).append(key)
    lines = []
    for (section, why), keys in grouped.items():
        text = one_line(f"[{section}] {', '.join(keys)}" + (f": {why}" if why else ""))
        lines += textwrap.wrap(text, 96, initial_indent="#   ", subsequent_indent="#     ")
    return lines


ORDER = ("params", "dirs", "condor", "wandb", "stages")  # as the bundled configs


def _text(
    cfg_path: Path,
    name: str,
    extends: str,
    data: dict[str, Any],
    changed: list[Given],
    same: list[str],
    ignored: list[str],
) -> str:
    tree: dict[str, Any] = {}
    notes: dict[tuple[str, ...], list[str]] = {}
    flags: dict[tuple[str, ...], dict[str, str]] = {}
    for given in sorted(changed, key=lambda g: ORDER.index(g.place.path[0])):
        path, note = given.place.path, ", ".join(given.keys)
        if given.origins:
            note += f" (= {', '.join(sorted(given.origins))})"
        if given.place.flag:
            flags.setdefault(path, {})[given.place.flag] = given.text
            note = f"{given.place.flag}: {note}"
        else:
            _put(tree, path, given.value)
        notes.setdefault(path, []).append(note)
    for path, words in flags.items():
        node: Any = data
        for key in path:
            node = node[key]
        _put(tree, path, _with_flags(node, words))
    if "stages" in tree:  # in the bundled config's order
        tree["stages"] = {s: tree["stages"][s] for s in data["stages"] if s in tree["stages"]}
    lines = [
        f"# {one_line(str(cfg_path))}, a law cfg, imported by `aframe-dag import-law`: what",
        f"# differs from the bundled {name}, each value with the cfg keys it comes from.",
        f"extends: {_flow(extends)}",
        *_emit(tree, notes, ()),
    ]
    for title, items in ((f"Same as {name}", same), ("Not carried over", ignored)):
        if items:
            lines += ["", f"# {title}:", *items]
    text = "\n".join(lines) + "\n"
    if yaml.safe_load(text) != {"extends": extends, **tree}:  # a value YAML reads otherwise
        raise ConfigError(f"{cfg_path}: a value cannot be written as YAML unchanged")
    return text


def _put(tree: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


def _emit(node: dict[str, Any], notes: dict[tuple[str, ...], list[str]], path: tuple) -> list:
    lines: list[str] = []
    pad = "  " * len(path)
    for key, value in node.items():
        here = (*path, key)
        note = one_line("; ".join(notes.get(here, [])))
        if isinstance(value, dict):
            lines += [f"{pad}{key}:", *_emit(value, notes, here)]
        elif key == "command":  # the bundled command with the cfg's words in it
            lines.append(f"{pad}# {note}")
            if _foldable(value):
                lines += [f"{pad}{key}: >-", *(f"{pad}  {w}" for w in re.split(" (?=--)", value))]
            else:
                lines.append(f"{pad}{key}: {_flow(value)}")
        else:
            lines.append(f"{pad}{key}: {_flow(value)}" + (f"  # {note}" if note else ""))
    return lines


def _foldable(text: Any) -> bool:
    """Whether YAML's folded block (`>-`, lines joined by one space) gives `text` back."""
    return isinstance(text, str) and text == text.strip() and "  " not in text and (
        text.isprintable()
    )  # fmt: skip


def _flow(value: Any) -> str:
    """A value as one line of YAML."""
    style = (
        '"' if isinstance(value, str) and not (value.isascii() and value.isprintable()) else None
    )
    text = yaml.safe_dump(
        value, default_flow_style=True, default_style=style, allow_unicode=True, width=2**30
    )
    return text.removesuffix("\n...\n").removesuffix("\n")
