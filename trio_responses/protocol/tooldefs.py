"""The request's tools: what each kind is, how it is checked, what the model is offered,
and how the response echoes them.

The model is offered functions, in the chat-completions form chat templates take
(:class:`OfferedTool`, from :func:`offered_tools`):

- a ``function`` tool, under its own name;
- a ``custom`` tool (free-form text input), as a function of one string argument,
  ``input``; a call of it comes back as a ``custom_tool_call`` item with that string as
  its ``input``;
- the function and custom tools of a ``namespace`` tool, each as
  ``<namespace>__<name>`` (vLLM's convention, and a name that fits the
  ``^[a-zA-Z0-9_-]+$`` pattern models were trained on); a call of one comes back with its
  own ``name`` and its ``namespace``.

Hosted tools (:data:`HOSTED_TOOL_REQUIRED`: web search, file search, code interpreter,
computer use, MCP, shell, ... — the ones OpenAI runs itself) cannot run here. They are
accepted and echoed, never offered to the model; :func:`refuse_hosted_tools` refuses them
for servers configured to. A ``tool_choice`` that forces one is always refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .checks import check_keys, invalid, require_str

# Between a namespace's name and a tool's own name, in the name the model sees.
NAMESPACE_SEPARATOR = "__"
# The one argument of the function a custom tool is offered as.
CUSTOM_INPUT = "input"
CUSTOM_PARAMETERS: Mapping[str, Any] = {
    "type": "object",
    "properties": {CUSTOM_INPUT: {"type": "string",
                                  "description": "The input of this tool, as free-form text."}},
    "required": [CUSTOM_INPUT],
    "additionalProperties": False,
}

# Every hosted tool type of the openai SDK (types/responses/tool_param.py), with the
# fields its echo needs for the SDK's response models to parse it (and their JSON types).
HOSTED_TOOL_REQUIRED: Mapping[str, tuple[tuple[str, tuple[type, ...]], ...]] = {
    "file_search": (("vector_store_ids", (list,)),),
    "computer": (),
    "computer_use_preview": (("display_height", (int,)), ("display_width", (int,)),
                             ("environment", (str,))),
    "web_search": (),
    "web_search_2025_08_26": (),
    "web_search_preview": (),
    "web_search_preview_2025_03_11": (),
    "mcp": (("server_label", (str,)),),
    "code_interpreter": (("container", (str, dict)),),
    "programmatic_tool_calling": (),
    "image_generation": (),
    "local_shell": (),
    "shell": (),
    "tool_search": (),
    "apply_patch": (),
}
# tool_choice types that name a hosted tool (the SDK's ToolChoiceTypes has computer_use,
# which is no tool type of its own).
HOSTED_TOOL_CHOICES = frozenset(HOSTED_TOOL_REQUIRED) | {"computer_use"}

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
_CALLERS = ("direct", "programmatic")
_FUNCTION_KEYS = ("type", "name", "description", "parameters", "strict", "allowed_callers",
                  "defer_loading", "async", "output_schema")
_CUSTOM_KEYS = ("type", "name", "description", "format", "allowed_callers", "defer_loading",
                "async")


@dataclass(frozen=True, slots=True)
class OfferedTool:
    """A tool as the model sees it: a function, under ``model_name``."""

    model_name: str
    kind: Literal["function", "custom"]
    # The tool's own name and its namespace, as a call of it is reported.
    name: str
    namespace: str | None
    # The function in the chat-completions form chat templates take.
    chat: Mapping[str, Any]
    # A custom tool's grammar, (syntax, definition): "lark" or "regex"; None otherwise.
    grammar: tuple[str, str] | None = None


def offered_tools(tools: Sequence[Mapping[str, Any]]) -> tuple[OfferedTool, ...]:
    """The tools the model is offered, in request order (hosted tools are not; nor are
    functions only a program may call, ``allowed_callers: ["programmatic"]``)."""
    offered: list[OfferedTool] = []
    for tool in tools:
        if tool.get("type") == "namespace":
            offered.extend(_offered(member, tool["name"]) for member in tool["tools"]
                           if _directly_callable(member))
        elif tool.get("type") in ("function", "custom") and _directly_callable(tool):
            offered.append(_offered(tool, None))
    return tuple(offered)


def _directly_callable(tool: Mapping[str, Any]) -> bool:
    callers = tool.get("allowed_callers")
    return callers is None or "direct" in callers


def _offered(tool: Mapping[str, Any], namespace: str | None) -> OfferedTool:
    name = str(tool["name"])
    model_name = name if namespace is None else f"{namespace}{NAMESPACE_SEPARATOR}{name}"
    function: dict[str, Any] = {"name": model_name}
    if tool.get("description") is not None:
        function["description"] = tool["description"]
    if tool["type"] == "custom":
        function["parameters"] = dict(CUSTOM_PARAMETERS)
        fmt = tool.get("format") or {}
        grammar = (str(fmt["syntax"]), str(fmt["definition"])) \
            if fmt.get("type") == "grammar" else None
        return OfferedTool(model_name, "custom", name, namespace,
                           {"type": "function", "function": function}, grammar)
    for key in ("parameters", "strict"):
        if key in tool:
            function[key] = tool[key]
    return OfferedTool(model_name, "function", name, namespace,
                       {"type": "function", "function": function})


def custom_input(arguments: str) -> str:
    """A custom tool call's input from the arguments of the function it was offered as
    (``{"input": "..."}``); arguments that are not that object are the input as written."""
    try:
        value = json.loads(arguments)
    except ValueError:
        return arguments
    text = value.get(CUSTOM_INPUT) if isinstance(value, dict) else None
    return text if isinstance(text, str) else arguments


def custom_arguments(input_text: str) -> str:
    """The arguments of the function a custom tool is offered as, for its ``input``."""
    return json.dumps({CUSTOM_INPUT: input_text}, ensure_ascii=False)


def model_tool_name(name: str, namespace: str | None) -> str:
    """The name the model knows a (namespaced) tool by."""
    return name if not namespace else f"{namespace}{NAMESPACE_SEPARATOR}{name}"


def forced_tool(choice: str | Mapping[str, Any] | None,
                tools: Sequence[Mapping[str, Any]]) -> OfferedTool | None:
    """The tool a named ``tool_choice`` forces (a function or custom tool), or None."""
    if not isinstance(choice, Mapping):
        return None
    named = _named(choice.get("type"), choice.get("name"), tools)
    return named[0] if len(named) == 1 else None


def _named(kind: Any, name: Any, tools: Sequence[Mapping[str, Any]]) -> list[OfferedTool]:
    """The offered tools of ``kind`` a tool choice's ``name`` may mean: the one of that
    full name, else every namespaced one of that own name."""
    offered = [tool for tool in offered_tools(tools) if tool.kind == kind]
    exact = [tool for tool in offered if tool.model_name == name]
    return exact or [tool for tool in offered if tool.name == name]


# -- checks ----------------------------------------------------------------------------

def validate_tools(tools: Sequence[Mapping[str, Any]]) -> None:
    model_names: set[str] = set()
    for index, tool in enumerate(tools):
        param = f"tools[{index}]"
        kind = tool.get("type")
        if kind in ("function", "custom"):
            names = [_check_callable(tool, param)]
        elif kind == "namespace":
            names = _check_namespace(tool, param)
        elif kind in HOSTED_TOOL_REQUIRED:
            _check_hosted(tool, param)
            continue
        else:
            raise invalid(f"Tool type {kind!r} is not supported by this server.",
                          f"{param}.type", "unsupported_tool")
        for name in names:
            if name in model_names:
                raise invalid(f"Duplicate tool name {name!r}.", f"{param}.name")
            model_names.add(name)


def _check_name(tool: Mapping[str, Any], param: str) -> str:
    name = require_str(tool, "name", param)
    if not name or len(name) > 64 or not set(name) <= _NAME_CHARS:
        raise invalid(f"Invalid '{param}.name': must match ^[a-zA-Z0-9_-]{{1,64}}$.",
                      f"{param}.name")
    return name


def _check_type(tool: Mapping[str, Any], key: str, kinds: tuple[type, ...], what: str,
                param: str) -> None:
    value = tool.get(key)
    if value is not None and (not isinstance(value, kinds)
                              or (isinstance(value, bool) and bool not in kinds)):
        raise invalid(f"Invalid type for '{param}.{key}': expected {what}.",
                      f"{param}.{key}", "invalid_type")


def _check_callable(tool: Mapping[str, Any], param: str) -> str:
    """A function or custom tool (top-level or in a namespace); returns its name."""
    custom = tool.get("type") == "custom"
    check_keys(tool, _CUSTOM_KEYS if custom else _FUNCTION_KEYS, param)
    name = _check_name(tool, param)
    _check_type(tool, "description", (str,), "a string", param)
    _check_type(tool, "defer_loading", (bool,), "a boolean", param)
    _check_type(tool, "async", (bool,), "a boolean", param)
    callers = tool.get("allowed_callers")
    if callers is not None and (not isinstance(callers, list) or not callers
                                or any(caller not in _CALLERS for caller in callers)):
        raise invalid(f"Invalid value for '{param}.allowed_callers': expected a non-empty "
                      "array of 'direct' and 'programmatic'.", f"{param}.allowed_callers")
    if custom:
        _check_custom_format(tool.get("format"), f"{param}.format")
    else:
        _check_type(tool, "parameters", (dict,), "an object", param)
        _check_type(tool, "output_schema", (dict,), "an object", param)
        _check_type(tool, "strict", (bool,), "a boolean", param)
    return name


def _check_custom_format(fmt: Any, param: str) -> None:
    """``{"type": "text"}`` or ``{"type": "grammar", "syntax": "lark"|"regex",
    "definition": str}``. A forced tool's grammar constrains its input (structured
    output); the grammar itself is compiled by the runtime (runtime/tools.py)."""
    if fmt is None:
        return
    if not isinstance(fmt, dict):
        raise invalid(f"Invalid type for '{param}': expected an object.", param, "invalid_type")
    if fmt.get("type") == "text":
        check_keys(fmt, ("type",), param)
    elif fmt.get("type") == "grammar":
        check_keys(fmt, ("type", "syntax", "definition"), param)
        require_str(fmt, "definition", param)
        if fmt.get("syntax") not in ("lark", "regex"):
            raise invalid(f"Invalid value for '{param}.syntax': expected 'lark' or 'regex'.",
                          f"{param}.syntax")
    else:
        raise invalid(f"Invalid value for '{param}.type': expected 'text' or 'grammar'.",
                      f"{param}.type")


def _check_namespace(tool: Mapping[str, Any], param: str) -> list[str]:
    """A namespace of function and custom tools; returns the names the model sees."""
    check_keys(tool, ("type", "name", "description", "tools"), param)
    namespace = _check_name(tool, param)
    require_str(tool, "description", param)
    members = tool.get("tools")
    if not isinstance(members, list) or not members:
        raise invalid(f"Invalid value for '{param}.tools': expected a non-empty array of "
                      "function and custom tools.", f"{param}.tools")
    names: list[str] = []
    for index, member in enumerate(members):
        where = f"{param}.tools[{index}]"
        if not isinstance(member, dict):
            raise invalid(f"Invalid type for '{where}': expected an object.", where,
                          "invalid_type")
        if member.get("type") not in ("function", "custom"):
            raise invalid(f"Invalid value for '{where}.type': a namespace holds 'function' "
                          "and 'custom' tools only.", f"{where}.type")
        names.append(model_tool_name(_check_callable(member, where), namespace))
    return names


def _check_hosted(tool: Mapping[str, Any], param: str) -> None:
    for key, kinds in HOSTED_TOOL_REQUIRED[str(tool["type"])]:
        if tool.get(key) is None:
            raise invalid(f"Missing required parameter: '{param}.{key}'.", f"{param}.{key}",
                          "missing_required_parameter")
        what = " or ".join({str: "a string", int: "an integer", list: "an array",
                            dict: "an object"}[kind] for kind in kinds)
        _check_type(tool, key, kinds, what, param)


def refuse_hosted_tools(tools: Sequence[Mapping[str, Any]]) -> None:
    """Refuse the first hosted tool (for servers run with --responses-reject-hosted-tools)."""
    for index, tool in enumerate(tools):
        if tool.get("type") in HOSTED_TOOL_REQUIRED:
            raise invalid(
                f"Tool type {tool['type']!r} is a hosted tool, which this server cannot run "
                "and is configured to refuse (--responses-reject-hosted-tools).",
                f"tools[{index}].type", "unsupported_tool")


def validate_tool_choice(choice: str | Mapping[str, Any],
                         tools: Sequence[Mapping[str, Any]]) -> None:
    if isinstance(choice, str):
        if choice not in ("none", "auto", "required"):
            raise invalid(f"Invalid value for 'tool_choice': {choice!r}.", "tool_choice")
        if choice == "required" and not offered_tools(tools):
            raise invalid("'tool_choice' is 'required' but no tool the model can call was "
                          "given (hosted tools are never called here).", "tool_choice")
        return
    kind = choice.get("type")
    if kind in HOSTED_TOOL_CHOICES:
        raise invalid(
            f"'tool_choice' forces the hosted tool {kind!r}, which this server cannot run "
            "(hosted tools are accepted in 'tools' but never called). Use 'auto', "
            "'required', 'none', or name a function or custom tool.",
            "tool_choice.type", "unsupported_tool")
    if kind not in ("function", "custom"):
        raise invalid(
            "Only 'none', 'auto', 'required', and function and custom tool choices are "
            "supported.", "tool_choice.type", "unsupported_value")
    check_keys(choice, ("type", "name"), "tool_choice")
    name = require_str(choice, "name", "tool_choice")
    named = _named(kind, name, tools)
    if not named:
        raise invalid(f"Tool choice {name!r} is not one of the {kind} tools given.",
                      "tool_choice.name")
    if len(named) > 1:
        raise invalid(
            f"Tool choice {name!r} is ambiguous: it is in more than one namespace "
            f"({', '.join(tool.model_name for tool in named)}); name it by its full name.",
            "tool_choice.name")


# -- the echo --------------------------------------------------------------------------

def echo_tools(tools: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The request's tools as the response object shows them: function tools with
    OpenAI's defaults filled in, every other tool as given."""
    return [_echo_function(tool) if tool.get("type") == "function" else dict(tool)
            for tool in tools]


def _echo_function(tool: Mapping[str, Any]) -> dict[str, Any]:
    echo = {"type": "function", "name": tool["name"], "description": tool.get("description"),
            "parameters": tool.get("parameters"), "strict": tool.get("strict", True)}
    echo.update({key: tool[key] for key in ("allowed_callers", "defer_loading", "async",
                                            "output_schema") if key in tool})
    return echo
