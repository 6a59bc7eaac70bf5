"""Hostile input, through the real CLI in a subprocess (so that no traceback can hide).

A bad config or flag must give a non-zero exit code and exactly one line on stderr,
"Error: ...", naming what is wrong and where (file:line, key path or flag), and must
leave nothing behind: no run dir where there was none, every file as it was where there
was one. An odd string that a field accepts must arrive unchanged in the generated files
or in the job that runs.

Adding a case is one entry: a command line in CASES (whole config files live in
tests/hostile/), a string in VALUES (each field of FIELDS must carry it or refuse it), or
a field in FIELDS.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import htcondor2
import pytest
import yaml

from aframe_dag.quoting import split_arguments

HOSTILE = Path(__file__).parent / "hostile"
RECORD = HOSTILE / "record.py"


def config(stages: str = "a: {command: echo hi}", top: str = "") -> str:
    """A host-mode config: `stages` is the YAML under `stages:`, `top` more top-level keys."""
    body = textwrap.indent(textwrap.dedent(stages).strip(), "  ")
    return f"name: t\ncondor: {{container: none}}\n{textwrap.dedent(top)}stages:\n{body}\n"


GOOD = config()


def cli(*args: str, cwd: Path, env: Mapping[str, str] = {}) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "aframe_dag", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        # a variable that $ENV(HOSTILE) would put into a job, were it expanded
        env={**os.environ, "PYTHONUTF8": "1", "HOSTILE": "leaked", **env},
        timeout=120,
        check=False,
    )


def error_line(done: subprocess.CompletedProcess[str], code: int) -> str:
    """The one line a refusal prints, without its "Error: "."""
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == code, (done.stdout, done.stderr)
    lines = done.stderr.split("\n")
    assert len(lines) == 2 and lines[1] == "", done.stderr  # one line, newline-terminated
    assert lines[0].startswith("Error: "), done.stderr
    return lines[0].removeprefix("Error: ")


def tree(root: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and directory (None) under `root`."""
    return {
        str(p.relative_to(root)): None if p.is_dir() else p.read_bytes() for p in root.rglob("*")
    }


