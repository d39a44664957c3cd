"""Declares ``echo`` a second time, which must be refused."""

from __future__ import annotations

from coditect_tasks import AgentCall, agent


@agent("echo")
def echo_again(call: AgentCall) -> None:
    return None
