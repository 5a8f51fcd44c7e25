"""Validation against the Open Responses specification (openresponses.org), whose schema
is published as the ``openresponses-types`` package: pydantic models of every object and
of its 24 stream event types.

:func:`spec_event` validates one stream event, :func:`spec_response` a response object,
so they fail where a client built on the spec would. The spec's timestamps are whole
Unix seconds: a ``created_at`` or ``completed_at`` with a fraction fails (``1.0`` passes,
since the openai SDK's models, which many tests read events through, type them as
floats; the compliance suite checks the wire JSON for integers itself).

Where the spec and OpenAI's API disagree, the official SDK wins (a server here must
serve it first), and the difference is named here, nowhere else:

- reasoning text streams as ``response.reasoning_text.delta`` / ``.done`` (OpenAI's
  names, which the strict SDK requires); the spec calls them ``response.reasoning.*``
  with the same fields, so they are validated against those models under the spec's name;
- extension events (``response.ping`` and ``response.rate_limits.updated``, only for
  streams that ask for them) are not the spec's and are passed over: :data:`EXTENSION_EVENTS`;
- the spec knows function tools and ``function_call`` items only. OpenAI's other tool
  kinds (custom, namespace and hosted tools, in ``tools``; a custom ``tool_choice``),
  custom tool call items and their events are left out of what is validated against it
  (the rest of the object or event still is): :func:`_spec_view`.

And one difference is the package's own: its model of ``JsonSchemaResponseFormat`` types
``schema`` as ``null`` only, where the spec's JSON schema says an object or null (a
generator slip); :func:`spec_response` checks that field by hand.
"""

from __future__ import annotations

import json
from typing import Any

import openresponses_types as spec
import pydantic

# Not the spec's (see the module docstring): not validated against it.
EXTENSION_EVENTS = frozenset({"response.ping", "response.rate_limits.updated"})
# OpenAI's, not in the spec (see the module docstring): the events of custom tool calls,
# and the tool and item types it has.
NON_SPEC_EVENTS = frozenset({"response.custom_tool_call_input.delta",
                             "response.custom_tool_call_input.done",
                             "response.compaction.compacting"})
SPEC_TOOL_TYPES = frozenset({"function"})
SPEC_ITEM_TYPES = frozenset({"message", "function_call", "function_call_output", "reasoning",
                             "compaction"})
# OpenAI's name → the spec's name for the same event.
SPEC_NAMES = {"response.reasoning_text.delta": "response.reasoning.delta",
              "response.reasoning_text.done": "response.reasoning.done"}


def _event_models() -> dict[str, type[pydantic.BaseModel]]:
    models: dict[str, type[pydantic.BaseModel]] = {}
    for name in dir(spec):
        model = getattr(spec, name)
        if name.endswith("StreamingEvent") and isinstance(model, type) \
                and issubclass(model, pydantic.BaseModel):
            (kind,) = [member.value for member in model.model_fields["type"].annotation]
            models[kind] = model
    return models


EVENT_MODELS = _event_models()
assert len(EVENT_MODELS) == 24, sorted(EVENT_MODELS)


def spec_event(event: dict[str, Any]) -> pydantic.BaseModel | None:
    """The event as the spec's model of its type (None for an extension event); raises
    ``pydantic.ValidationError`` where it does not conform, ``KeyError`` for a type the
    spec does not have."""
    kind = event["type"]
    item = event.get("item")
    if kind in EXTENSION_EVENTS or kind in NON_SPEC_EVENTS or (
            isinstance(item, dict) and item.get("type") not in SPEC_ITEM_TYPES):
        return None
    kind = SPEC_NAMES.get(kind, kind)
    if isinstance(event.get("response"), dict):
        _check_response(event["response"])
        event = {**event, "response": _spec_view(event["response"])}
    return EVENT_MODELS[kind].model_validate_json(
        json.dumps({**_without_schema(event), "type": kind}))


def spec_response(response: dict[str, Any]) -> spec.ResponseResource:
    """The response object as the spec's ``ResponseResource``; raises where it does not
    conform."""
    _check_response(response)
    return spec.ResponseResource.model_validate_json(
        json.dumps(_without_schema(_spec_view(response))))


def _spec_view(response: dict[str, Any]) -> dict[str, Any]:
    """The response as far as the spec has it: its function tools, its items of the
    spec's types, and a custom ``tool_choice`` as ``required`` (the spec's word for a call
    the model must make); everything else as it is."""
    view = dict(response)
    view["tools"] = [tool for tool in response.get("tools") or ()
                     if tool.get("type") in SPEC_TOOL_TYPES]
    view["output"] = [item for item in response.get("output") or ()
                      if item.get("type") in SPEC_ITEM_TYPES]
    choice = response.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "custom":
        view["tool_choice"] = "required"
    return view


def _check_response(response: dict[str, Any]) -> None:
    """Whole-second timestamps, with a message that says so (the models refuse a
    fraction too), and the json_schema format's ``schema`` (see the module docstring)."""
    for name in ("created_at", "completed_at"):
        value = response.get(name)
        assert value is None or float(value).is_integer(), f"{name} {value!r}: not whole seconds"
    fmt = (response.get("text") or {}).get("format") or {}
    if fmt.get("type") == "json_schema":
        assert fmt.get("schema") is None or isinstance(fmt["schema"], dict), fmt


def _without_schema(value: Any) -> Any:
    """``value`` with every ``text.format.schema`` of a response nulled (the package's
    slip, see the module docstring)."""
    if isinstance(value, dict):
        out = {key: _without_schema(item) for key, item in value.items()}
        fmt = (out.get("text") or {}).get("format") if out.get("object") == "response" else None
        if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
            out["text"] = {**out["text"], "format": {**fmt, "schema": None}}
        return out
    if isinstance(value, list):
        return [_without_schema(item) for item in value]
    return value
