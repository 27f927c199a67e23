"""An AsyncAPI 3.0 document of the declarative workers' topics and of services' action types.

FastStream's convention: one channel per topic stream (its ``address`` is the stream key), one
``receive`` operation per subscriber (its group in the description) and one ``send`` operation
per output topic, messages whose payload is the handler's ``input_schema`` / ``output_schema``
as JSON Schema (pydantic's, its ``$defs`` hoisted to ``components.schemas``). A topic with no
schema has an open payload (``{}``). Services (``BaseWorker`` classes) add one channel per
action stream and one message per ``_handle_<type>`` method, the payload being the
``DomainAction`` envelope. The document validates against the official AsyncAPI 3.0 JSON
schema (tests/data, from the ``@asyncapi/specs`` package).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel

from common.clients.queue_manager import QueueManager
from common.config import CommonAppSettings
from common.messaging.subscription import Subscription
from common.models.actions import DomainAction
from common.ops.catalog import describe, handlers_of

__all__ = ["ASYNCAPI_VERSION", "asyncapi_document", "service_action_types"]

ASYNCAPI_VERSION = "3.0.0"
_REF = "#/components/schemas/{model}"


def _key(text: str) -> str:
    """A key AsyncAPI allows for channels, operations and components: ``[A-Za-z0-9_-]``."""
    return re.sub(r"[^A-Za-z0-9_\-]", "_", text)


class _Doc:
    def __init__(self) -> None:
        self.channels: dict[str, Any] = {}
        self.operations: dict[str, Any] = {}
        self.messages: dict[str, Any] = {}
        self.schemas: dict[str, Any] = {}

    def schema(self, model: type[BaseModel] | None) -> dict[str, Any]:
        """A ``$ref`` to ``model``'s JSON schema in components (an open schema without one)."""
        if model is None:
            return {}
        schema = model.model_json_schema(ref_template=_REF)
        for name, sub in schema.pop("$defs", {}).items():
            self.schemas.setdefault(name, sub)
        name = _key(model.__name__)
        self.schemas.setdefault(name, schema)
        return {"$ref": _REF.format(model=name)}

    def channel(self, key: str, address: str, description: str) -> str:
        self.channels.setdefault(
            key, {"address": address, "description": description, "messages": {}}
        )
        return key

    def message(
        self, channel: str, name: str, payload: dict[str, Any], title: str
    ) -> dict[str, str]:
        """Add message ``name`` to ``channel``; returns the operation's reference to it."""
        key = _key(name)
        self.messages.setdefault(
            key,
            {
                "name": name,
                "title": title,
                "contentType": "application/json",
                "payload": payload,
            },
        )
        self.channels[channel]["messages"][key] = {"$ref": f"#/components/messages/{key}"}
        return {"$ref": f"#/channels/{channel}/messages/{key}"}

    def operation(
        self, key: str, action: str, channel: str, messages: list[dict[str, str]], summary: str
    ) -> None:
        self.operations[_key(key)] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{channel}"},
            "summary": summary,
            "messages": messages,
        }


def service_action_types(service: str, worker_class: type) -> list[str]:
    """The action types a ``BaseWorker`` class handles, from its ``_handle_<type>`` methods
    (``_handle_user_create`` of service ``user`` -> ``user.create``; underscores after the
    service's name stay: a method name cannot tell them from dots)."""
    types: list[str] = []
    for name, _ in inspect.getmembers(worker_class, inspect.iscoroutinefunction):
        if not name.startswith("_handle_") or name == "_handle_action":
            continue
        rest = name.removeprefix("_handle_")
        head = service.replace(".", "_").replace("-", "_") + "_"
        types.append(f"{service}.{rest.removeprefix(head)}")
    return sorted(types)


def _servers(settings: CommonAppSettings) -> dict[str, Any]:
    try:
        parts = urlsplit(settings.redis_url)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return {}
    if parts.scheme not in ("redis", "rediss") or not host:
        return {}
    return {
        "redis": {
            "host": f"{host}:{port or 6379}",
            "protocol": parts.scheme,
            "description": "Redis Streams (no credentials shown)",
        }
    }


def _topic_title(settings: CommonAppSettings, topic: str) -> str:
    """A topic channel's description (its address is partition 0's stream)."""
    partitions = settings.partitions_of_topic(topic)
    if partitions <= 1:
        return f"Topic {topic}"
    return (
        f"Topic {topic}, {partitions} partitions by the event's key (partition k >= 1: hash "
        f"tag {{{topic}:k}})"
    )


def asyncapi_document(
    subscriptions: Sequence[Subscription],
    settings: CommonAppSettings,
    services: Sequence[tuple[str, type]] = (),
    title: str | None = None,
    version: str = "1.0.0",
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of ``subscriptions`` and ``services`` (name, BaseWorker class)."""
    queues = QueueManager(settings.queue_prefix, settings.environment)
    doc = _Doc()
    for sub in subscriptions:
        info = describe(sub, settings)
        for topic in sub.topics:
            channel = doc.channel(
                _key(topic), queues.topic_stream(topic), _topic_title(settings, topic)
            )
            refs = []
            outputs: dict[str, list[dict[str, str]]] = {}
            for event, handler in handlers_of(sub):
                name = f"{topic}:{event}" if event else topic
                payload = doc.schema(handler.input_schema)
                refs.append(doc.message(channel, name, payload, event or topic))
                if handler.output_topic is not None:
                    out = handler.output_topic
                    out_channel = doc.channel(
                        _key(out), queues.topic_stream(out), _topic_title(settings, out)
                    )
                    out_payload = doc.schema(handler.output_schema)
                    outputs.setdefault(out_channel, []).append(
                        doc.message(out_channel, out, out_payload, out)
                    )
            doc.operation(
                f"{sub.name}:{topic}:receive",
                "receive",
                channel,
                refs,
                f"{info.kind} {sub.name} (group {info.group}, concurrency {info.concurrency}, "
                f"{info.max_retries} attempts)",
            )
            for out_channel, out_refs in outputs.items():
                doc.operation(
                    f"{sub.name}:{out_channel}:send",
                    "send",
                    out_channel,
                    out_refs,
                    f"{sub.name} publishes its results",
                )
    for service, worker_class in services:
        channel = doc.channel(
            _key(f"{service}_actions"), queues.action_stream(service), f"Actions of {service}"
        )
        envelope = doc.schema(DomainAction)
        for action_type in service_action_types(service, worker_class):
            ref = doc.message(channel, action_type, envelope, action_type)
            doc.operation(
                f"{service}:{action_type}:receive",
                "receive",
                channel,
                [ref],
                f"{worker_class.__name__} handles {action_type}",
            )
    document: dict[str, Any] = {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": title or settings.service_name,
            "version": version,
            "description": "Topics and actions over Redis Streams (generated by `common docs`).",
        },
        "defaultContentType": "application/json",
    }
    servers = _servers(settings)
    if servers:
        document["servers"] = servers
    document["channels"] = doc.channels
    document["operations"] = doc.operations
    document["components"] = {"messages": doc.messages, "schemas": doc.schemas}
    return document