# --- command lines -----------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """A command line on a config, and what must come of it.

    In config, args, files and error, <tmp> is the test's directory, <run> the run dir
    (<tmp>/run), <config> the config file and <built> a run dir built from GOOD, shared
    by the cases that only read it.
    """

    id: str
    config: str | bytes | Path = GOOD  # YAML text, raw bytes, or a file in tests/hostile/
    error: str | None = None  # regex the error line must match; None: must succeed
    args: tuple[str, ...] = ()  # after `build CONFIG --run-dir RUN`
    argv: tuple[str, ...] | None = None  # the whole command line instead
    code: int = 1
    # files made in <tmp> first (segments files, things in the way)
    files: Mapping[str, str | bytes] = dataclasses.field(default_factory=dict)
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    over: bool = False  # build GOOD into <run> first: a refused build must leave it intact
    writes: tuple[str, str] | None = None  # a file in <run> and a line it must hold
    lacks: tuple[str, str] | None = None  # ... and a text it must not hold
    fast: bool = False  # answers in under 10 s


SEGMENTS = "<tmp>/segments.txt"
# a template that, were it to escape the sandbox through OBJECT, would make <tmp>/PWNED
PWN = "{{{{ {}.system('touch <tmp>/PWNED') }}}}"
SEGMENT_STAGE = f"a: {{command: echo, foreach: {{segments: {{file: {SEGMENTS}}}}}}}"


def ts(extra: str) -> str:
    """A timeslides stage over <tmp>/segments.txt with these extra parameters."""
    generator = f"{{timeslides: {{segments: {SEGMENTS}, {extra}}}}}"
    return config(f"a: {{command: echo, foreach: {generator}}}")


CASES = [
    # -- files that are not YAML, or not a mapping
    Case("tabs", HOSTILE / "tabs.yaml", r"^<config>:4: invalid YAML: .*'\\t'"),
    Case("unclosed-quote", HOSTILE / "unclosed-quote.yaml", r"^<config>:\d+: invalid YAML: "),
    Case("unclosed-bracket", HOSTILE / "unclosed-bracket.yaml", r"^<config>:3: invalid YAML: "),
    Case("top-level-list", HOSTILE / "top-level-list.yaml", r"^<config>: the config must be a YAML mapping"),
    Case("empty-file", HOSTILE / "empty.yaml", r"^<config>: the config must be a YAML mapping"),
    Case("two-documents", HOSTILE / "two-documents.yaml", r"^<config>:4: invalid YAML: expected a single document in the stream, but found another document$"),
    # a PNG header, then random bytes: not text at all
    Case("binary", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xde\xad\xbe\xef", r"^<config>:1: not UTF-8 text \(byte 0x89\)$"),
    Case("latin-1", "name: café\nstages: {}\n".encode("latin-1"), r"^<config>:1: not UTF-8 text \(byte 0xe9\)$"),
    Case("nul-in-file", b"name: t\x00\n", r"^<config>:1: invalid YAML: character '\\x00' is not allowed$"),
    Case("python-tag", HOSTILE / "python-tag.yaml", r"^<config>:4: invalid YAML: could not determine a constructor"),
    Case("bad-date", HOSTILE / "bad-date.yaml", r"^<config>: invalid YAML: month must be in 1\.\.12$"),
    Case("5000-digits", config(top=f"params: {{x: 1{'0' * 5000}}}\n"), r"^<config>: invalid YAML: Exceeds the limit \(4300 digits\)"),
    Case("nested-1000-deep", config(top=f"params: {{x: {'[' * 1000}{']' * 1000}}}\n"), r"^<config>: invalid YAML: values nest too deep$", fast=True),
    Case("nested-100-deep", config(top=f"params: {{x: {'[' * 100}{']' * 100}}}\n"), r"^<config>:3: values nest more than 64 deep$"),
    Case("alias-loop", HOSTILE / "alias-loop.yaml", r"^<config>:4: a YAML alias refers to a value that holds it$"),
    Case("alias-bomb", HOSTILE / "alias-bomb.yaml", r"^<config>: more than 500000 values once aliases are expanded$", fast=True),
    Case("utf-8-bom", "\ufeff" + GOOD, writes=("aframe.dag", "JOB a <run>/a.sub")),
    # -- duplicate and colliding names
    Case("duplicate-stage", HOSTILE / "duplicate-stage.yaml", r"^<config>:6: duplicate key 'train'$"),
    Case("names-differ-in-case", config("train: {command: echo}\nTrain: {command: echo}"), r"^<config>:5: stages\.Train: 'Train' differs from stage 'train' only in case"),
    Case("set-adds-name-in-case", args=("--set", "stages.A.command=echo"), error=r"stages\.A: 'A' differs from stage 'a' only in case"),
    Case("dagman-keyword", config("a: {command: echo}\nchild: {command: echo, after: [a]}"), r"^<config>:5: stages\.child: a stage cannot be named 'child': DAGMan reserves"),
    Case("top-level-dag-name", config("AFRAME: {command: echo}"), r"stages\.AFRAME: a stage cannot be named 'AFRAME'.*aframe\.dag"),
    Case("dash-in-stage", config("fetch-train: {command: echo}"), r"^<config>:4: stages\.fetch-train: a stage name must start with a letter"),
    Case("no-stages", config().split("stages:")[0] + "stages: {}\n", r"^<config>:3: stages: the pipeline has no stages$"),
    # -- wrong types
    Case("string-for-int", config("a: {command: echo, resources: {cpus: '4'}}"), r"^<config>:4: stages\.a\.resources\.cpus: must be an integer, got '4'$"),
    Case("list-for-mapping", config("a: {command: echo, resources: [1, 2]}"), r"^<config>:4: stages\.a\.resources: must be a mapping of keys, got \[1, 2\]$"),
    Case("null-stage", config("a:"), r"^<config>:4: stages\.a: must be a mapping of keys, got None$"),
    Case("bool-for-memory", config("a: {command: echo, resources: {memory: yes}}"), r"^<config>:4: stages\.a\.resources\.memory: must be a string or an integer, got True$"),
    Case("empty-command", config("a: {command: ''}"), r"^stages\.a\.command: the command is empty$"),
    # -- huge, negative and zero numbers
    Case("inf-cpus", config("a: {command: echo, resources: {cpus: 1.0e+309}}"), r"stages\.a\.resources\.cpus: must be an integer, got inf$"),
    Case("10**30-cpus", config(f"a: {{command: echo, resources: {{cpus: {10**30}}}}}"), r"stages\.a\.resources\.cpus: must be <= 1024, got 1000000000000000000000000000000$"),
    Case("huge-memory", config("a: {command: echo, resources: {memory: 99999999999TB}}"), r"stages\.a\.resources\.memory: must be more than 0 and at most 1024TB"),
    Case("zero-memory", config("a: {command: echo, resources: {memory: 0GB}}"), r"stages\.a\.resources\.memory: must be more than 0"),
    Case("negative-cpus", config("a: {command: echo, resources: {cpus: -1}}"), r"^<config>:4: stages\.a\.resources\.cpus: must be >= 1, got -1$"),
    Case("negative-gpus", config("a: {command: echo, resources: {gpus: -1}}"), r"stages\.a\.resources\.gpus: must be >= 0, got -1$"),
    Case("zero-tasks-per-job", config("a: {command: echo, foreach: {count: {num_jobs: 2}}, tasks_per_job: 0}"), r"^<config>:4: stages\.a\.tasks_per_job: must be >= 1, got 0$"),
    Case("tasks-per-job-text", config("a: {command: echo, foreach: {count: {num_jobs: 2}}, tasks_per_job: many}"), r"stages\.a\.tasks_per_job: .*int"),
    Case("gpu-memory-negative", config("a: {command: echo, resources: {gpus: 1, gpu_memory: -1GB}}"), r"stages\.a\.resources\.gpu_memory: must be a number with a unit"),
    Case("max-gpu-memory-alone", config("a: {command: echo, resources: {gpus: 1, max_gpu_memory: 8GB}}"), r"^stages\.a\.resources\.max_gpu_memory: needs gpu_memory, the GPU memory to start at$"),
    Case("service-port-name", config("a: {command: echo, service: {command: serve, ports: [HTTP]}}"), r"stages\.a\.service\.ports: port name 'HTTP' must be lower-case"),
    Case("service-ports-repeat", config("a: {command: echo, service: {command: serve, ports: [http, http]}}"), r"stages\.a\.service\.ports: port names repeat"),
    Case("service-without-command", config("a: {command: echo, service: {ports: [http]}}"), r"stages\.a\.service\.command"),
    Case("wandb-unknown-stage", config(top="wandb: {enabled: true, stages: [trian]}\n"), r"wandb\.stages\.0: no stage 'trian'", env={"WANDB_MODE": "offline"}),
    Case("remote-unknown-stage", config(top="remote: {enabled: true, stages: [trian]}\n"), r"remote\.stages\.0: no stage 'trian'"),
    Case("secret-in-environment", config("a: {command: echo, environment: {API_TOKEN: abc}}"), r"^stages\.a\.environment: API_TOKEN is a secret and would be written into the \.sub file"),
    Case("dev-without-containers", argv=("build", "<config>", "--run-dir", "<run>", "--dev"), error=r"dev\.enabled: --dev binds a checkout into apptainer images"),
    Case("negative-retry", config("a: {command: echo, retry: -1}"), r"^<config>:4: stages\.a\.retry: must be >= 0, got -1$"),
    Case("zero-retry", config("a: {command: echo, retry: 0}"), lacks=("aframe.dag", "RETRY")),
    Case("inf-max-duration", config("a: {command: echo, foreach: {segments: {file: x, max_duration: .inf}}}"), r"stages\.a\.foreach\.segments\.max_duration: must be a finite number, got inf$"),
    Case("400-digit-signals", ts(f"shifts: [0, 1], psd_length: 64, num_signals: 1{'0' * 400}, spacing: 1, buffer: 0, waveform_duration: 1"), r"^stage a: numbers too large to count the nodes", files={SEGMENTS: "0 0 10000 10000\n"}),
    Case("newline-in-fan-out-input", config("a: {command: echo, foreach: {segments: {file: \"<tmp>/a\\nJOB b c\"}}}"), r"^<config>:4: stages\.a\.foreach\.segments: input file: contains a '\\n' character"),
    Case("native-string-param", config("a: {command: 'echo {{ item.v }}', foreach: {list: {v: ['{{ params.tag }}']}}}", top="params: {tag: '1e3'}\n"), writes=("aframe.dag", 'VARS a-0 v="1e3"')),
    # -- dependencies
    Case("cycle", config("a: {command: echo, after: [b]}\nb: {command: echo, after: [a]}"), r"^<config>:4: dependency cycle: a -> b -> a$"),
    Case("self-dependency", config("a: {command: echo, after: [a]}"), r"^<config>:4: stages\.a\.after: a stage cannot depend on itself$"),
    Case("unknown-after", config("fetch: {command: echo}\nb: {command: echo, after: [fecth]}"), r"^<config>:5: stages\.b\.after: unknown stage 'fecth'; did you mean 'fetch'\?$"),
    Case("near-target", config("train: {command: echo}"), r"^--target: unknown stage 'trian'; did you mean 'train'\?$", args=("--target", "trian")),
    Case("unknown-rerun", args=("--rerun", "zz"), error=r"^--rerun: unknown stage 'zz'$"),
    Case("newline-target", args=("--target", "a\nb"), error=r"^--target: unknown stage 'a\\nb'$"),
    # -- fan-out: empty, and far too big (refused before the nodes are made)
    Case("zero-jobs", config("a: {command: echo, foreach: {count: {num_jobs: 0}}}"), r"stages\.a\.foreach\.count\.num_jobs: must be >= 1, got 0$"),
    Case("empty-list", config("a: {command: echo, foreach: {list: {v: []}}}"), r"stages\.a\.foreach\.list: v must be a non-empty list of values$"),
    Case("empty-segments", config(SEGMENT_STAGE), r"^stage a: fan-out is empty \(no nodes from <tmp>/segments\.txt\)$", files={SEGMENTS: "# seg start stop duration\n"}),
    Case("zero-duration-segment", config(SEGMENT_STAGE), r"^stage a: <tmp>/segments\.txt:1: expected 'index start stop duration'", files={SEGMENTS: "0 100 100 0\n"}),
    Case("latin-1-segments", config(SEGMENT_STAGE), r"^stage a: <tmp>/segments\.txt:2: not a segments file \(not UTF-8 text\)$", files={SEGMENTS: b"0 0 10 10\n# caf\xe9\n"}),
    Case("no-usable-segment", ts("shifts: [0, 1], psd_length: 64, Tb: 100"), r"^stage a: Tb = 100 s cannot be reached: 0 shifts of 1 s give 0 s", files={SEGMENTS: "0 0 50 50\n"}),
    Case("10**6+1-jobs", config("a: {command: echo, foreach: {count: {num_jobs: 1000001}}}"), r"stages\.a\.foreach\.count\.num_jobs: must be <= 1000000, got 1000001$", fast=True),
    Case("10**10-product", config("a: {command: echo, foreach: {product: {x: '{{ range(100000) | list }}', y: '{{ range(100000) | list }}'}}}"), r"^stage a: fan-out of 10000000000 nodes exceeds the limit of 1000000", fast=True),
    Case("10**15-pieces", config(SEGMENT_STAGE.replace("}}}", ", max_duration: 1}}}")), r"^stage a: fan-out of over 1000000 nodes exceeds the limit of 1000000", files={SEGMENTS: "0 0 1e15 1e15\n"}, fast=True),
    Case("10**15-s-of-timeslides", ts("shifts: [0, 1], psd_length: 64, Tb: 1.0e+15"), r"^stage a: fan-out of over 1000000 nodes exceeds the limit of 1000000", files={SEGMENTS: "0 0 1e9 1e9\n"}, fast=True),
    # -- --set
    Case("set-without-equals", args=("--set", "stages.a.retry"), error=r"^--set 'stages\.a\.retry': expected dotted\.key=value$"),
    Case("set-bad-yaml", args=("--set", "name=[unclosed"), error=r"^--set name: value is not valid YAML: '\[unclosed'$"),
    Case("set-index-out-of-range", config("a: {command: echo}\nb: {command: echo, after: [a]}"), r"^--set stages\.b\.after\.3: '3' is not an index of the list$", args=("--set", "stages.b.after.3=a")),
    Case("set-empty-key", args=("--set", "stages..command=x"), error=r"^--set 'stages\.\.command=x': empty key in the dotted path$"),
    Case("set-inside-string", args=("--set", "stages.a.command.x=1"), error=r"^--set stages\.a\.command\.x: cannot set a key inside a non-mapping value$"),
    Case("set-unknown-key", args=("--set", "stages.a.retries=2"), error=r"^--set stages\.a\.retries: unknown key; did you mean 'retry'\?$"),
    Case("set-alias-loop", args=("--set", "params.x=&a [*a]"), error=r"^--set params\.x:1: a YAML alias refers to a value that holds it$"),
    # -- ${env:...}
    Case("env-unset", config(top="params: {x: '${env:HOSTILE_UNSET}'}\n"), r"^<config>:3: params\.x: environment variable HOSTILE_UNSET is not set \(export it, pass --set params\.x=VALUE"),
    Case("env-bad-name", config(top="params: {x: '${env:1X}'}\n"), r"^<config>:3: params\.x: malformed \$\{env:\.\.\.\} reference in '\$\{env:1X\}'$"),
    # -- extends
    Case("extends-cycle", HOSTILE / "extends-cycle-a.yaml", r"extends-cycle-b\.yaml:1: extends: extends-cycle-a\.yaml makes a cycle$"),
    Case("extends-itself", HOSTILE / "extends-self.yaml", r"^<config>:1: extends: extends-self\.yaml makes a cycle$"),
    Case("extends-missing", HOSTILE / "extends-missing.yaml", r"^<config>:2: extends: no such config file '.*no-such-parent\.yaml'$"),
    # -- unknown keys, with the near miss
    Case("unknown-top-level", config().replace("stages:", "stage:"), r"^<config>:3: stage: unknown key; did you mean 'stages'\?$"),
    Case("unknown-stage-key", config("a: {comand: echo}"), r"^<config>:4: stages\.a\.comand: unknown key; did you mean 'command'\?$"),
    Case("unknown-generator", config("a: {command: echo, foreach: {lst: {v: [1]}}}"), r"stages\.a\.foreach: unknown generator 'lst'.*; did you mean 'list'\?$"),
    # -- the run dir
    Case("run-dir-empty", argv=("build", "<config>", "--run-dir", ""), error=r"^the run dir is an empty path$"),
    Case("run-dir-is-a-file", argv=("build", "<config>", "--run-dir", "<config>"), code=2, error=r"^Invalid value for '--run-dir': Directory '<config>' is a file\."),
    Case("run-dir-below-a-file", argv=("build", "<config>", "--run-dir", "<config>/run"), error=r"^<config>/run: cannot create directory: Not a directory$"),
    Case("run-dir-not-utf-8", argv=("build", "<config>", "--run-dir", "<tmp>/r\udcff"), error=r"^run dir '<tmp>/r\\udcff' contains '\\udcff', which DAGMan's JOB and SCRIPT lines cannot carry"),
    Case("run-dir-holds-dagman-lock", over=True, files={"run/aframe.dag.lock": "pid 1\n"}, error=r"^<run>: holds DAGMan state \(aframe\.dag\.lock\); to resume, run condor_submit_dag"),
    Case("data-dir-below-a-file", config(top="dirs: {data: '<tmp>/file/data'}\n"), r"^<tmp>/file/data: cannot create directory: <tmp>/file is not a directory$", files={"file": "x"}),
    Case("data-dir-below-a-file-over-a-run-dir", config(top="dirs: {data: '<tmp>/file/data'}\n"), r"^<tmp>/file/data: cannot create directory", files={"file": "x"}, over=True),
    # -- run-local, expand and friends on a built run dir
    Case("gpus-not-ids", argv=("run-local", "<built>", "--gpus", "a,b"), code=2, error=r"^--gpus: 'a' is not a GPU id .*got 'a,b' \(see aframe-dag run-local --help\)$"),
    Case("gpus-negative", argv=("run-local", "<built>", "--gpus", "-1"), code=2, error=r"^--gpus: '-1' is not a GPU id"),
    Case("gpus-twice", argv=("run-local", "<built>", "--gpus", "0,1,0"), code=2, error=r"^--gpus: each GPU may be named once, got '0,1,0' \(see aframe-dag run-local --help\)$"),
    Case("cuda-visible-devices", argv=("run-local", "<built>"), env={"CUDA_VISIBLE_DEVICES": "x"}, error=r"^CUDA_VISIBLE_DEVICES \(or choose with --gpus\): 'x' is not a GPU id"),
    Case("jobs-zero", argv=("run-local", "<built>", "--jobs", "0"), code=2, error=r"^Invalid value for '--jobs' / '-j': 0 is not in the range x>=1\. \(see aframe-dag run-local --help\)$"),
    Case("run-local-missing-dir", argv=("run-local", "<tmp>/nowhere\nelse"), code=2, error=r"^Invalid value for 'RUN_DIR': Directory '<tmp>/nowhere\\nelse' does not exist\."),
    Case("run-local-not-a-run-dir", argv=("run-local", "<tmp>"), error=r"^<tmp>: no aframe\.dag \(run `aframe-dag build` first\)$"),
    Case("expand-unknown-stage", argv=("expand", "<built>", "zz"), error=r"^<built>/config\.yaml: no stage 'zz'$"),
    Case("validate-missing-file", argv=("validate", "<tmp>/no\nsuch.yaml"), error=r"^<tmp>/no\\nsuch\.yaml: no such config file$"),
    # -- configs are data: templates render in a sandbox (were any of these to run, it
    # would make <tmp>/PWNED, and the tree check below would see it)
    Case("template-globals", config(f"a: {{command: \"{PWN.format('cycler.__init__.__globals__.os')}\"}}"), r"^<config>:\d+: stages\.a\.command: 'cycler' is undefined$"),
    Case("template-dunder", config("a: {command: \"{{ ''.__class__.__mro__[1].__subclasses__() }}\"}"), r"^<config>:\d+: stages\.a\.command: access to attribute '__class__' of 'str' object is unsafe\.$"),
    Case("template-self", config(f"a: {{command: \"{PWN.format('self.__init__.__globals__.os')}\"}}"), r"^<config>:\d+: stages\.a\.command: access to attribute '__init__' of 'TemplateReference' object is unsafe\.$"),
    Case("template-in-dirs", config(top=f"dirs: {{d: \"{PWN.format('lipsum.__globals__.os')}\"}}\n"), r"^<config>:\d+: dirs\.d: 'lipsum' is undefined$"),
    Case("template-in-set", args=("--set", f"stages.a.command=echo {PWN.format('joiner.__init__.__globals__.os')}"), error=r"^--set stages\.a\.command: 'joiner' is undefined$"),
    Case("template-in-env", config("a: {command: 'echo ${env:HOSTILE_PAYLOAD}'}"), r"^<config>:\d+: stages\.a\.command: 'namespace' is undefined$", env={"HOSTILE_PAYLOAD": PWN.format("namespace.__init__.__globals__.os")}),
    Case("template-in-validate", config(f"a: {{command: \"{PWN.format('cycler.__init__.__globals__.os')}\"}}"), r"^<config>:\d+: stages\.a\.command: 'cycler' is undefined$", argv=("validate", "<config>")),
    Case("template-in-show", config(f"a: {{command: \"{PWN.format('cycler.__init__.__globals__.os')}\"}}"), argv=("show", "<config>")),
    Case("template-reads-environ", config("a: {command: \"echo {{ params.__class__.__init__.__globals__['os'].environ }}\"}"), r"^<config>:\d+: stages\.a\.command: params\.__class__ is undefined$"),
    Case("template-str-format", config("a: {command: \"{{ '{0.__class__}'.format(1) }}\"}"), r"^<config>:\d+: stages\.a\.command: access to attribute 'format' of 'str' object is unsafe\.$"),
    Case("template-set", config("a: {command: \"{% set x = 1 %}echo\"}"), r"^<config>:\d+: stages\.a\.command: line 1: \{% set %\} is not allowed in a config template$"),
    Case("template-macro", config("a: {command: \"{% macro m() %}{% endmacro %}echo\"}"), r"^<config>:\d+: stages\.a\.command: line 1: \{% macro %\} is not allowed in a config template$"),
    Case("template-include", config("a: {command: \"{% include '/etc/passwd' %}\"}"), r"^<config>:\d+: stages\.a\.command: line 1: \{% include %\} is not allowed in a config template$"),
    Case("template-unknown-filter", config("a: {command: \"{{ 'x' | center(10) }}\"}"), r"^<config>:\d+: stages\.a\.command: template syntax error: No filter named 'center'\.$"),
    Case("template-mutates", config(top="params: {v: [1]}\n", stages="a: {command: \"{{ params.v.append(2) }}\"}"), r"^<config>:\d+: stages\.a\.command: access to attribute 'append' of 'list' object is unsafe\.$"),
    # -- ... with bounded work: an error naming the key, not a hang or a MemoryError
    Case("template-10**10-characters", config("a: {command: \"{{ 'x' * 10**10 }}\"}"), r"^<config>:\d+: stages\.a\.command: the template makes a value of more than 1,000,000 characters$", fast=True),
    Case("template-range-10**12", config("a: {command: \"{% for i in range(10**12) %}x{% endfor %}\"}"), r"^<config>:\d+: stages\.a\.command: range\(\) of more than 100,000 items$", fast=True),
    Case("template-nested-loops", config("a: {command: \"{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}\"}"), r"^<config>:\d+: stages\.a\.command: the template takes more than 1,000,000 steps$", fast=True),
    Case("template-huge-power", config("a: {command: \"{{ 10 ** (10 ** 10) }}\"}"), r"^<config>:\d+: stages\.a\.command: 10 \*\* 10000000000 is too large a number$", fast=True),
    Case("template-format-width", config("a: {command: \"{{ '%0999999999d' % 1 }}\"}"), r"^<config>:\d+: stages\.a\.command: the template makes a value of more than 1,000,000 characters$", fast=True),
    Case("template-join-amplifies", config("a: {command: \"{{ range(99999) | join('x' * 999) }}\"}"), r"^<config>:\d+: stages\.a\.command: the template makes a value of more than 1,000,000 characters$", fast=True),
    Case("template-replace-amplifies", config("a: {command: \"{{ ('a' * 9999) | replace('a', 'b' * 9999) }}\"}"), r"^<config>:\d+: stages\.a\.command: the template makes a value of more than 1,000,000 characters$", fast=True),
    Case("template-concat-loop", config("a: {command: \"{% for i in range(9999) %}{{ ('x' * 999999) ~ ('y' * 9) }}{% endfor %}\"}"), r"^<config>:\d+: stages\.a\.command: the template makes a value of more than 1,000,000 characters$", fast=True),
    Case("template-in-generator", config("a: {command: echo, foreach: {list: {v: \"{{ range(10**7) | list }}\"}}}"), r"^<config>:\d+: stages\.a\.foreach\.list\.v: range\(\) of more than 100,000 items$", fast=True),
    # -- ... and reach their values as keys first: a param named like a dict method
    Case("param-named-items", config(top="params: {items: 5, keys: k, values: v, get: g}\n", stages="a: {command: \"echo {{ params.items }} {{ params.keys }} {{ params['values'] }} {{ params.get }}\"}"), writes=("a.sub", 'arguments = "echo 5 k v g"')),
    Case("param-method-not-there", config("a: {command: \"echo {{ params.items }}\"}"), r"^<config>:\d+: stages\.a\.command: params\.items is undefined$"),
    # -- files that are not regular files, and too large ones
    Case("config-dev-zero", argv=("validate", "/dev/zero"), error=r"^/dev/zero: cannot read: not a regular file \(a character device\)$", fast=True),
    Case("extends-a-directory", config(top="extends: <tmp>/d\n"), r"^<tmp>/d: cannot read: not a regular file \(a directory\)$", files={"d/x": ""}),
    Case("config-too-large", "name: t\n# " + "x" * (16 * 2**20) + "\n", r"^<config>: cannot read: larger than 16 MiB$", fast=True),
    Case("segments-file-is-a-directory", config(SEGMENT_STAGE), r"^stage a: <tmp>/segments\.txt: cannot read segments file: not a regular file \(a directory\)$", files={"segments.txt/x": ""}),
    Case("input-name-too-long", config(f"a: {{command: echo, foreach: {{segments: {{file: <tmp>/{'x' * 300}}}}}}}"), r"^stages\.a\.foreach\.segments: input <tmp>/x+: File name too long$"),
    # -- a run dir holding another pipeline, or stages this config does not have
    Case("other-pipeline", config().replace("name: t", "name: u"), r"^<run>: holds another pipeline's run: pipeline 't', not 'u'; build it in another run dir, or pass --force", over=True),
    Case("stage-not-in-config", config("b: {command: echo hi}"), r"^<run>: holds another pipeline's run: stages this config does not have \(a\); ", over=True),
    Case("other-pipeline-forced", config().replace("name: t", "name: u"), args=("--force",), over=True, writes=("aframe.dag", "aframe-dag u: the whole workflow")),
]  # fmt: skip


def _fill(text: str, places: Mapping[str, str]) -> str:
    for name, value in places.items():
        text = text.replace(name, value)
    return text


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run dir built from GOOD, for the cases that only read one."""
    tmp = tmp_path_factory.mktemp("built")
    (tmp / "good.yaml").write_text(GOOD)
    done = cli("build", "good.yaml", "--run-dir", "run", cwd=tmp)
    assert done.returncode == 0, done.stderr
    return tmp / "run"


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_case(case: Case, tmp_path: Path, built: Path) -> None:
    config_path = case.config if isinstance(case.config, Path) else tmp_path / "config.yaml"
    places = {
        "<tmp>": str(tmp_path),
        "<run>": str(tmp_path / "run"),
        "<config>": str(config_path),
        "<built>": str(built),
    }
    if isinstance(case.config, str):
        config_path.write_text(_fill(case.config, places), encoding="utf-8")
    elif isinstance(case.config, bytes):
        config_path.write_bytes(case.config)
    if case.over:
        (tmp_path / "good.yaml").write_text(GOOD)
        first = cli("build", "good.yaml", "--run-dir", "run", cwd=tmp_path)
        assert first.returncode == 0, first.stderr
    for name, content in case.files.items():
        path = Path(_fill(f"<tmp>/{name}" if "<tmp>" not in name else name, places))
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(_fill(content, places), encoding="utf-8")
    argv = case.argv or ("build", "<config>", "--run-dir", "<run>", *case.args)
    before = tree(tmp_path)

    started = time.monotonic()
    env = {name: _fill(value, places) for name, value in case.env.items()}
    done = cli(*(_fill(a, places) for a in argv), cwd=tmp_path, env=env)
    elapsed = time.monotonic() - started

    if case.error is None:
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
        for check, present in ((case.writes, True), (case.lacks, False)):
            if check:
                name, text = check
                assert (_fill(text, places) in (tmp_path / "run" / name).read_text()) == present
    else:
        line = error_line(done, case.code)
        escaped = {k: re.escape(v) for k, v in places.items()}
        assert re.search(_fill(case.error, escaped), line), line
        # nothing made, nothing changed: no run dir, no staging dir, no data dir
        assert tree(tmp_path) == before
    if case.fast:
        assert elapsed < 10, f"took {elapsed:.1f} s"


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 40
    assert len({case.id for case in CASES}) == len(CASES)


