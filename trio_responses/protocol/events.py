"""One response's events, built from what the engine says, checked before release.

:class:`ResponseEvents` is sans-io: the runtime tells it what happened (started, text
arrived, the engine finished or failed, the client cancelled) and gets back the events
to send, in order, each numbered and checked by an :class:`EventValidator`. It also keeps
the response object itself, so the object a client retrieves and the events it streamed
always agree.

If a built event breaks the state machine, that event is not sent: an ``error`` event
and ``response.failed`` are sent instead, so the stream still ends well-formed. Once a
terminal event is out, every further call returns no events: a late engine result can
never overwrite a final state.

A cancelled response ends with ``response.incomplete`` whose ``response.status`` is
``cancelled``: the SDK knows no ``response.cancelled`` event, and cancellation is an
early end, not a failure.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .ids import IdFactory
from .machine import EventValidator, ProtocolViolation
from .sse import encode_json, frame

Event = dict[str, Any]
# An event and its SSE frame, encoded once when it is built (its size is checked then).
Emitted = tuple[Event, bytes]


# The fixed parts of an output text delta's frame (see ResponseEvents.plain_text).
_TEXT_DELTA = "response.output_text.delta"
_TEXT_DELTA_HEAD = (b"event: " + _TEXT_DELTA.encode() + b'\ndata: {"type":"' + _TEXT_DELTA.encode()
                    + b'","sequence_number":')
_TEXT_DELTA_TAIL = b',"logprobs":[]}\n\n'


class EventTooLarge(ProtocolViolation):
    """An event whose frame is over the server's per-event byte limit."""


