"""Validate stream events, response objects and errors against the served spec.

``ResponseStreamEvent`` is an ``anyOf`` of 58 event schemas, so a validator given the
whole union can only say "not valid under any". Each event is validated against the one
schema whose ``type`` constant it carries instead, which names the offending field.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from .conftest import MODEL
from .served_spec import SCHEMAS, served_spec

SPEC_URI = "urn:trio-responses:served-spec"
# Our extension events (not in the spec, sent outside compatibility mode only when
# heartbeats or rate limits are on): checked by tests/support/events.py instead.
EXTENSION_EVENTS = frozenset({"response.ping", "response.rate_limits.updated",
                              # OpenAI's, newer than the vendored spec.
                              "response.compaction.compacting"})


@cache
def _spec() -> dict[str, Any]:
    return served_spec(MODEL)


@cache
def _registry() -> Registry[Any]:
    resource: Resource[Any] = Resource.from_contents(_spec(), default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(SPEC_URI, resource)
    return registry


@cache
def validator(name: str) -> jsonschema.protocols.Validator:
    """A validator for ``#/components/schemas/<name>`` of the served spec."""
    ref = {"$ref": f"{SPEC_URI}{SCHEMAS}{name}"}
    return jsonschema.Draft202012Validator(ref, registry=_registry())


@cache
def event_schemas() -> dict[str, str]:
    """Event ``type`` → the name of its schema in ``ResponseStreamEvent``."""
    schemas = _spec()["components"]["schemas"]
    names: dict[str, str] = {}
    for branch in schemas["ResponseStreamEvent"]["anyOf"]:
        name = branch["$ref"].removeprefix(SCHEMAS)
        kind = schemas[name]["properties"]["type"]
        for value in kind.get("enum", [kind.get("const")]):
            names[value] = name
    return names


def problems(instance: Any, name: str) -> list[str]:
    """Every way ``instance`` violates schema ``name``, one line each (empty if valid)."""
    return [f"{error.json_path}: {error.message[:300]}"
            for error in validator(name).iter_errors(instance)]


def event_problems(event: Mapping[str, Any]) -> list[str]:
    kind = event.get("type")
    if kind in EXTENSION_EVENTS:
        return []
    name = event_schemas().get(str(kind))
    if name is None:
        return [f"event type {kind!r} is not in the spec's ResponseStreamEvent"]
    return problems(dict(event), name)


def assert_valid_event(event: Mapping[str, Any]) -> None:
    found = event_problems(event)
    assert not found, f"{event.get('type')} #{event.get('sequence_number')}: {found}"


def assert_error_shape(body: Any) -> None:
    """OpenAI's error object: ``{"error": {"message", "type", "param", "code"}}``."""
    found = problems(body, "ErrorResponse")
    assert not found, (body, found)