# --- strings in every field that reaches a generated file ---------------------------

# Strings each field must carry unchanged (or, where Field.takes says so, refuse by name)
VALUES = [
    "it's", 'say "hi"', "'\"'\"", "back\\slash", "ends\\", "two  spaces", " lead", "trail ",
    "tab\there", "x$(y)z", "$(", "$HOME", "a$$b", "${x}", "$(DOLLAR", "100%", "#hash",
    "a=b", "a,b;c", "*.hdf5", "[a]", "{a}", "`id`", "--flag", "ünïcödé ✓", "😀", "שלום",
    "a\u200db", "a\x85b", "a\u2028b", "a\x0cb", "a\xa0b", "a\x07b\x1b[0m\x7f",
    "{{ x }}{% if %}{# c #}", "",
    # condor_submit's macro functions, short: joined, VALUES must fit in one file name
    "$ENV(HOSTILE)", "$INT(1)", "$Fn(a)",
]  # fmt: skip
# ... and each of them, for the fields that take one string at a time: each must reach
# the job as written, never run
MACRO_FUNCTIONS = [
    "$ENV(HOSTILE)", "a$ENV(HOSTILE)b", "$RANDOM_INTEGER(1,9)", "$RANDOM_CHOICE(a,b)",
    "$CHOICE(0,a)", "$INT(3)", "$REAL(2)", "$SUBSTR(abc,1)", "$Fn(/a/b.c)", "$Fqa(x)",
    "$BASENAME(/a/b)", "$DIRNAME(/a/b)", "$EVAL(1+2)", "$ENV($ENV(HOSTILE))",
]  # fmt: skip
# What HTCondor's files cannot carry, refused wherever it is put
NEWLINE, NUL, MATCH_TIME, DOLLAR = "two\nlines", "nul\x00", "a$$(b)", "$(DOLLAR)"


