"""The OpenAPI document the fuzzers run with: OpenAI's (the vendored copy, see
trim_spec.py), changed only where this server's documented behaviour legitimately
differs from it. Each change says why, here and at the line that makes it.

* **What the spec leaves out.** It documents only 200 and 429 for most operations (and
  404 for two); OpenAI's API answers bad requests with 400, unknown ids with 404 and a
  bad key with 401, in the ``ErrorResponse`` shape, and so does this server. Those
  statuses are added with that schema, so the status and body checks stay on for them.
  ``GET /responses/{id}?stream=true`` (a documented parameter) returns an event stream
  the spec does not list: it gets create's ``text/event-stream`` entry, so every
  replayed event is validated too.
* **What the spec says and OpenAI does not do.** Its discriminators have no mapping,
  which in OpenAPI means schema names where OpenAI's ``type`` values are meant (dropped:
  ``oneOf`` alone validates the same). ``ResponseItemList.first_id``/``last_id`` are
  required strings, but an empty page has neither, and OpenAI's lists send ``null``. A
  response's ``user`` and ``usage`` are never null in the spec; OpenAI sends ``null``
  (no user; no usage until the end) and the SDK types both Optional.
* **What the server adds.** The last line of a stream is ``data: [DONE]``.
* **Bounds the spec's prose states and its schema does not** (``limit`` 1-100), or that
  this server sets on input (``starting_after`` from -1).
* **The create body as this server accepts it.** The spec's ``CreateResponse`` is open
  (any extra field) and optional everywhere. This server refuses unknown fields (400
  ``unknown_parameter``), serves one model (404 ``model_not_found`` for others), needs
  ``input``, offers function, custom and namespace tools only (hosted tools are accepted,
  never called; they are left out of the served body), text (and assistant refusals)
  only, and takes ``prompt`` and other features it lacks only as null (``conversation``
  too: the fuzzers make no conversation to name). The served body is closed and limited
  to the fields and values the server implements, built from the spec's own property
  schemas where they agree (:func:`create_request_schema`). Negative cases are generated
  from it, so what the server does not implement is sent too, and must be refused with a
  4xx.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import msgspec

from trio_responses.protocol.request import (
    INCLUDABLE,
    MAX_OUTPUT_TOKENS_LIMIT,
    VLLM_EXTENSION_FIELDS,
    CreateResponseRequest,
)

SPEC_PATH = Path(__file__).with_name("openai-responses-openapi.min.json")
SCHEMAS = "#/components/schemas/"
NULL: dict[str, Any] = {"type": "null"}

# The operations the server implements, by the spec's operationId.
OPERATIONS = ("createResponse", "getResponse", "deleteResponse", "cancelResponse",
              "listInputItems")

# Statuses the server documents beyond the spec's, all in the ErrorResponse shape: 400 for
# an invalid request (bad body or query, cancel of a synchronous response, stream=true for
# a response not in the background), 401 for a missing or wrong key (the spec declares
# bearer auth everywhere but no 401), 404 for an unknown response, model or previous
# response.
ERROR_STATUSES = {
    "createResponse": ("400", "401", "404"),
    "getResponse": ("400", "401", "404"),
    "deleteResponse": ("401", "404"),
    "cancelResponse": ("400", "401", "404"),
    "listInputItems": ("400", "401", "404"),
}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, NULL]}


def closed(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties,
                              "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    return schema


@cache
def _raw() -> str:
    return SPEC_PATH.read_text(encoding="utf-8")


def openai_spec() -> dict[str, Any]:
    """The vendored spec as it is (a fresh copy each call)."""
    spec: dict[str, Any] = json.loads(_raw())
    return spec


def _resolve(schemas: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = schemas[schema["$ref"].removeprefix(SCHEMAS)]
    return schema


def spec_properties(schemas: dict[str, Any], name: str) -> dict[str, Any]:
    """The properties of a spec schema with its ``allOf`` parts merged, later parts winning
    (as in ``CreateModelResponseProperties``, which narrows ``top_logprobs``)."""
    def merge(schema: dict[str, Any], into: dict[str, Any]) -> None:
        schema = _resolve(schemas, schema)
        for part in schema.get("allOf", ()):
            merge(part, into)
        into.update(schema.get("properties", {}))

    properties: dict[str, Any] = {}
    merge(schemas[name], properties)
    return properties


# Create fields of OpenAI features this server does not have (request.check_create_request).
NULL_ONLY = ("prompt", "moderation", "image", "access_programs")

# -- the create body -------------------------------------------------------------------

ANY: dict[str, Any] = {}  # a field the server accepts and ignores, whatever it holds


def _content_parts(*, refusals: bool) -> dict[str, Any]:
    # Text only (and refusals in assistant messages): image, file and audio parts are
    # refused with 400 ``unsupported_content`` (the model reads text). input_text and
    # output_text are taken in any message; only the text is kept (``annotations`` and
    # ``logprobs`` of replayed output text are dropped unread).
    text = closed({"type": {"enum": ["input_text", "output_text"]}, "text": {"type": "string"},
                   "annotations": ANY, "logprobs": ANY}, ("type", "text"))
    if not refusals:
        return {"type": "array", "items": text}
    refusal = closed({"type": {"const": "refusal"}, "refusal": {"type": "string"}},
                     ("type", "refusal"))
    return {"type": "array", "items": {"anyOf": [text, refusal]}}


def input_item_schema() -> dict[str, Any]:
    """The input items the server takes (items.normalize_input): messages (the spec's
    EasyInputMessage, InputMessage and OutputMessage in one shape), FunctionToolCall,
    FunctionCallOutputItemParam, custom tool calls and their outputs, and ReasoningItem,
    without the field it refuses as unknown (``prompt_cache_breakpoint``). Where the
    server reads a field it is as strict as the spec; fields it drops unread (``phase``, a
    non-string ``id``, an output's ``name`` and ``namespace``, ``caller``, ``async``,
    ``encrypted_content``) take anything. ``status`` may be null (read as completed)."""
    status = nullable({"enum": ["in_progress", "completed", "incomplete"]})

    def message(roles: list[str], *, refusals: bool) -> dict[str, Any]:
        return closed({
            "type": {"const": "message"},
            "role": {"enum": roles},
            "content": {"anyOf": [{"type": "string"}, _content_parts(refusals=refusals)]},
            "status": status,
            "id": ANY,
            "phase": ANY,
        }, ("role", "content"))

    def tool_call(kind: str, payload: str) -> dict[str, Any]:
        # A call's namespace is kept (a namespaced tool's calls are replayed under it).
        return closed({
            "type": {"const": kind},
            "id": ANY,
            "call_id": {"type": "string"},
            "namespace": nullable({"type": "string"}),
            "name": {"type": "string"},
            payload: {"type": "string"},
            "status": status,
            "caller": ANY,
            "async": ANY,
        }, ("type", "call_id", "name", payload))
    # The spec lets call_id be null; an output answers a call, so the server needs its id
    # (400 ``missing_required_parameter``).
    def tool_output(kind: str) -> dict[str, Any]:
        return closed({
            "type": {"const": kind},
            "id": ANY,
            "call_id": {"type": "string"},
            "output": {"anyOf": [{"type": "string"}, _content_parts(refusals=False)]},
            "name": ANY,
            "namespace": ANY,
            "status": status,
            "caller": ANY,
        }, ("type", "call_id", "output"))
    summary = closed({"type": {"const": "summary_text"}, "text": {"type": "string"}},
                     ("type", "text"))
    reasoning_text = closed({"type": {"const": "reasoning_text"}, "text": {"type": "string"}},
                            ("type", "text"))
    # The spec requires a reasoning item's id; the server gives one to items without.
    reasoning = closed({
        "type": {"const": "reasoning"},
        "id": ANY,
        # Only a value this server sealed opens (anything else is 400
        # invalid_encrypted_content); a schema cannot make one, so positive cases send null.
        "encrypted_content": NULL,
        "summary": {"type": "array", "items": summary},
        "content": nullable({"type": "array", "items": reasoning_text}),
        "status": status,
    }, ("type",))
    return {"anyOf": [message(["user", "system", "developer"], refusals=False),
                      message(["assistant"], refusals=True),
                      tool_call("function_call", "arguments"), tool_output("function_call_output"),
                      tool_call("custom_tool_call", "input"),
                      tool_output("custom_tool_call_output"), reasoning]}


NAME = {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,64}$"}
CALLERS = nullable({"type": "array", "items": {"enum": ["direct", "programmatic"]},
                    "minItems": 1})


def tool_schema() -> dict[str, Any]:
    """The tools the model is offered (protocol/tooldefs.py): function and custom tools,
    and namespaces of them. Hosted tools (web search, file search, ...) are accepted too,
    never called, and left out here: the server checks their type and required fields
    only, so a negative case that breaks one of their other fields would be accepted."""
    # The spec's name is any string; OpenAI and this server require ^[a-zA-Z0-9_-]{1,64}$.
    function = closed({
        "type": {"const": "function"},
        "name": NAME,
        "description": nullable({"type": "string"}),
        "parameters": nullable({"type": "object"}),
        "strict": nullable({"type": "boolean"}),
        "allowed_callers": CALLERS,
        "defer_loading": {"type": "boolean"},
        "async": {"type": "boolean"},
        "output_schema": nullable({"type": "object"}),
    }, ("type", "name"))
    custom = closed({
        "type": {"const": "custom"},
        "name": NAME,
        "description": {"type": "string"},
        "format": {"anyOf": [
            closed({"type": {"const": "text"}}, ("type",)),
            # A grammar must compile (400 invalid_grammar otherwise), which a random
            # string does not: positive cases send ones that compile in both syntaxes.
            closed({"type": {"const": "grammar"}, "syntax": {"enum": ["lark", "regex"]},
                    "definition": {"enum": ["start: /[a-z]+/", 'start: "yes" | "no"']}},
                   ("type", "syntax", "definition"))]},
        "allowed_callers": CALLERS,
        "defer_loading": {"type": "boolean"},
        "async": {"type": "boolean"},
    }, ("type", "name"))
    namespace = closed({
        "type": {"const": "namespace"},
        "name": NAME,
        "description": {"type": "string"},
        "tools": {"type": "array", "items": {"anyOf": [function, custom]}, "minItems": 1},
    }, ("type", "name", "description", "tools"))
    return {"anyOf": [function, custom, namespace]}


def _extension_properties() -> dict[str, Any]:
    """vLLM's sampling extensions, as the server's own request type describes them."""
    _, components = msgspec.json.schema_components([CreateResponseRequest],
                                                   ref_template="#/$defs/{name}")
    fields = components["CreateResponseRequest"]["properties"]
    return {name: fields[name] for name in VLLM_EXTENSION_FIELDS}


def create_request_schema(schemas: dict[str, Any], model: str) -> dict[str, Any]:
    """The create body the server accepts: the spec's properties for the fields it
    implements, narrowed where the server narrows them."""
    spec = spec_properties(schemas, "CreateResponse")
    ours = set(CreateResponseRequest.__struct_fields__)
    # Spec fields the server does not know (none today) are left out: refused as unknown.
    properties = {name: schema for name, schema in spec.items() if name in ours}
    reasoning = spec_properties(schemas, "Reasoning")
    properties.update({
        # One model per server: any other name is 404 model_not_found.
        "model": {"const": model},
        "input": {"anyOf": [{"type": "string"},
                            {"type": "array", "items": input_item_schema()}]},
        "tools": nullable({"type": "array", "items": tool_schema()}),
        # Not in OpenAI's spec; Codex sends it (a JSON object or string, kept, echoed).
        "client_metadata": nullable({"anyOf": [{"type": "string"}, {"type": "object"}]}),
        # Naming a function needs that tool in ``tools`` (a cross-field rule), and the
        # allowed-tools / built-in / MCP / custom choices are refused: the options only.
        "tool_choice": nullable({"enum": ["none", "auto", "required"]}),
        # A previous response must exist (404 otherwise): the stateful test chains them.
        "previous_response_id": NULL,
        # So must a conversation; the Conversations API is not in the vendored spec, so
        # the fuzzers make none (tests/server/test_conversations.py covers it).
        "conversation": NULL,
        # Options that change nothing here (no explicit prompt cache): any object, ignored.
        "prompt_cache_options": nullable({"type": "object"}),
        # The spec's minimum is 16 (OpenAI's); the server takes any positive count up to
        # MAX_OUTPUT_TOKENS_LIMIT (an input bound, RELIABILITY.md trap 8).
        "max_output_tokens": nullable({"type": "integer", "minimum": 1,
                                       "maximum": MAX_OUTPUT_TOKENS_LIMIT}),
        # The spec says integer; a count of tool calls below 1 is refused.
        "max_tool_calls": nullable({"type": "integer", "minimum": 1}),
        # The spec's Metadata is an open map; OpenAI documents (and the server enforces) at
        # most 16 keys of at most 64 characters, values of at most 512.
        "metadata": nullable({"type": "object", "maxProperties": 16,
                              "propertyNames": {"maxLength": 64},
                              "additionalProperties": {"type": "string", "maxLength": 512}}),
        "include": nullable({"type": "array", "items": {"enum": sorted(INCLUDABLE)}}),
        "prompt_cache_key": nullable({"type": "string", "maxLength": 1024}),
        # The spec's tiers include "fast" and "ultrafast", which this server does not know.
        "service_tier": nullable({"enum": ["auto", "default", "flex", "scale", "priority"]}),
        "stream_options": nullable(closed({"include_obfuscation": {"type": "boolean"}})),
        "reasoning": nullable(closed({
            # The spec's efforts include "max", which this server does not know.
            "effort": nullable({"enum": ["none", "minimal", "low", "medium", "high",
                                         "xhigh"]}),
            "summary": reasoning["summary"],
            "generate_summary": reasoning["generate_summary"],
            "context": reasoning["context"],
            "mode": nullable({"type": "string"}),
        })),
        "text": nullable(closed({
            "format": nullable({"anyOf": [
                closed({"type": {"const": "text"}}, ("type",)),
                closed({"type": {"const": "json_object"}}, ("type",)),
                closed({
                    "type": {"const": "json_schema"},
                    # OpenAI documents ^[a-zA-Z0-9_-]{1,64}$ for the name; the spec says string.
                    "name": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
                    "schema": {"type": "object"},
                    "description": {"type": "string"},
                    "strict": nullable({"type": "boolean"}),
                }, ("type", "schema", "name")),
            ]}),
            "verbosity": nullable({"enum": ["low", "medium", "high"]}),
        })),
    })
    # Features this server does not have: accepted only when null (400 otherwise).
    properties.update({name: NULL for name in NULL_ONLY if name in properties})
    # Compaction entries only; the spec's threshold minimum (1000) is not the server's (1).
    properties["context_management"] = nullable({"type": "array", "items": closed({
        "type": {"const": "compaction"},
        "compact_threshold": nullable({"type": "integer", "minimum": 1}),
    }, ("type",))})
    properties.update(_extension_properties())
    schema = closed(properties, ("model", "input"))
    # Background mode needs a stored response (400 otherwise).
    schema["not"] = {"properties": {"background": {"const": True}, "store": {"const": False}},
                     "required": ["background", "store"]}
    return schema


# -- the whole document ----------------------------------------------------------------

def _drop_discriminators(value: Any) -> None:
    """Without a mapping, a discriminator's values are schema names in OpenAPI; OpenAI's
    are the ``type`` constants. Without the hint each oneOf validates the same."""
    if isinstance(value, dict):
        value.pop("discriminator", None)
        for key, item in value.items():
            if key != "properties":
                _drop_discriminators(item)
            else:
                for sub in item.values():
                    _drop_discriminators(sub)
    elif isinstance(value, list):
        for item in value:
            _drop_discriminators(item)


def _operations(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {op["operationId"]: op for methods in spec["paths"].values()
            for op in methods.values() if isinstance(op, dict) and "operationId" in op}


def _parameter(operation: dict[str, Any], name: str) -> dict[str, Any]:
    schema: dict[str, Any] = next(p for p in operation["parameters"] if p["name"] == name)[
        "schema"]
    return schema


def _add_what_the_spec_leaves_out(operations: dict[str, dict[str, Any]]) -> None:
    error = {"description": "Error", "content": {
        "application/json": {"schema": {"$ref": SCHEMAS + "ErrorResponse"}}}}
    for name, statuses in ERROR_STATUSES.items():
        for status in statuses:
            operations[name]["responses"].setdefault(status, copy.deepcopy(error))
    create_ok = operations["createResponse"]["responses"]["200"]["content"]
    operations["getResponse"]["responses"]["200"]["content"]["text/event-stream"] = (
        copy.deepcopy(create_ok["text/event-stream"]))
    # The stream's last line is ``data: [DONE]``, as in vLLM's streams and OpenAI's chat
    # streams (the openai SDKs stop reading there). Every other event's data is still
    # validated as a ResponseStreamEvent; that [DONE] comes once, last, is checked by
    # test_streams.py.
    for name in ("createResponse", "getResponse"):
        sse = operations[name]["responses"]["200"]["content"]["text/event-stream"]
        data = sse["schema"]["properties"]["data"]
        sse["schema"]["properties"]["data"] = {
            "type": "string", "if": {"const": "[DONE]"}, "else": data}


def _as_openai_sends_it(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    _drop_discriminators(spec)
    page = schemas["ResponseItemList"]["properties"]
    for key in ("first_id", "last_id"):
        page[key] = nullable(page[key])
    model_properties = schemas["ModelResponseProperties"]["properties"]
    model_properties["user"] = nullable(model_properties["user"])
    response = schemas["Response"]["allOf"][-1]["properties"]
    response["usage"] = nullable(response["usage"])


def served_spec(model: str) -> dict[str, Any]:
    """The spec the fuzzers run with (see the module docstring)."""
    spec = openai_spec()
    operations = _operations(spec)
    assert set(OPERATIONS) <= set(operations), sorted(operations)
    _add_what_the_spec_leaves_out(operations)
    _as_openai_sends_it(spec)
    # The spec's own prose: "Limit can range between 1 and 100".
    _parameter(operations["listInputItems"], "limit").update(minimum=1, maximum=100)
    # An input bound of this server: a sequence number, -1 meaning "from the start".
    _parameter(operations["getResponse"], "starting_after").update(minimum=-1, maximum=2**62)
    schemas = spec["components"]["schemas"]
    schemas["CreateResponse"] = create_request_schema(schemas, model)
    return spec
