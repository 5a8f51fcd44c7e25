"""The create-response request body: its schema, and the decoding that enforces it.

Decoding is declarative: msgspec checks types, ranges, enums and unknown fields in one
pass and reports the failing path (``$.text.format.type``), which becomes the OpenAI
error's ``param`` (``text.format.type``). What a type cannot say (input items, tools,
metadata limits, field combinations) is checked in :func:`parse_create_request`.

Fields are OpenAI's ``ResponseCreateParams`` plus vLLM's sampling extensions
(:data:`VLLM_EXTENSION_FIELDS`), which compatibility mode refuses.

JSON nested deeper than :data:`~.nesting.MAX_NESTING_DEPTH` levels is refused with a 400
naming the field (:mod:`.nesting`), before anything copies or encodes it again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, TypeVar

import msgspec

from ..errors import InvalidRequest
from .items import normalize_input
from .nesting import check_depth, deep_field, too_deep
from .tooldefs import validate_tool_choice, validate_tools

NonNegInt = Annotated[int, msgspec.Meta(ge=0)]
PosInt = Annotated[int, msgspec.Meta(ge=1)]
Metadata = dict[
    Annotated[str, msgspec.Meta(max_length=64)], Annotated[str, msgspec.Meta(max_length=512)]
]

INCLUDABLE = frozenset(
    {
        "file_search_call.results",
        "web_search_call.results",
        "web_search_call.action.sources",
        "message.input_image.image_url",
        "computer_call_output.output.image_url",
        "code_interpreter_call.outputs",
        "reasoning.encrypted_content",
        "message.output_text.logprobs",
    }
)

# vLLM-only body fields: accepted as extensions, refused in compatibility mode.
VLLM_EXTENSION_FIELDS = (
    "request_id",
    "cache_salt",
    "priority",
    "enable_response_messages",
    "ignore_eos",
    "top_k",
    "min_p",
    "repetition_penalty",
    "seed",
    "stop",
)

MAX_OUTPUT_TOKENS_LIMIT = 1 << 20


class _Closed(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Base for request sub-objects: unknown fields are an error, as at the top level."""


class TextFormat(_Closed, kw_only=True):
    type: Literal["text", "json_schema", "json_object"]
    name: Annotated[str, msgspec.Meta(max_length=64, pattern=r"^[A-Za-z0-9_-]+$")] | None = None
    schema: dict[str, Any] | None = None
    description: str | None = None
    strict: bool | None = None


class TextConfig(_Closed):
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ReasoningConfig(_Closed):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None
    context: Literal["auto", "current_turn", "all_turns"] | None = None
    mode: str | None = None


class StreamOptions(_Closed):
    include_obfuscation: bool | None = None


class CreateResponseRequest(_Closed, kw_only=True):
    model: str | None = None
    input: str | list[dict[str, Any]] | None = None
    instructions: str | None = None
    previous_response_id: str | None = None
    store: bool | None = None
    background: bool | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: Annotated[int, msgspec.Meta(ge=1, le=MAX_OUTPUT_TOKENS_LIMIT)] | None = None
    max_tool_calls: PosInt | None = None
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    top_logprobs: Annotated[int, msgspec.Meta(ge=0, le=20)] | None = None
    text: TextConfig | None = None
    reasoning: ReasoningConfig | None = None
    truncation: Literal["auto", "disabled"] | None = None
    metadata: Metadata | None = None
    include: list[str] | None = None
    prompt_cache_key: Annotated[str, msgspec.Meta(max_length=1024)] | None = None
    prompt_cache_retention: Literal["in_memory", "24h"] | None = None
    safety_identifier: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    service_tier: Literal["auto", "default", "flex", "scale", "priority"] | None = None
    user: str | None = None
    # The client's own data about the request (Codex sends its session and turn ids):
    # kept with the response (echoed, so also stored), never interpreted.
    client_metadata: str | dict[str, Any] | None = None
    # Options that change nothing here (no explicit prompt cache, no background tiers):
    # accepted and ignored.
    prompt_cache_options: dict[str, Any] | None = None
    background_options: dict[str, Any] | None = None
    # A Conversations API conversation, "conv_..." or {"id": "conv_..."}: its items are
    # the history, and the turn is appended to it (see conversation_id()).
    conversation: str | dict[str, Any] | None = None
    # [{"type": "compaction", "compact_threshold": N}]: compact the prompt first when it
    # is over N tokens (compact_threshold()).
    context_management: list[dict[str, Any]] | None = None
    # OpenAI fields for features this server does not have: accepted only when null.
    prompt: dict[str, Any] | None = None
    moderation: Any = None
    image: Any = None
    access_programs: Any = None
    # vLLM extensions (VLLM_EXTENSION_FIELDS).
    request_id: Annotated[str, msgspec.Meta(min_length=1, max_length=256)] | None = None
    cache_salt: str | None = None
    priority: Annotated[int, msgspec.Meta(ge=-(2**31), le=2**31 - 1)] | None = None
    enable_response_messages: bool | None = None
    ignore_eos: bool | None = None
    top_k: Annotated[int, msgspec.Meta(ge=-1)] | None = None
    min_p: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    repetition_penalty: Annotated[float, msgspec.Meta(gt=0, le=2)] | None = None
    seed: Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)] | None = None
    stop: str | Annotated[list[str], msgspec.Meta(max_length=16)] | None = None