def untemplated(value: str) -> bool:
    """A value that a field holding a Jinja template keeps as it is."""
    return not any(mark in value for mark in ("{{", "{%", "{#"))


def dag_path(value: str) -> bool:
    """A value that DAGMan's JOB lines can carry in a path (see workflow.check_dag_path)."""
    return not any(c in "$\"'\\" or c.isspace() or not c.isprintable() for c in value)


@dataclass(frozen=True)
class Build:
    """A config with strings in one field, and how to build it."""

    config: dict
    args: tuple[str, ...] = ()
    run_dir: str = "run"


@dataclass(frozen=True)
class Field:
    """Where strings go into a config, and where to find them after the build."""

    id: str
    make: Callable[[list[str], Path], Build]  # strings, <tmp> -> the build
    read: Callable[[Path], list[str]]  # <tmp> -> the strings as they arrived
    key: str  # regex of what a refusal names (key path or flag)
    refused: tuple[str, ...] = ()  # strings it must refuse (more in CASES)
    takes: Callable[[str], bool] = lambda value: True  # the VALUES it must carry
    joined: bool = False  # one string: the VALUES joined (the run dir, a condor key)
    run: bool = False  # run the DAG with run-local before reading


def host(stages: dict, **top: object) -> dict:
    return {"name": "t", "condor": {"container": "none"}, **top, "stages": stages}


