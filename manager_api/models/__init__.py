"""Peewee models of the manager's database, one module per domain; no logic here.

Everything is re-exported here, so `from manager_api.models import X` names any model wherever it lives, and
`manager_api.models:ALL_MODELS` is what playhouse.migrations diffs against (README, "Schema migrations").
The submodules import the ones their foreign keys point to (nodes.py is the one most of them need).
"""

from __future__ import annotations

from manager_api.models.alerts import Alert
from manager_api.models.apps import App, AppInstance, AppRestart
from manager_api.models.audit import AuditLog
from manager_api.models.base import BaseModel, utcnow
from manager_api.models.businesses import (
    Business,
    BusinessComponent,
    BusinessHistory,
    BusinessTombstone,
    ComponentMetric,
)
from manager_api.models.deployments import Deployment, DeploymentTask, Template
from manager_api.models.fleet_tasks import FleetTask, TaskHost
from manager_api.models.keys import ManagerKey
from manager_api.models.nodes import Node, NodeMetric, NodeRevision
from manager_api.models.processors import ProcessorDelivery
from manager_api.models.schedules import AgentScheduleClock, Schedule
from manager_api.models.scripts import Script
from manager_api.models.tokens import ApiToken
from manager_api.models.workflows import Workflow, WorkflowStep

__all__ = [
    "ALL_MODELS",
    "AgentScheduleClock",
    "Alert",
    "ApiToken",
    "App",
    "AppInstance",
    "AppRestart",
    "AuditLog",
    "BaseModel",
    "Business",
    "BusinessComponent",
    "BusinessHistory",
    "BusinessTombstone",
    "ComponentMetric",
    "Deployment",
    "DeploymentTask",
    "FleetTask",
    "ManagerKey",
    "Node",
    "NodeMetric",
    "NodeRevision",
    "ProcessorDelivery",
    "Schedule",
    "Script",
    "TaskHost",
    "Template",
    "Workflow",
    "WorkflowStep",
    "utcnow",
]

ALL_MODELS = [
    Node,
    NodeMetric,
    NodeRevision,
    ManagerKey,
    Template,
    Deployment,
    DeploymentTask,
    AuditLog,
    FleetTask,
    TaskHost,
    Schedule,
    Business,
    BusinessComponent,
    ComponentMetric,
    BusinessHistory,
    BusinessTombstone,
    App,
    AppInstance,
    AppRestart,
    Alert,
    ApiToken,
    ProcessorDelivery,
    Script,
    Workflow,
    WorkflowStep,
    AgentScheduleClock,
]
"""In creation order (foreign keys point backwards)."""