_decoder = msgspec.json.Decoder(CreateResponseRequest)
_Body = TypeVar("_Body")
# msgspec says "- at `$.a.b`", or "- at `key` in `$.a`" when a mapping key is invalid.
_PATH = re.compile(r" - at (?:`key` in )?`\$(?P<path>[^`]*)`$")
_FIELD = re.compile(r"(?:unknown|required) field `(?P<name>[^`]+)`")


def _param_from_path(path: str) -> str | None:
    path = path.lstrip(".").replace("[...]", "")
    return path or None


def decode_error_to_invalid(exc: msgspec.MsgspecError) -> InvalidRequest:
    """Translate msgspec's message (``... - at `$.a.b```) into an OpenAI error."""
    message = str(exc)
    param: str | None = None
    match = _PATH.search(message)
    if match:
        param = _param_from_path(match.group("path"))
        message = message[: match.start()]
    field = _FIELD.search(message)
    if field:
        param = f"{param}.{field.group('name')}" if param else field.group("name")
    if isinstance(exc, msgspec.ValidationError):
        text = f"Invalid value for '{param}': {message}." if param else f"{message}."
        code = "invalid_value"
        if "unknown field" in message:
            text, code = f"Unknown parameter: '{param}'.", "unknown_parameter"
        elif "required field" in message:
            text, code = f"Missing required parameter: '{param}'.", "missing_required_parameter"
        elif message.startswith("Expected `") and "got" in message:
            code = "invalid_type"
        return InvalidRequest(text, param=param, code=code)
    return InvalidRequest(
        f"We could not parse the JSON body of your request ({message}).",
        code="invalid_json",
    )


def decode_body(decoder: msgspec.json.Decoder[_Body], body: bytes) -> _Body:
    """Decode a JSON body with ``decoder``; every failure is an InvalidRequest (400),
    JSON nested deeper than the limit too (naming the field)."""
    try:
        decoded = decoder.decode(body)
    except RecursionError:  # deeper than the decoder goes: say where
        raise too_deep(deep_field(body)) from None
    except (msgspec.MsgspecError, UnicodeDecodeError) as exc:
        if isinstance(exc, msgspec.MsgspecError):
            raise decode_error_to_invalid(exc) from None
        raise InvalidRequest(
            "We could not parse the JSON body of your request.", code="invalid_json"
        ) from None
    check_depth(decoded)
    return decoded


def decode_create_request(body: bytes) -> CreateResponseRequest:
    """Decode and validate a request body; every failure is an InvalidRequest (400)."""
    request = decode_body(_decoder, body)
    check_create_request(request)
    return request


def check_metadata(metadata: dict[str, str] | None) -> None:
    """At most 16 keys (their lengths are the schema's)."""
    if metadata is not None and len(metadata) > 16:
        raise InvalidRequest(
            "Invalid 'metadata': too many properties. Expected an object with at most 16 "
            f"properties, but got an object with {len(metadata)} properties instead.",
            param="metadata",
            code="object_above_max_properties",
        )