def job(tmp: Path, *args: str, out: str = "out") -> list[str]:
    """A command: tests/hostile/record.py writes its arguments to <tmp>/OUT.json."""
    return ["{{ python }}", str(RECORD), f"{tmp}/{out}.json", *args]


def recorded(tmp: Path, key: str = "argv", out: str = "out") -> Any:
    return json.loads((tmp / f"{out}.json").read_text(encoding="utf-8"))[key]


def params(values: list[str]) -> list[str]:
    return [f"{{{{ params.v[{i}] }}}}" for i in range(len(values))]


def written(tmp: Path) -> dict:
    """The run dir's config.yaml."""
    return yaml.safe_load((tmp / "run" / "config.yaml").read_text(encoding="utf-8"))


def in_order(numbered: dict) -> list:
    """The values of {s0: .., s1: .., s10: ..} by number."""
    return [numbered[k] for k in sorted(numbered, key=lambda k: int(k.lstrip("ds")))]


def submitted(tmp: Path, key: str) -> list[str]:
    """`key` of each sN.sub as HTCondor reads it (macros expanded), by N."""
    files = {p.stem: p for p in (tmp / "run").glob("s*.sub")}
    return [htcondor2.Submit(p.read_text(encoding="utf-8")).expand(key) for p in in_order(files)]


