"""A planned stage: its items, node names and VARS (each computed once), and the plan."""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass, field
from pathlib import Path

from aframe_dag import completion, fanout, graph, quoting
from aframe_dag.config import Config, Stage


@dataclass(frozen=True)
class StagePlan:
    """One stage as it will be written: made once its items and submit text are known
    (`workflow.plan_stage`), never changed; its node names and VARS are computed once, on
    first use. What is complete is `judge`'s, apart."""

    name: str
    stage: Stage
    parents: list[str]
    spec: fanout.Spec | None
    fields: list[str]  # item fields the command uses, set per node through VARS
    waits_for: str | None = None  # input that does not exist yet: fan-out at run time
    items: list[fanout.Item] = field(default_factory=list)
    submit_text: str = ""
    entry_scripts: list[str] = field(default_factory=list)

    @property
    def runtime(self) -> bool:
        return self.waits_for is not None

    @property
    def subdag(self) -> bool:
        """Written as a sub-DAG: its fan-out waits for an input, or it has a service,
        which must start with its nodes, not with the whole workflow."""
        return self.runtime or self.stage.service is not None

    def dag_names(self) -> list[str]:
        """Its nodes' names in aframe.dag: a sub-DAG stage is one node there, a clustered
        stage's jobs are its nodes."""
        if self.subdag:
            return [self.name]
        return [c for c, _ in self.clusters()] if self.clustered else self.node_names()

    def tasks_text(self) -> str:
        """RUN/STAGE.tasks of a clustered stage: a line per item, `NODE field="value" ...`."""
        pairs = zip(self.node_names(), self.vars_texts(), strict=True)
        return "".join(f"{node} {text}\n" for node, text in pairs)

    @property
    def clustered(self) -> bool:
        """Its items run `tasks_per_job` to a job (RUN/STAGE.tasks lists them)."""
        return self.spec is not None and self.stage.tasks_per_job > 1

    def clusters(self) -> list[tuple[str, list[str]]]:
        """The jobs of a clustered stage: (STAGE-FIRST-LAST, its items' node names)."""
        names, k = self.node_names(), self.stage.tasks_per_job
        groups = [names[i : i + k] for i in range(0, len(names), k)]
        return [(f"{g[0]}-{g[-1].rpartition('-')[2]}", g) for g in groups]

    def vars_texts(self) -> list[str]:
        """Each node's VARS pairs as the DAG file writes them (computed once); also the
        node's part of its fingerprint. A clustered stage's items keep their raw values
        (its tasks file is read by the tasks wrapper, not by condor_submit)."""
        return self._vars_texts

    @functools.cached_property
    def _vars_texts(self) -> list[str]:
        if self.spec is None or self.runtime:
            return [""]
        where = f"stage {self.name} item"
        items = (
            _raw(self.items, self.fields, where)
            if self.clustered
            else _escaped(self.items, self.fields, where)
        )
        fields = self.fields
        if len(fields) == 1:
            (key,) = fields
            return [f'{key}="{item[key]}"' for item in items]
        if fields:
            # %-formatting: a third faster than str.format here (the keys are identifiers,
            # so the template holds no % of its own)
            template = " ".join(f'{key}="%s"' for key in fields)
            values = operator.itemgetter(*fields)
            return [template % row for row in map(values, items)]
        return [""] * len(items)

    def node_names(self) -> list[str]:
        """Names of this stage's nodes in the top-level DAG (computed once)."""
        return self._node_names

    @functools.cached_property
    def _node_names(self) -> list[str]:
        if self.runtime or self.spec is None:
            return [self.name]
        prefix = graph.node_name(self.name, "")  # STAGE-, then each item's index
        return [prefix + item["index"] for item in self.items]


@dataclass(frozen=True)
class Plan:
    config: Config
    run_dir: Path
    stages: list[StagePlan]
    # what is complete, by stage: none without a run dir's state, nor for a run-time stage
    judged: dict[str, completion.Judgement] = field(default_factory=dict)

    def stage(self, name: str) -> StagePlan:
        return next(s for s in self.stages if s.name == name)


def _raw(items: list[fanout.Item], fields: list[str], where: str) -> list[fanout.Item]:
    """Items with values escaped for a double-quoted VARS-like value only (a tasks file)."""
    for item in items:
        for key in fields:
            quoting.check_value(item[key], f"{where} {key}")
    special = [k for k in fields if any(c in i[k] for i in items for c in '"\\')]
    if not special:
        return items
    return [{**i, **{k: quoting.dag_escape(i[k]) for k in special}} for i in items]


def _escaped(items: list[fanout.Item], fields: list[str], where: str) -> list[fanout.Item]:
    """Items with VARS-escaped values; a field with nothing to escape is left as is."""
    special = [k for k in fields if quoting.needs_escape("".join([i[k] for i in items]))]
    if not special:
        return items
    return [{**i, **{k: quoting.vars_value(i[k], f"{where} {k}") for k in special}} for i in items]