def conversation_id(request: CreateResponseRequest) -> str | None:
    """The id of the request's ``conversation`` (``"conv_..."`` or ``{"id": ...}``)."""
    value = request.conversation
    if value is None:
        return None
    if isinstance(value, dict):
        for key in value:
            if key != "id":
                raise InvalidRequest(f"Unknown parameter: 'conversation.{key}'.",
                                     param=f"conversation.{key}", code="unknown_parameter")
        value = value.get("id")
        if not isinstance(value, str):
            raise InvalidRequest(
                "Missing required parameter: 'conversation.id' (a string)."
                if value is None else "Invalid type for 'conversation.id': expected a string.",
                param="conversation.id",
                code="missing_required_parameter" if value is None else "invalid_type")
    if not value:
        raise InvalidRequest("Invalid 'conversation': the conversation id is empty.",
                             param="conversation", code="invalid_value")
    return value


def check_create_request(request: CreateResponseRequest) -> None:
    """The rules a type cannot express."""
    if not request.model:
        raise InvalidRequest(
            "Missing required parameter: 'model'.", param="model", code="missing_required_parameter"
        )
    if request.input is None:
        raise InvalidRequest(
            "Missing required parameter: 'input'.", param="input", code="missing_required_parameter"
        )
    normalize_input(request.input)
    check_metadata(request.metadata)
    if conversation_id(request) is not None and request.previous_response_id is not None:
        raise InvalidRequest(
            "'conversation' and 'previous_response_id' cannot be used together: the "
            "conversation already holds the earlier turns.", param="conversation",
            code="invalid_value")
    if request.background and request.store is False:
        raise InvalidRequest("Background mode requires 'store' to be true.", param="background")
    if request.tools is not None:
        validate_tools(request.tools)
    if request.tool_choice is not None:
        validate_tool_choice(request.tool_choice, request.tools or [])
    for index, value in enumerate(request.include or ()):
        if value not in INCLUDABLE:
            raise InvalidRequest(
                f"Invalid value for 'include[{index}]': {value!r} is not one of "
                f"{sorted(INCLUDABLE)}.",
                param=f"include[{index}]",
                code="invalid_value",
            )
    fmt = request.text.format if request.text else None
    if fmt is not None and fmt.type == "json_schema":
        if fmt.name is None:
            raise InvalidRequest(
                "Missing required parameter: 'text.format.name'.",
                param="text.format.name",
                code="missing_required_parameter",
            )
        if fmt.schema is None:
            raise InvalidRequest(
                "Missing required parameter: 'text.format.schema'.",
                param="text.format.schema",
                code="missing_required_parameter",
            )
    compact_threshold(request.context_management)
    for name in ("prompt", "moderation", "image", "access_programs"):
        if getattr(request, name) is not None:
            raise InvalidRequest(
                f"'{name}' is not supported by this server.",
                param=name,
                code="unsupported_parameter",
            )


def compact_threshold(context_management: Sequence[Any] | None) -> int | None:
    """The token count past which a create request compacts its prompt first (its
    ``context_management`` entry of type ``compaction``; 0: the server's default), or
    None; raises 400 on a bad entry."""
    threshold: int | None = None
    for index, entry in enumerate(context_management or ()):
        param = f"context_management[{index}]"
        if not isinstance(entry, Mapping):
            raise InvalidRequest(f"Invalid type for '{param}': expected an object.",
                                 param=param, code="invalid_type")
        unknown = sorted(set(entry) - {"type", "compact_threshold"})
        if unknown:
            raise InvalidRequest(f"Unknown parameter: '{param}.{unknown[0]}'.",
                                 param=f"{param}.{unknown[0]}", code="unknown_parameter")
        if entry.get("type") != "compaction":
            raise InvalidRequest(
                f"Invalid value for '{param}.type': only 'compaction' is supported.",
                param=f"{param}.type", code="invalid_value")
        value = entry.get("compact_threshold")
        if value is None:
            # The server's threshold (DEFAULT_COMPACT_THRESHOLD): 0 here.
            threshold = 0 if threshold is None else threshold
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidRequest(
                f"Invalid value for '{param}.compact_threshold': expected a positive "
                "integer.", param=f"{param}.compact_threshold", code="invalid_value")
        threshold = value if not threshold else min(threshold, value)
    return threshold


def extension_fields_set(request: CreateResponseRequest) -> list[str]:
    """The vLLM-only fields a request set, in the order of VLLM_EXTENSION_FIELDS."""
    return [name for name in VLLM_EXTENSION_FIELDS if getattr(request, name) is not None]


def stop_sequences(request: CreateResponseRequest) -> tuple[str, ...]:
    if request.stop is None:
        return ()
    return (request.stop,) if isinstance(request.stop, str) else tuple(request.stop)