def strip(text: str, prefix: str, suffix: str = "") -> str:
    assert text.startswith(prefix) and text.endswith(suffix), (text, prefix, suffix)
    return text[len(prefix) : len(text) - len(suffix)]


def touch(path: Path) -> None:
    if "\x00" not in str(path):  # refused before the file would be looked at
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()


# -- the fields: how each puts strings into a config, and reads them back


def argument(values: list[str], tmp: Path) -> Build:
    return Build(host({"a": {"command": job(tmp, *params(values))}}, params={"v": values}))


def string_command(values: list[str], tmp: Path) -> Build:
    command = " ".join(job(tmp, *params(values)))
    return Build(host({"a": {"command": command}}, params={"v": values}))


def environment(values: list[str], tmp: Path) -> Build:
    # the even ones in the stage's environment, the odd ones in condor's
    pairs = [(f"HOSTILE_{i}", p) for i, p in enumerate(params(values))]
    stage = {"command": job(tmp), "environment": dict(pairs[::2])}
    condor = {"container": "none", "environment": dict(pairs[1::2])}
    return Build(host({"a": stage}, params={"v": values}, condor=condor))


def read_environment(tmp: Path) -> list[str]:
    env = recorded(tmp, "env")
    return [env[f"HOSTILE_{i}"] for i in range(len(env))]


def item(values: list[str], tmp: Path) -> Build:
    stage = {
        "foreach": {"list": {"v": values}},
        "command": job(tmp, "{{ item.v }}", out="out-{{ item.index }}"),
    }
    return Build(host({"a": stage}))


def read_items(tmp: Path) -> list[str]:
    return [recorded(tmp, out=f"out-{i}")[0] for i in range(len(list(tmp.glob("out-*"))))]


def set_flags(values: list[str], tmp: Path) -> Build:
    flags = (a for i, v in enumerate(values) for a in ("--set", f"params.v.{i}={yaml_scalar(v)}"))
    config = host({"a": {"command": job(tmp, *params(values))}}, params={"v": [0] * len(values)})
    return Build(config, tuple(flags))


def stage_params(values: list[str], tmp: Path) -> Build:
    # the stage's own params (stages.a.params) over the config's, in its command
    stage = {"command": job(tmp, *params(values)), "params": {"v": values}}
    return Build(host({"a": stage}, params={"v": [0] * len(values)}))


def data_dirs(values: list[str], tmp: Path) -> Build:
    dirs = {f"d{i}": f"{tmp}/dirs/d-{v}" for i, v in enumerate(values)}
    return Build(host({"a": {"command": "true"}}, dirs=dirs))


def read_data_dirs(tmp: Path) -> list[str]:
    return [strip(d, f"{tmp}/dirs/d-") for d in in_order(written(tmp)["dirs"])]


def descriptions(values: list[str], tmp: Path) -> Build:
    return Build(
        host({f"s{i}": {"command": "true", "description": v} for i, v in enumerate(values)})
    )


def read_descriptions(tmp: Path) -> list[str]:
    return [s["description"] for s in in_order(written(tmp)["stages"])]


def outputs(values: list[str], tmp: Path) -> Build:
    paths = [tmp / "outputs" / f"o-{v}" for v in values]
    for path in paths:
        touch(path)  # so that the build finds each node complete (written DONE)
    return Build(
        host({f"s{i}": {"command": "true", "outputs": [str(p)]} for i, p in enumerate(paths)})
    )


def read_outputs(tmp: Path) -> list[str]:
    """The outputs of the nodes the build found complete."""
    dag = (tmp / "run" / "aframe.dag").read_text(encoding="utf-8").split("\n")
    done = {line.split()[1] for line in dag if line.startswith("JOB ") and line.endswith(" DONE")}
    stages = written(tmp)["stages"]
    names = in_order({name: name for name in stages})
    return [strip(stages[s]["outputs"][0], f"{tmp}/outputs/o-") for s in names if s in done]


