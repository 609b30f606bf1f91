"""Wire schemas of what crosses between manager and agents: the join call, job payloads, task events, and the
agents' reports; one module per domain (join, tasks, commands, components, instances), all named here.

Both sides load what they receive through these schemas, so a malformed message fails loudly at the
boundary instead of deep inside a service.
"""

from __future__ import annotations

from .base import NO_NUL_PATTERN, NUL_REFUSED, Text, dump, no_nul, schema_of
from .commands import (
    AgentScheduleSchema,
    AgentScheduleSetSchema,
    CancelCommandSchema,
    CommandReportSchema,
    OutputLineSchema,
    RunCommandSchema,
    ScheduleFiringSchema,
)
from .components import (
    ComponentReportSchema,
    ComponentSpecSchema,
    ConfigFileSchema,
    ResourceRequirementsSchema,
    ResourceUsageSchema,
    StopComponentSchema,
)
from .instances import (
    HealthCheckSpecSchema,
    HealthResultSchema,
    InstanceReportSchema,
    InstanceRestartSchema,
    InstanceSpecSchema,
    ResourceAllocSchema,
    StopInstanceSchema,
)
from .join import JoinRequestSchema, JoinResponseSchema
from .tasks import StartTaskSchema, StopTasksSchema, TaskEventSchema

__all__ = [
    "AgentScheduleSchema",
    "AgentScheduleSetSchema",
    "CancelCommandSchema",
    "CommandReportSchema",
    "ComponentReportSchema",
    "ComponentSpecSchema",
    "ConfigFileSchema",
    "HealthCheckSpecSchema",
    "HealthResultSchema",
    "InstanceReportSchema",
    "InstanceRestartSchema",
    "InstanceSpecSchema",
    "JoinRequestSchema",
    "JoinResponseSchema",
    "NO_NUL_PATTERN",
    "NUL_REFUSED",
    "OutputLineSchema",
    "ResourceAllocSchema",
    "ResourceRequirementsSchema",
    "ResourceUsageSchema",
    "RunCommandSchema",
    "ScheduleFiringSchema",
    "StartTaskSchema",
    "StopComponentSchema",
    "StopInstanceSchema",
    "StopTasksSchema",
    "TaskEventSchema",
    "Text",
    "dump",
    "no_nul",
    "schema_of",
]
