"""aframe-dag: Aframe pipelines as HTCondor DAGMan workflows.

The public API is imported lazily, so that `python -m aframe_dag.demo.fetch` or an entry
script pays nothing for the parts of the tool it does not use.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "AframeDagError",
    "build",
    "expand",
    "import_law",
    "load_config",
    "make_plan",
    "run_local",
]
__version__ = "0.1.0"

_HOMES = {
    "AframeDagError": "aframe_dag.errors",
    "build": "aframe_dag.workflow",
    "expand": "aframe_dag.workflow",
    "import_law": "aframe_dag.lawcfg",
    "make_plan": "aframe_dag.workflow",
    "load_config": "aframe_dag.config",
    "run_local": "aframe_dag.runner",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'aframe_dag' has no attribute {name!r}")
