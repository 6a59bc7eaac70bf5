"""aframe-dag: Aframe pipelines as HTCondor DAGMan workflows."""

from __future__ import annotations

from aframe_dag.config import load_config
from aframe_dag.errors import AframeDagError
from aframe_dag.workflow import build, expand, make_plan

__all__ = ["AframeDagError", "build", "expand", "load_config", "make_plan"]
__version__ = "0.1.0"
