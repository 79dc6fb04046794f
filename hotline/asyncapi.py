"""Generate the AsyncAPI document of Hotline's event stream from the event catalog.

``python -m hotline.asyncapi > docs/asyncapi.yaml``; a test fails when the committed
document no longer matches the catalog, so it cannot drift from the code.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

from shared.envelope import Envelope, routing_key
from shared.events import CATALOG

EXCHANGE = "hotline.events"


def document() -> dict[str, Any]:
    envelope = Envelope.model_json_schema()
    envelope["properties"].pop("data", None)
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for (event_type, version), model in sorted(CATALOG.items()):
        key = routing_key(event_type, version)
        name = key.replace(".", "_")
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        definitions = schema.pop("$defs", {})
        messages[name] = {
            "name": key,
            "title": event_type,
            "summary": (model.__doc__ or event_type).strip().splitlines()[0],
            "contentType": "application/cloudevents+json",
            "payload": {
                "allOf": [
                    {"$ref": "#/components/schemas/Envelope"},
                    {"type": "object", "required": ["data"], "properties": {
                        "type": {"const": event_type}, "dataversion": {"const": version},
                        "data": schema}},
                ],
            },
            "x-definitions": definitions or None,
        }
        if not definitions:
            del messages[name]["x-definitions"]
        channels[key] = {
            "description": f"Routing key `{key}` on the `{EXCHANGE}` topic exchange.",
            "subscribe": {"operationId": f"receive_{name}",
                          "message": {"$ref": f"#/components/messages/{name}"}},
        }
    return {
        "asyncapi": "2.6.0",
        "info": {
            "title": "Hotline events",
            "version": "1",
            "description": (
                "Every fact Hotline's services publish. Envelope: CloudEvents 1.0 attributes "
                "plus `dataversion`, `sequence` (monotonic per source and subject), "
                "`correlationid` (the call) and `causationid`. Delivery is at least once: "
                "deduplicate by `id`. Bind a queue to the `hotline.events` topic exchange with "
                "routing keys `<type>.v<version>` (wildcards allowed, e.g. `cti.call.*.v1`)."),
        },
        "servers": {"rabbitmq": {"url": "amqp://localhost:5672/", "protocol": "amqp",
                                 "protocolVersion": "0.9.1"}},
        "defaultContentType": "application/cloudevents+json",
        "channels": channels,
        "components": {"schemas": {"Envelope": envelope}, "messages": messages},
    }


def render() -> str:
    return yaml.safe_dump(document(), sort_keys=False, allow_unicode=True, width=100)


if __name__ == "__main__":
    sys.stdout.write(render())