def images(mode: str) -> Callable[[list[str], Path], Build]:
    def make(values: list[str], tmp: Path) -> Build:
        for value in values:
            touch(tmp / "images" / f"x-{value}.sif")
        stages = {f"s{i}": {"command": "true", "image": f"x-{v}.sif"} for i, v in enumerate(values)}
        condor = {"container": mode, "image_dir": f"{tmp}/images"}
        return Build({"name": "t", "condor": condor, "stages": stages})

    return make


def read_container_images(tmp: Path) -> list[str]:
    return [strip(i, f"{tmp}/images/x-", ".sif") for i in submitted(tmp, "container_image")]


def read_apptainer_images(tmp: Path) -> list[str]:
    argvs = [split_arguments(a) for a in submitted(tmp, "arguments")]
    images = [next(a for a in argv if a.endswith(".sif")) for argv in argvs]
    return [strip(i, f"{tmp}/images/x-", ".sif") for i in images]


def condor_values(values: list[str], tmp: Path) -> Build:
    (value,) = values
    touch(tmp / "x.sif")
    # the accounting tags and the oauth services have a format of their own (checked by
    # every build, see test_flags.py and test_tokens.py); the apptainer path is free-form
    condor = {
        "container": "apptainer",
        "apptainer": f"{tmp}/app-{value}",
        "accounting_group": "ligo.dev.o4.cbc.allsky",
        "accounting_group_user": "albert.einstein",
    }
    stages = {"s0": {"command": "true", "image": f"{tmp}/x.sif"}}
    return Build({"name": "t", "condor": condor, "stages": stages})


def read_condor_values(tmp: Path) -> list[str]:
    (executable,) = submitted(tmp, "executable")
    return [strip(executable, f"{tmp}/app-")]


def run_dir(values: list[str], tmp: Path) -> Build:
    (value,) = values
    return Build(host({"a": {"command": job(tmp)}}), run_dir=f"run-{value}")


def read_run_dir(tmp: Path) -> list[str]:
    return [strip(recorded(tmp, "cwd"), f"{tmp}/run-")]  # the job ran in it


def shorthand_flags(values: list[str], tmp: Path) -> Build:
    (value,) = values
    touch(tmp / f"i-{value}.sif")
    config = {
        "name": "t",
        "condor": {"container": "container-universe"},
        "stages": {"s0": {"command": "true"}},
    }
    return Build(config, ("--data-dir", f"d-{value}", "--image", f"s0={tmp}/i-{value}.sif"))


def read_shorthand_flags(tmp: Path) -> list[str]:
    (image,) = submitted(tmp, "container_image")
    data = strip(written(tmp)["dirs"]["data"], f"{tmp}/d-")
    return sorted({data, strip(image, f"{tmp}/i-", ".sif")})  # one, if both arrived


def checkpoint_resume(values: list[str], tmp: Path) -> Build:
    """The resume words, added to the command (by entry/resume.py) once the checkpoint is
    this build's: a first stage writes it after the build."""
    ckpt = f"{tmp}/last.ckpt"
    touch = "import sys; open(sys.argv[1], 'w').close()"
    stages = {
        "make": {"command": ["{{ python }}", "-c", touch, ckpt]},
        "a": {
            "after": ["make"],
            "command": job(tmp),
            "checkpoint": {"file": ckpt, "resume": values},
        },
    }
    return Build(host(stages))


def fanout_input(values: list[str], tmp: Path) -> Build:
    (value,) = values
    write = "import sys; open(sys.argv[1], 'w').write('0 100 300 200\\n')"
    stages = {
        "query": {"command": ["{{ python }}", "-c", write, "{{ params.segments }}"]},
        "fetch": {
            "after": ["query"],
            "foreach": {"segments": {"file": "{{ params.segments }}"}},
            "command": job(tmp, "{{ item.start }}"),
        },
    }
    return Build(host(stages, params={"segments": f"{tmp}/segments-{value}.txt"}))


def read_fanout_input(tmp: Path) -> list[str]:
    assert recorded(tmp) == ["100"]  # the PRE script read the file that query wrote
    return [strip(written(tmp)["params"]["segments"], f"{tmp}/segments-", ".txt")]


FIELDS = [
    Field("argument", argument, recorded, r"^stages\.a\.command: contains", (NEWLINE, NUL, MATCH_TIME, DOLLAR), run=True),
    Field("string-command", string_command, recorded, r"^stages\.a\.command: contains", (NEWLINE,), run=True),
    Field("environment", environment, read_environment, r"^stages\.a\.environment\.HOSTILE_0: contains", (NUL,), run=True),
    # foreach parameters are templates
    Field("item", item, read_items, r"^stage a item v: contains", (DOLLAR,), takes=untemplated, run=True),
    Field("--set", set_flags, recorded, r"^stages\.a\.command: contains", (NUL,), run=True),
    Field("stage-params", stage_params, recorded, r"^stages\.a\.command: contains", (NEWLINE, NUL, MATCH_TIME, DOLLAR), run=True),
    Field("dirs", data_dirs, read_data_dirs, r"^dirs\.d0: contains", (NUL,), takes=untemplated),
    # run-local reads each .sub
    Field("description", descriptions, read_descriptions, r"^stages\.s0\.description: contains", (MATCH_TIME,), run=True),
    Field("output", outputs, read_outputs, r"^stages\.s0\.outputs\.0: contains", (NEWLINE,), takes=untemplated),
    Field("image", images("container-universe"), read_container_images, r"^stages\.s0\.image: contains", (NEWLINE,)),
    Field("apptainer-image", images("apptainer"), read_apptainer_images, r"^stages\.s0\.image: contains"),
    Field("condor-values", condor_values, read_condor_values, r"^condor\.apptainer: (contains|starts or ends with whitespace)", (NEWLINE, " padded "), joined=True),
    Field("run-dir", run_dir, read_run_dir, r"^run dir '.*' contains '.*', which DAGMan's JOB and SCRIPT lines cannot carry", (NEWLINE, " ", "$(x)"), takes=dag_path, joined=True, run=True),
    Field("--data-dir-and---image", shorthand_flags, read_shorthand_flags, r"^dirs\.data: contains", (NEWLINE,), takes=untemplated, joined=True),
    Field("checkpoint-resume", checkpoint_resume, recorded, r"^stages\.a\.checkpoint\.resume\.0: contains", (NEWLINE, NUL, MATCH_TIME, DOLLAR), run=True),
    # refusals: the query stage's command refuses the path first; CASES has fetch's
    Field("fan-out-input", fanout_input, read_fanout_input, "", joined=True, run=True),
]  # fmt: skip


def yaml_scalar(value: str) -> str:
    """`value` as a YAML double-quoted scalar (what --set parses back to it)."""
    return yaml.safe_dump(value, default_style='"', allow_unicode=False, width=10**9).strip()


def dump(config: dict) -> str:
    """A config as YAML that reads back exactly: every string double-quoted and escaped
    (PyYAML's plain or single-quoted style loses a U+0085)."""
    return yaml.safe_dump(config, default_style='"', allow_unicode=False, width=10**9)


