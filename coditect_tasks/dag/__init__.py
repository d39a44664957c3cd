"""DAGs of agent calls: the model (``spec``), validation and planning (``plan``),
run state over Lua scripts (``engine``) and the run handle (``run``). Executing a
node is the worker's side (``coditect_tasks.worker``)."""

from __future__ import annotations

from .plan import Plan, validate
from .spec import Dag, Node

__all__ = ["Dag", "Node", "Plan", "validate"]
