"""The committed AsyncAPI document matches the event catalog."""

from __future__ import annotations

from pathlib import Path

import yaml

from hotline.asyncapi import document, render
from shared.events import all_routing_keys

DOC = Path(__file__).resolve().parents[1] / "docs" / "asyncapi.yaml"


def test_committed_asyncapi_document_is_current() -> None:
    assert DOC.read_text() == render(), "regenerate: python -m hotline.asyncapi > docs/asyncapi.yaml"


def test_every_catalog_event_has_a_channel_with_its_payload_schema() -> None:
    doc = document()
    assert sorted(doc["channels"]) == all_routing_keys()
    offered = yaml.safe_load(DOC.read_text())["components"]["messages"]["cti_call_offered_v1"]
    data = offered["payload"]["allOf"][1]["properties"]["data"]
    assert {"call_id", "from_number", "to_number"} <= set(data["required"])
