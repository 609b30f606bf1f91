"""Answers of the nodes API: the manual's node list (presenters.nodes.manual_list_json), a node's document
(services.nodes.documents, also every item of GET /api/nodes), its detail, metrics and forgetting."""

from __future__ import annotations

from marshmallow import fields

from manager_api.api.schemas.answers.common import (
    Answer,
    Int,
    Number,
    boolean,
    integer,
    many,
    nested,
    number,
    one_of,
    string_map,
    strings,
    text,
    time,
)
from manager_api.services.businesses.state import REMOVED, RUNNING, STOPPED
from shared.states import ComponentState, ComponentType, NodeStatus

# The §5.1.1 fields an agent sends about itself: scalars as it sent them, null when absent (documents._picked).
_SENT = "As the node's agent reported it at its last join; null when it did not."


def _sent_text() -> fields.String:
    return text(nullable=True, metadata={"description": _SENT})


def _sent_integer() -> Int:
    return integer(nullable=True, metadata={"description": _SENT})


class ManualNodeAnswer(Answer):
    """One node of GET /api/task/node (manual §5.3.1)."""

    ip = text()
    status = one_of(NodeStatus, metadata={"description": "0 online, 1 offline."})
    resources = text(metadata={"example": "cpu_usage_percent:12,memory_usage_percent:40"})
    id = text()
    hostname = text()
    last_heartbeat = time(nullable=True)
    labels = string_map()
    ready = boolean(metadata={"description": "Online and its agent takes jobs: what placement needs."})


class ManualNodeListAnswer(Answer):
    nodes = many(ManualNodeAnswer)


class ResourcesAnswer(Answer):
    """CPU cores, memory MB and GPUs: a node's capacity, what is reserved or free of it, what a component asks."""

    cpu_cores = number()
    memory_mb = integer()
    gpus = integer()


class NodeFactsAnswer(Answer):
    """The facts shown of what the agent detected (documents.FACT_KEYS); a fact it did not send is absent."""

    cpu_count = Int()
    memory_total_mb = Int()
    gpu_count = Int(required=True)
    gpus = fields.List(fields.Raw(), required=True)
    os = fields.String()
    distro = fields.String()
    kernel = fields.String()
    arch = fields.String()
    addresses = strings()


class NodeOsAnswer(Answer):
    name = _sent_text()
    version = _sent_text()
    cpus = _sent_integer()
    architecture = _sent_text()


class NodeMemoryAnswer(Answer):
    total = _sent_integer()
    ram = _sent_integer()


class NodeNetworkAnswer(Answer):
    address = _sent_text()
    name = _sent_text()
    mtu = _sent_integer()
    broadcast = _sent_text()
    netmask = _sent_text()
    hwaddr = _sent_text()
    type = _sent_text()


class NodeDiskAnswer(Answer):
    dirName = _sent_text()  # noqa: N815 (the §5.1.1 spelling)
    devName = _sent_text()  # noqa: N815
    sysTypeName = _sent_text()  # noqa: N815
    option = _sent_text()
    total = _sent_integer()


class NodeAnswer(Answer):
    """A node's document: what GET /api/nodes lists and node queries match (services.nodes.documents)."""

    id = text()
    hostname = text()
    ip = text()
    status = one_of(["online", "offline"])
    last_heartbeat = time(nullable=True)
    cpu_usage_percent = number(metadata={"description": "0 while offline."})
    memory_usage_percent = number(metadata={"description": "0 while offline."})
    labels = string_map(metadata={"description": "The agent's labels with the API's winning on the same key."})
    agent_labels = string_map()
    api_labels = string_map()
    facts = nested(NodeFactsAnswer)
    capacity = nested(ResourcesAnswer)
    reserved = nested(ResourcesAnswer, metadata={"description": "What active business components hold."})
    free = nested(ResourcesAnswer)
    version = text(metadata={"description": "The agent's version."})
    registered_at = time()
    agentAddress = _sent_text()  # noqa: N815 (the §5.1.1 spelling)
    os = nested(NodeOsAnswer)
    memory = nested(NodeMemoryAnswer)
    networks = many(NodeNetworkAnswer)
    disks = many(NodeDiskAnswer)
    tags = strings(metadata={"description": "The API's tags once set, else the agent's."})
    agent_tags = strings()
    api_tags = fields.List(
        fields.String(), required=True, allow_none=True, metadata={"description": "Null: never set by the API."}
    )


class NodeInventoryAnswer(Answer):
    nodes = many(NodeAnswer)


class NodeComponentAnswer(Answer):
    """A business component placed on the node (presenters.nodes.component_json)."""

    business_id = text()
    business_name = text()
    component_id = text()
    component_name = text()
    type = one_of(ComponentType)
    status = one_of(ComponentState)
    desired = one_of([RUNNING, STOPPED, REMOVED], metadata={"description": "removed: dropped by an update."})
    generation = integer()
    pid = integer(nullable=True)
    container_id = text(nullable=True)
    reserves = boolean(metadata={"description": "Whether it holds its requested resources on the node now."})
    requested = nested(ResourcesAnswer)
    updated_at = time()


class NodeDetailAnswer(NodeAnswer):
    """One node: its document and every component placed on it."""

    components = many(NodeComponentAnswer)


class SecretForgottenAnswer(Answer):
    node_id = text()
    message = text()


class NodeForgottenAnswer(Answer):
    id = text()
    hostname = text()
    status = one_of(["success"])
    message = text()


class NodeMetricsAnswer(Answer):
    """Parallel lists, oldest first (services.nodes.metrics_history.series)."""

    node_id = text()
    hours = number()
    at = fields.List(Number(), required=True, metadata={"description": "Unix seconds."})
    cpu_percent = fields.List(Number(), required=True)
    memory_percent = fields.List(Number(), required=True)