class ResponseEvents:
    def __init__(
        self, response: dict[str, Any], ids: IdFactory, *, max_event_bytes: int = 0
    ) -> None:
        self.response = response
        self._ids = ids
        self._max_event_bytes = max_event_bytes
        self._validator = EventValidator()
        self._item: dict[str, Any] | None = None
        self._part: dict[str, Any] | None = None
        self._pending: list[Emitted] = []
        # The open output_text part, its place (item_id, output_index, content_index) and
        # that place as JSON between the sequence number and the delta (plain_text).
        self._text_template: tuple[dict[str, Any], dict[str, Any], bytes] | None = None
        # Set for a request with include ["reasoning.encrypted_content"]: seals a
        # reasoning item's text into its encrypted_content when the item is done.
        self.seal_reasoning: Callable[[str], str] | None = None

    # -- state ---------------------------------------------------------------------

    @property
    def status(self) -> str:
        return str(self.response["status"])

    @property
    def finished(self) -> bool:
        return self._validator.terminal is not None

    @property
    def in_tool_call(self) -> bool:
        """Whether a tool call item is open (its arguments are still coming)."""
        return self._item is not None and self._item["type"] in ("function_call",
                                                                 "custom_tool_call")

    @property
    def next_sequence(self) -> int:
        return self._validator.next_sequence

    def output_text(self) -> str:
        return "".join(
            part.get("text", "")
            for item in self.response["output"]
            if item.get("type") == "message"
            for part in item["content"]
        )

    # -- what happened -------------------------------------------------------------

    def created(self) -> list[Emitted]:
        def build() -> None:
            self._emit("response.created", response=self._snapshot())
            if self.status == "queued":
                self._emit("response.queued", response=self._snapshot())

        return self._batch(build)

    def in_progress(self) -> list[Emitted]:
        def build() -> None:
            self.response["status"] = "in_progress"
            self._emit("response.in_progress", response=self._snapshot())

        return self._batch(build)

    def text(self, delta: str, logprobs: Sequence[Mapping[str, Any]] = ()) -> list[Emitted]:
        """Output text from the model; ``logprobs`` in the output_text part's shape."""
        if not logprobs:
            emitted = self.plain_text(delta)
            if emitted is not None:
                return emitted

        def build() -> None:
            part = self._part_of("message")
            part["text"] += delta
            part["logprobs"].extend(logprobs)
            self._emit(
                "response.output_text.delta",
                **self._where(),
                delta=delta,
                logprobs=[_delta_logprob(lp) for lp in logprobs],
            )

        return self._batch(build)

    def plain_text(self, delta: str) -> list[Emitted] | None:
        """The common case of :meth:`text`, once per engine step per stream: a delta
        without logprobs into the open output_text part. Its event has a fixed shape, so
        its frame is made from a template of the part (only the sequence number and the
        delta change; byte for byte what :func:`~.sse.frame` makes, which the tests
        compare), and the event is checked by the validator like every other. None, with
        nothing changed, where the general path must decide (no open message part, too
        large, not valid): :meth:`text` then builds, checks and fails exactly as always
        (a run offered a delta in the engine's hand-over leaves it to its task then)."""
        part, item = self._part, self._item
        if part is None or item is None or item["type"] != "message" or self.finished:
            return None
        template = self._text_template
        if (template is None or template[0] is not part
                or template[1]["output_index"] != len(self.response["output"]) - 1):
            where = self._where()
            template = self._text_template = (part, where,
                                              b"," + encode_json(where)[1:-1] + b',"delta":')
        where, middle = template[1], template[2]
        sequence = self._validator.next_sequence
        event: Event = {"type": _TEXT_DELTA, "sequence_number": sequence, **where,
                        "delta": delta, "logprobs": []}
        data = b"".join((_TEXT_DELTA_HEAD, b"%d" % sequence, middle, encode_json(delta),
                         _TEXT_DELTA_TAIL))
        if self._max_event_bytes and len(data) > self._max_event_bytes:
            return None
        try:
            self._validator.check(event)
        except ProtocolViolation:
            return None  # raised before the validator changed: the general path fails it
        part["text"] += delta
        return [(event, data)]

    def reasoning(self, delta: str) -> list[Emitted]:
        """Reasoning text, in a ``reasoning`` item before the answer."""

        def build() -> None:
            self._part_of("reasoning")["text"] += delta
            self._emit("response.reasoning_text.delta", **self._where(), delta=delta)

        return self._batch(build)

    def function_call(self, *, call_id: str, name: str, arguments: str = "",
                      namespace: str | None = None) -> list[Emitted]:
        """A function call (of a namespaced function: with its ``namespace``): the first
        call for a ``call_id`` opens its item, later ones add argument text."""

        def build() -> None:
            item = self._item
            if item is None or item["type"] != "function_call" or item["call_id"] != call_id:
                self._close_item("completed")
                item = self._open("function_call", "fc", call_id=call_id, name=name,
                                  arguments="", **_namespace(namespace))
            if arguments:
                item["arguments"] += arguments
                self._emit("response.function_call_arguments.delta", item_id=item["id"],
                           output_index=len(self.response["output"]) - 1, delta=arguments)

        return self._batch(build)

    def custom_tool_call(self, *, call_id: str, name: str, input_text: str,
                         namespace: str | None = None) -> list[Emitted]:
        """A whole call of a custom tool: its item added, its input, the item done."""

        def build() -> None:
            self._close_item("completed")
            item = self._open("custom_tool_call", "ctc", call_id=call_id, name=name,
                              input="", **_namespace(namespace))
            if input_text:
                item["input"] = input_text
                self._emit("response.custom_tool_call_input.delta", item_id=item["id"],
                           output_index=len(self.response["output"]) - 1, delta=input_text)
            self._close_item("completed")

        return self._batch(build)

    def custom_tool_input(self, *, call_id: str, name: str, delta: str,
                          namespace: str | None = None) -> list[Emitted]:
        """A custom tool call streamed: the first piece for a ``call_id`` opens its item,
        each piece is an input delta (the item is done at the next item or the end)."""

        def build() -> None:
            item = self._item
            if item is None or item["type"] != "custom_tool_call" or item["call_id"] != call_id:
                self._close_item("completed")
                item = self._open("custom_tool_call", "ctc", call_id=call_id, name=name,
                                  input="", **_namespace(namespace))
            if delta:
                item["input"] += delta
                self._emit("response.custom_tool_call_input.delta", item_id=item["id"],
                           output_index=len(self.response["output"]) - 1, delta=delta)

        return self._batch(build)

    def compaction_started(self) -> list[Emitted]:
        """A ``compaction`` item opened while its summary is written (the prompt is
        compacted before the answer): added (no content yet), then
        ``response.compaction.compacting``."""

        def build() -> None:
            self._close_item("completed")
            item = self._open("compaction", "cmp", encrypted_content="")
            self._emit("response.compaction.compacting", item_id=item["id"],
                       output_index=len(self.response["output"]) - 1)

        return self._batch(build)

    def compaction_done(self, encrypted_content: str) -> list[Emitted]:
        """The open ``compaction`` item done, with its sealed summary."""

        def build() -> None:
            assert self._item is not None and self._item["type"] == "compaction"
            self._item["encrypted_content"] = encrypted_content
            self._close_item("completed")

        return self._batch(build)

    def tool_output(self, *, call_id: str, output: str, custom: bool = False
                    ) -> list[Emitted]:
        """A tool output given while the response waited (an item added and done): a
        ``function_call_output``, or a ``custom_tool_call_output`` for a custom tool."""

        def build() -> None:
            self._close_item("completed")
            if custom:
                self._open("custom_tool_call_output", "ctco", call_id=call_id, output=output)
            else:
                self._open("function_call_output", "fco", call_id=call_id, output=output)
            self._close_item("completed")

        return self._batch(build)

    def function_calls(self) -> list[dict[str, Any]]:
        return [item for item in self.response["output"] if item["type"] == "function_call"]

    def end_items(self) -> list[Emitted]:
        """Close the open item (a model turn ended; the response goes on)."""
        return self._batch(lambda: self._close_item("completed"))

    def ping(self) -> list[Emitted]:
        return self._batch(lambda: self._emit("response.ping"))

    def notice(self, event_type: str, **fields: Any) -> list[Emitted]:
        """An event outside the output (``response.rate_limits.updated``)."""
        return self._batch(lambda: self._emit(event_type, **fields))

    def complete(
        self,
        *,
        usage: Mapping[str, Any],
        at: float,
        incomplete_reason: str | None = None,
        incomplete: bool = False,
    ) -> list[Emitted]:
        """The model finished: ``completed``, or ``incomplete`` when a reason is given
        (or ``incomplete`` is set: a reason the SDK's strict models cannot carry)."""
        incomplete = incomplete or incomplete_reason is not None

        def build() -> None:
            item_status = "incomplete" if incomplete else "completed"
            self._close_item(item_status)
            self.response["usage"] = dict(usage)
            if "input_messages" in self.response:  # vLLM's enable_response_messages
                self.response["output_messages"] = [
                    {"role": "assistant", "content": self.output_text()}]
            if incomplete:
                self.response["status"] = "incomplete"
                self.response["incomplete_details"] = {"reason": incomplete_reason}
                self._emit("response.incomplete", response=self._snapshot())
            else:
                self.response["status"] = "completed"
                self.response["completed_at"] = int(at)  # whole Unix seconds
                self._emit("response.completed", response=self._snapshot())

        return self._batch(build)

    def cancel(self, *, usage: Mapping[str, Any] | None = None) -> list[Emitted]:
        def build() -> None:
            self._close_item("incomplete")
            if usage is not None:
                self.response["usage"] = dict(usage)
            self.response["status"] = "cancelled"
            self._emit("response.incomplete", response=self._snapshot())

        return self._batch(build)

    def fail(
        self,
        message: str,
        *,
        code: str = "server_error",
        usage: Mapping[str, Any] | None = None,
    ) -> list[Emitted]:
        return self._batch(lambda: self._fail(message, code, usage))

    # -- building ------------------------------------------------------------------

    def _batch(self, build: Callable[[], None]) -> list[Emitted]:
        self._pending = []
        if not self.finished:
            try:
                build()
            except EventTooLarge as exc:
                self._fail(str(exc), "server_error", None)
            except ProtocolViolation as exc:
                self._fail(f"The server produced an invalid event ({exc}).", "server_error", None)
        events, self._pending = self._pending, []
        return events

    def _emit(self, event_type: str, **fields: Any) -> None:
        event: Event = {"type": event_type, "sequence_number": self._validator.next_sequence}
        event.update(fields)
        data = frame(event)
        size = len(data)
        too_large = bool(self._max_event_bytes) and size > self._max_event_bytes
        if too_large and event_type in ("response.failed", "response.created"):
            # These must get out (the stream has to start, and to say why it ended):
            # send them without the large parts, the output and the request's echo.
            event["response"] = dict(event["response"], output=[], instructions=None,
                                     tools=[])
            data = frame(event)
        elif too_large:
            raise self._too_large(event_type, size)
        self._validator.check(event)
        self._pending.append((event, data))
        if too_large and event_type == "response.created":
            raise self._too_large(event_type, size)

    def _too_large(self, event_type: str, size: int) -> EventTooLarge:
        return EventTooLarge(
            f"A {event_type} event of {size} bytes exceeds the server's limit of "
            f"{self._max_event_bytes} bytes (--max-stream-event-bytes); the response was "
            "ended instead of sending it cut."
        )

    def _fail(self, message: str, code: str, usage: Mapping[str, Any] | None) -> None:
        # Open items stay open in the stream; in the object they are marked incomplete.
        if self._item is not None:
            self._item["status"] = "incomplete"
        self._item = self._part = None
        # OpenAI's documented fields at the top (the SDKs' ResponseErrorEvent), and the
        # same under "error", as OpenAI's service sends it and the Open Responses spec
        # requires it (the Vercel AI SDK reads only that one). The openai SDKs raise
        # APIError on it, as they do on OpenAI's.
        self._emit("error", code=code, message=message, param=None,
                   error={"type": "server_error", "code": code, "message": message,
                          "param": None})
        self.response["status"] = "failed"
        self.response["error"] = {"code": code, "message": message}
        if usage is not None:
            self.response["usage"] = dict(usage)
        self._emit("response.failed", response=self._snapshot())

    def _snapshot(self) -> dict[str, Any]:
        return copy.deepcopy(self.response)

    def _where(self) -> dict[str, Any]:
        assert self._item is not None
        return {
            "item_id": self._item["id"],
            "output_index": len(self.response["output"]) - 1,
            "content_index": len(self._item["content"]) - 1,
        }

    def _open(self, kind: str, prefix: str, **fields: Any) -> dict[str, Any]:
        item: dict[str, Any] = {"id": self._ids(prefix), "type": kind,
                                "status": "in_progress", **fields}
        self.response["output"].append(item)
        self._item = item
        self._emit("response.output_item.added",
                   output_index=len(self.response["output"]) - 1, item=copy.deepcopy(item))
        return item

    def _part_of(self, kind: str) -> dict[str, Any]:
        """The open text part of a ``message`` or ``reasoning`` item, opened if need be."""
        if self._item is not None and self._item["type"] == kind and self._part is not None:
            return self._part
        self._close_item("completed")
        if kind == "message":
            item = self._open("message", "msg", role="assistant", content=[])
            part: dict[str, Any] = {"type": "output_text", "text": "", "annotations": [],
                                    "logprobs": []}
        else:
            item = self._open("reasoning", "rs", summary=[], content=[])
            part = {"type": "reasoning_text", "text": ""}
        item["content"].append(part)
        self._part = part
        self._emit("response.content_part.added", **self._where(), part=copy.deepcopy(part))
        return part

    def _close_item(self, status: str) -> None:
        item = self._item
        if item is None:
            return
        where_item = {"item_id": item["id"], "output_index": len(self.response["output"]) - 1}
        if self._part is not None:
            where = self._where()
            if item["type"] == "message":
                self._emit("response.output_text.done", **where, text=self._part["text"],
                           logprobs=[_delta_logprob(lp) for lp in self._part["logprobs"]])
            else:
                self._emit("response.reasoning_text.done", **where, text=self._part["text"])
            self._emit("response.content_part.done", **where, part=copy.deepcopy(self._part))
            self._part = None
        if item["type"] == "reasoning" and self.seal_reasoning is not None:
            item["encrypted_content"] = self.seal_reasoning(
                "".join(part["text"] for part in item["content"]))
        if item["type"] == "function_call":
            self._emit("response.function_call_arguments.done", **where_item,
                       name=item["name"], arguments=item["arguments"])
        elif item["type"] == "custom_tool_call":
            self._emit("response.custom_tool_call_input.done", **where_item,
                       input=item["input"])
        item["status"] = status
        self._emit("response.output_item.done", output_index=where_item["output_index"],
                   item=copy.deepcopy(item))
        self._item = None


