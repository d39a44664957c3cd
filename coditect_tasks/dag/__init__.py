"""DAGs of agent calls: the model (``spec``), validation and planning (``plan``),
execution (``engine``) and the run handle (``run``)."""

from __future__ import annotations

from .plan import Plan, validate
from .spec import Dag, Node

__all__ = ["Dag", "Node", "Plan", "validate"]
