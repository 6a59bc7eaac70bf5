"""Stage dependencies: order, cycles, targets, and node names."""

from __future__ import annotations

import difflib
import heapq
from collections.abc import Callable, Iterable, Mapping, Sequence

from aframe_dag.errors import GraphError


def unknown_stage(name: str, known: Iterable[str], what: str) -> GraphError:
    """`WHAT: unknown stage NAME`, with the nearest stage of `known`."""
    hint = difflib.get_close_matches(name, list(known), n=1)
    suffix = f"; did you mean {hint[0]!r}?" if hint else ""
    return GraphError(f"{what}: unknown stage {name!r}{suffix}")


def check_dependencies(
    after: Mapping[str, Sequence[str]], where: Callable[[str], str] = lambda stage: ""
) -> None:
    """Every dependency names a stage, none names itself, and there is no cycle.

    `where(stage)` prefixes an error with the place of that stage's `after` (file:line).
    """
    for stage, parents in after.items():
        key = f"{where(stage)}stages.{stage}.after"
        for parent in parents:
            if parent == stage:
                raise GraphError(f"{key}: a stage cannot depend on itself")
            if parent not in after:
                raise unknown_stage(parent, after, key)
    cycle = find_cycle(after)
    if cycle:
        raise GraphError(f"{where(cycle[0])}dependency cycle: " + " -> ".join(cycle))


def find_cycle(after: Mapping[str, Sequence[str]]) -> list[str]:
    """One dependency cycle as [a, b, ..., a] (a needs b ...), or [] if there is none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(stage: str) -> list[str]:
        state[stage] = 1
        path.append(stage)
        for parent in after[stage]:
            if state.get(parent) == 1:
                return [*path[path.index(parent) :], parent]
            if parent not in state:
                cycle = visit(parent)
                if cycle:
                    return cycle
        path.pop()
        state[stage] = 2
        return []

    for stage in after:
        if stage not in state:
            cycle = visit(stage)
            if cycle:
                return cycle
    return []


def topological_order(after: Mapping[str, Sequence[str]]) -> list[str]:
    """Stages with parents first; among the ready, the config's order (deterministic)."""
    position = {name: i for i, name in enumerate(after)}
    pending = {name: len(set(parents)) for name, parents in after.items()}
    children: dict[str, list[str]] = {name: [] for name in after}
    for name, parents in after.items():
        for parent in set(parents):
            children[parent].append(name)
    ready = [(position[n], n) for n, count in pending.items() if count == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        _, name = heapq.heappop(ready)
        order.append(name)
        for child in children[name]:
            pending[child] -= 1
            if pending[child] == 0:
                heapq.heappush(ready, (position[child], child))
    if len(order) != len(after):
        cycle = find_cycle(after)
        raise GraphError("dependency cycle: " + " -> ".join(cycle))
    return order


def with_ancestors(after: Mapping[str, Sequence[str]], targets: Sequence[str]) -> set[str]:
    """The target stages and every stage they need."""
    selected: set[str] = set()
    todo = list(targets)
    for target in targets:
        if target not in after:
            raise unknown_stage(target, after, "--target")
    while todo:
        stage = todo.pop()
        if stage not in selected:
            selected.add(stage)
            todo.extend(after[stage])
    return selected


# Names no stage may take, in any case: DAGMan's reserved words cannot name a node, and a
# stage named like the top-level DAG would write its sub-DAG and records over aframe.dag's.
RESERVED = ("parent", "child", "all_nodes", "aframe")


def name_clash(names: Iterable[str]) -> tuple[str, str] | None:
    """The first stage name that is reserved or that differs from another only in case, and
    why; None if there is none. Each stage has files of its own name (STAGE.sub, logs/STAGE),
    which a case-insensitive disk (macOS) would make one."""
    seen: dict[str, str] = {}
    for name in names:
        folded = name.casefold()
        if folded in RESERVED:
            return name, (
                f"a stage cannot be named {name!r}: DAGMan reserves PARENT, CHILD and "
                "ALL_NODES, and aframe.dag is the top-level DAG (in any case)"
            )
        if folded in seen:
            return name, (
                f"{name!r} differs from stage {seen[folded]!r} only in case: their files "
                f"({name}.sub, logs/{name}) would be the same on a case-insensitive disk"
            )
        seen[folded] = name
    return None


def node_name(stage: str, index: str | None) -> str:
    """A DAG node name: the stage for a single node, `stage-INDEX` for fan-out."""
    return stage if index is None else f"{stage}-{index}"
