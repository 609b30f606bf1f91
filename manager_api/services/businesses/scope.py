"""What an operator token may do to a business (issue 15): run its components' commands, reach its nodes.

Placement itself keeps to the token's nodes (placement.candidates leaves the others out); these refuse what
runs beyond the allowlist, and changes to a business whose components sit outside the token's nodes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from redis import Redis

from manager_api.config import Settings
from manager_api.models import BusinessComponent
from manager_api.services import access


def check_components(components: Sequence[Mapping[str, Any]]) -> None:
    """NotPermitted unless an operator token's allowlist admits what each component runs (issue 15)."""
    for component in components:
        access.check_no_image(component["type"], f"component {component['component_id']}")
        if (component.get("command") or "").strip():
            env = {
                **(component.get("environment_variables") or {}),
                **(component.get("secret_environment_variables") or {}),
            }
            access.check_process(component["command"], component.get("args") or (), env)


def check_reach(redis: Redis, settings: Settings, business_id: str) -> None:
    """NotPermitted when a component of the business sits on a node outside the current token's node query."""
    rows = BusinessComponent.select(BusinessComponent.node).where(BusinessComponent.business == business_id)
    access.check_nodes(
        redis, settings.offline_after_intervals, [row.node_id for row in rows], f"business {business_id}"
    )