@pytest.mark.parametrize("field", FIELDS, ids=lambda f: f.id)
def test_values_arrive_unchanged(field: Field, tmp_path: Path) -> None:
    values = [v for v in VALUES if field.takes(v)]
    if field.joined:
        values = ["".join(values)]
    else:
        values += [v for v in MACRO_FUNCTIONS if field.takes(v)]
    made = field.make(values, tmp_path)
    (tmp_path / "config.yaml").write_text(dump(made.config), encoding="utf-8")
    done = cli("build", "config.yaml", "--run-dir", made.run_dir, *made.args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    if field.run:
        ran = cli("run-local", made.run_dir, "--jobs", "8", cwd=tmp_path)
        assert ran.returncode == 0, ran.stdout + ran.stderr
    assert field.read(tmp_path) == values


@pytest.mark.parametrize(
    ("field", "value"),
    [(f, v) for f in FIELDS for v in f.refused],
    ids=[f"{f.id}-{v!r}" for f in FIELDS for v in f.refused],
)
def test_values_refused_by_name(field: Field, value: str, tmp_path: Path) -> None:
    made = field.make([value], tmp_path)  # the files it needs, and nothing more
    (tmp_path / "config.yaml").write_text(dump(made.config), encoding="utf-8")
    before = tree(tmp_path)
    done = cli("build", "config.yaml", "--run-dir", made.run_dir, *made.args, cwd=tmp_path)
    line = error_line(done, 1)
    assert re.search(field.key, line), line
    assert tree(tmp_path) == before


def test_dotdot_is_resolved_as_cd_does(tmp_path: Path) -> None:
    """The run dir, dirs and images are absolute and normalised; x/../run makes no x."""
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.sif").touch()
    config = {
        "name": "t",
        "dirs": {"data": "{{ run_dir }}/../data/./train/.."},
        "condor": {"container": "container-universe", "image_dir": "images/../images"},
        # outputs are only looked for: they stay as written
        "stages": {"a": {"command": "true", "image": "../images/./a.sif", "outputs": ["o/../p"]}},
    }
    (tmp_path / "config.yaml").write_text(dump(config), encoding="utf-8")
    done = cli("build", "config.yaml", "--run-dir", "x/../run", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "x").exists()
    assert f"JOB a {tmp_path}/run/a.sub\n" in (tmp_path / "run" / "aframe.dag").read_text()
    resolved = written(tmp_path)
    assert resolved["dirs"] == {"data": f"{tmp_path}/data"}
    assert resolved["condor"]["image_dir"] == f"{tmp_path}/images"
    assert resolved["stages"]["a"]["image"] == f"{tmp_path}/images/a.sif"
    assert resolved["stages"]["a"]["outputs"] == ["o/../p"]
    sub = htcondor2.Submit((tmp_path / "run" / "a.sub").read_text(encoding="utf-8"))
    assert sub.expand("container_image") == f"{tmp_path}/images/a.sif"
    assert sub.expand("initialdir") == f"{tmp_path}/run"


@pytest.mark.parametrize("command", ["validate", "show", "build"])
def test_a_config_that_is_a_fifo_is_refused_at_once(command: str, tmp_path: Path) -> None:
    """Nothing writes to it: reading it would wait for ever."""
    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)
    args = ("--run-dir", "run") if command == "build" else ()
    started = time.monotonic()
    done = cli(command, str(fifo), *args, cwd=tmp_path)
    assert error_line(done, 1) == f"{fifo}: cannot read: not a regular file (a FIFO)"
    assert time.monotonic() - started < 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]


def test_a_param_named_like_a_dict_method_renders_the_same_on_every_build(
    tmp_path: Path,
) -> None:
    """`params.items` is the param: the command is the same on every build, so a rebuild
    of the finished run is all DONE (a method's `<built-in method ...>` never was)."""
    params = {"items": 5, "keys": "k", "values": [1, 2], "get": "g"}
    command = job(tmp_path, "{{ params.items }}", "{{ params.keys }}", "{{ params.values }}",
                  "{{ params.get }}")  # fmt: skip
    config = host({"a": {"command": command, "outputs": [f"{tmp_path}/out.json"]}}, params=params)
    (tmp_path / "config.yaml").write_text(dump(config), encoding="utf-8")
    for _ in range(2):
        done = cli("build", "config.yaml", "--run-dir", "run", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        ran = cli("run-local", "run", cwd=tmp_path)
        assert ran.returncode == 0, ran.stdout + ran.stderr
    assert recorded(tmp_path) == ["5", "k", "[1,2]", "g"]
    dag = (tmp_path / "run" / "aframe.dag").read_text()
    assert f"JOB a {tmp_path}/run/a.sub DONE\n" in dag


def test_a_rerun_reason_shows_hostile_values_as_they_are_and_runs_none(tmp_path: Path) -> None:
    """The inputs kept to explain a rerun (fingerprints.json) and the reason a build prints
    hold each value as written: no macro is expanded, nothing runs."""
    values = [v for v in VALUES if "\n" not in v] + MACRO_FUNCTIONS
    for label, listed in (("before", values), ("after", [*values, "$ENV(HOSTILE)"])):
        stages = {"a": {"command": job(tmp_path, *params(listed))}}
        config = host(stages, params={"v": listed})
        (tmp_path / "config.yaml").write_text(dump(config), encoding="utf-8")
        done = cli("build", "config.yaml", "--run-dir", "run", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert cli("run-local", "run", cwd=tmp_path).returncode == 0, label
        kept = json.loads((tmp_path / "run" / "fingerprints.json").read_text())["inputs"]
        (inputs,) = kept.values()
        assert json.loads(inputs["config"]["params.v"]) == listed
    assert recorded(tmp_path) == [*values, "$ENV(HOSTILE)"]  # the job saw them, unexpanded
    reason = next(line for line in done.stdout.splitlines() if line.startswith("  a "))
    assert "to run (params.v [" in reason, reason
    assert '"$ENV(HOSTILE)"]' in reason and "leaked" not in done.stdout + done.stderr


def test_a_secret_a_template_names_never_reaches_the_records(tmp_path: Path) -> None:
    """A param whose value is a secret is refused before any file is written, the records
    (the inputs kept to explain a rerun) among them."""
    secret = "hostile-secret-value-42"
    stages = {"a": {"command": "{% if params.token %}true{% endif %}"}}
    (tmp_path / "config.yaml").write_text(dump(host(stages, params={"token": secret})))
    done = cli("build", "config.yaml", "--run-dir", "run", cwd=tmp_path,
               env={"API_TOKEN": secret})  # fmt: skip
    assert done.returncode == 1
    assert "would hold the value of $API_TOKEN, a secret" in done.stderr
    assert not (tmp_path / "run" / "fingerprints.json").exists()
