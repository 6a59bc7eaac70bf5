"""What a job asks for, and how asking grows: memory in MB, and the ClassAd clauses and
GPU-memory steps that retry a job with more."""

from __future__ import annotations

from dataclasses import dataclass

from aframe_dag.config import Stage
from aframe_dag.errors import ConfigError


@dataclass(frozen=True)
class Escalation:
    base: int  # MB of GPU memory asked for first
    cap: int  # MB never asked beyond
    steps: int  # doublings from base to cap: the releases after running out of memory


def gpu_escalation(stage: Stage, where: str) -> Escalation | None:
    """The GPU-memory retries of a GPU stage with `max_gpu_memory`, else None."""
    res = stage.resources
    if not (res.gpus and res.max_gpu_memory):
        return None
    if not res.gpu_memory:
        raise ConfigError(f"{where}.max_gpu_memory: needs gpu_memory, the GPU memory to start at")
    base, cap = megabytes(res.gpu_memory), megabytes(res.max_gpu_memory)
    if cap < base:
        raise ConfigError(f"{where}.max_gpu_memory: is below gpu_memory ({res.gpu_memory})")
    steps = 0
    while base * 2 ** (steps + 1) <= cap:
        steps += 1
    return Escalation(base, cap, steps)


def periodic_remove(held_for: int, max_memory: str | None) -> list[str]:
    """ClassAd clauses that remove a job: held too long, or past its memory ceiling."""
    clauses = []
    if held_for:
        clauses.append(f"(JobStatus == 5 && time() - EnteredCurrentStatus > {held_for})")
    if max_memory:  # it used more than its ceiling allows (held, idle or running)
        clauses.append(f"(MemoryUsage =!= undefined && MemoryUsage > {megabytes(max_memory)})")
    return clauses


def periodic_release(max_memory: str | None, gpu: Escalation | None) -> list[str]:
    """ClassAd clauses that release a held job to try again with more memory."""
    clauses = []
    if max_memory:  # held for exceeding its memory (26, 34), below its ceiling: the LIGO pattern
        clauses.append(
            "((HoldReasonCode =?= 26 || HoldReasonCode =?= 34) && JobStatus == 5 "
            f"&& MemoryUsage <= {megabytes(max_memory)})"
        )
    if gpu:  # held by on_exit_hold for running out of GPU memory, while a bigger GPU is allowed
        clauses.append(
            f"(HoldReasonCode =?= 3 && HoldReasonSubCode =?= 86 && NumJobStarts <= {gpu.steps})"
        )
    return clauses


def megabytes(quantity: str) -> int:
    """A validated quantity such as 16GB in MB (HTCondor's memory unit)."""
    number, unit = float(quantity[:-2]), quantity[-2]
    return int(number * {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024**2}[unit])