def _namespace(namespace: str | None) -> dict[str, str]:
    """The ``namespace`` field of a call item, which only namespaced tools' calls have."""
    return {"namespace": namespace} if namespace else {}


def _delta_logprob(logprob: Mapping[str, Any]) -> dict[str, Any]:
    """The text events' logprob: the part's shape, ``bytes`` included (OpenAI documents
    these without them and its SDK ignores them; the Open Responses spec requires them)."""
    return {
        "token": logprob["token"],
        "bytes": list(logprob["bytes"]),
        "logprob": logprob["logprob"],
        "top_logprobs": [
            {"token": top["token"], "bytes": list(top["bytes"]), "logprob": top["logprob"]}
            for top in logprob.get("top_logprobs", ())
        ],
    }


def replay_without_log(response: Mapping[str, Any]) -> list[Event]:
    """Events for a finished response that has no event log (its process died before it
    wrote one, and the start-up sweep marked it failed): created, then its terminal event
    with the stored object."""
    final = dict(response)
    terminal = {"completed": "response.completed", "incomplete": "response.incomplete",
                "cancelled": "response.incomplete"}.get(final["status"], "response.failed")
    return [
        {"type": "response.created", "sequence_number": 0,
         "response": dict(final, status="queued", error=None, output=[], usage=None)},
        {"type": terminal, "sequence_number": 1, "response": final},
    ]
