"""Labels an agent puts on the containers of docker components; it finds its own again by them after a restart."""

from __future__ import annotations

BUSINESS = "corral.business_id"
"""The business the container belongs to."""

COMPONENT = "corral.component_id"
"""The component of that business."""

GENERATION = "corral.generation"
"""The component's generation (a decimal string), bumped by the manager on each restart or change."""

NODE = "corral.node_id"
"""The node whose agent created and owns the container."""
