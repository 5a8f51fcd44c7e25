"""SocketSession: the Responses API over one WebSocket connection, with lanes and steering.

Structure (the connection's, not the transport's): one nursery per connection, one task
per busy lane in it, and per response the same :class:`ResponseRun` as over HTTP, in the
registry's nursery. A lane reads its run through a :class:`Delivery`, exactly as an SSE
body does; when the connection ends (closed, dropped, shut down) the nursery is
cancelled and every lane releases its delivery, which ends its run with cause
``disconnect`` — the path of an HTTP disconnect: engine request aborted, final object
saved, nothing left running.

Client events, one per text message:

- ``response.create``: every field of ``POST /v1/responses`` (``stream`` is implied,
  ``background`` refused) and an optional ``stream_id`` naming a lane (none: the default
  lane). Lanes run concurrently; one lane runs one response at a time: a create on a
  busy lane is an ``error`` event for that lane, nothing else disturbed.
- ``response.steer``: user input for a response running on this connection; see
  :meth:`SocketSession._steer` for what becomes of it.

Bounds: :class:`SocketLimits`. A lane's memory is its run's stream buffer, bounded as an
SSE stream's (a reader that falls behind ends the response, ``overflow``); lanes that
run at once are bounded, so a connection holds at most ``max_active`` buffers; queued
steering input is bounded per response.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec
import trio

from ..errors import APIError, InvalidRequest, RateLimited, ServerError
from ..protocol.machine import TERMINAL_EVENTS
from ..protocol.request import CreateResponseRequest
from ..protocol.socket_events import (
    error_event,
    steer_accepted,
    steer_failed,
    steer_pending,
    valid_stream_id,
)
from .buffer import Frame
from .delivery import Delivery, start_streamed
from .run import ResponseRun
from .service import ResponseService

log = logging.getLogger(__name__)

# Steering input parts a user message may carry (the SDK's ResponseSteerInputContent).
STEER_PARTS = frozenset({"input_text", "input_image", "input_file"})
# How many finished responses of a connection it remembers (to tell "already completed"
# from "not found" for a late response.steer).
REMEMBERED_RESPONSES = 256
# How many unstored responses (store: false, warmups) a connection keeps the context of,
# so that a create on it can continue them by previous_response_id (OpenAI's
# connection-local cache; Codex continues every turn so).
CACHED_CONTEXTS = 4


@dataclass(frozen=True, slots=True)
class SocketLimits:
    # Distinct named lanes per connection (the default lane does not count).
    max_lanes: int = 32
    # Lanes running a response at once: with the stream buffer bound, what bounds the
    # memory one slow-reading connection can hold.
    max_active: int = 16
    # Queued steering submissions per response, and their JSON bytes.
    max_pending_steers: int = 8
    max_pending_steer_bytes: int = 256 * 1024


class EventSink(Protocol):
    """What a transport does with events: encode and send them, in order."""

    async def send_frames(self, frames: Sequence[Frame], stream_id: str | None) -> None: ...

    async def next_frames(self, delivery: Delivery, stream_id: str | None) -> list[Frame]:
        """A lane's next frames (``delivery.next()``, or a transport's own wait that
        sends some of them itself)."""
        ...

    async def send_event(self, event: Mapping[str, Any]) -> None: ...


@dataclass(slots=True)
class Steer:
    id: str
    # As the client sent it, normalized (returned in response.steer.failed).
    raw: Any
    # As input items.
    items: list[dict[str, Any]]
    size: int


@dataclass(slots=True)
class Lane:
    stream_id: str | None
    busy: bool = False
    run: ResponseRun | None = None
    delivery: Delivery | None = None
    create: CreateResponseRequest | None = None
    # Steering accepted for the running response, in submission order.
    steers: list[Steer] = field(default_factory=list)


class SocketSession:
    def __init__(self, service: ResponseService, owner: str, sink: EventSink, *,
                 parse_create: Callable[[bytes], CreateResponseRequest],
                 limits: SocketLimits = SocketLimits()) -> None:
        self._service = service
        self._owner = owner
        self._sink = sink
        self._parse_create = parse_create
        self._limits = limits
        self._lanes: dict[str | None, Lane] = {}
        self._active = 0
        # Responses running on this connection, by id: steering finds its lane here.
        self._running: dict[str, Lane] = {}
        # Responses that ended on this connection: their final status.
        self._ended: OrderedDict[str, str] = OrderedDict()
        # Steering that waits for a response's client-owned tool outputs: prepended to
        # the next create that continues that response.
        self._waiting: dict[str, list[Steer]] = {}
        # The whole context (input and output items) of the last unstored responses.
        self._contexts: OrderedDict[str, list[Any]] = OrderedDict()
        # Sequence numbers of the connection's own notices (steering).
        self._sequence = 0
        self._nursery: trio.Nursery | None = None

    async def serve(self, receive: Callable[[], Awaitable[str | bytes]]) -> None:
        """Handle client events until the connection ends (which cancels this task and
        with it every lane)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            while True:
                await self.handle(await receive())

    def disconnected(self) -> None:
        """The connection is gone: release every lane's delivery now, which ends its run
        (cause ``disconnect``: the engine request is aborted). The lanes' tasks are
        cancelled after, as the connection's handler unwinds; this does not wait for
        them, so every run of the connection is ended in the same scheduler pass."""
        for lane in self._lanes.values():
            if lane.delivery is not None:
                lane.delivery.release()

    # -- client events ---------------------------------------------------------------

    async def handle(self, message: str | bytes) -> None:
        try:
            event = _decode(message)
            kind = event.get("type")
            if kind == "response.create":
                await self._create(event)
            elif kind == "response.steer":
                await self._steer(event)
            else:
                raise InvalidRequest(
                    f"Unknown client event type {str(kind)[:64]!r}: expected "
                    "'response.create' or 'response.steer'.", param="type",
                    code="unknown_event_type")
        except APIError as exc:
            await self._sink.send_event(error_event(exc))

    async def _create(self, event: dict[str, Any]) -> None:
        stream_id = event.get("stream_id")
        if "stream_id" in event and not valid_stream_id(stream_id):
            raise InvalidRequest(
                "Invalid 'stream_id': 1-256 ASCII letters, digits, '_', '-' or '.'.",
                param="stream_id", code="invalid_stream_id")
        try:
            lane = self._lane(stream_id)
            if lane.busy:
                raise InvalidRequest(
                    "This lane is still running a response; wait for its terminal event, "
                    "or use another stream_id.", param="stream_id", code="stream_busy")
            if self._active >= self._limits.max_active:
                raise RateLimited(
                    f"Too many responses running on this connection (the limit is "
                    f"{self._limits.max_active}); wait for one to end.",
                    code="websocket_active_limit_reached")
            if event.get("background"):
                raise InvalidRequest("'background' is not supported in WebSocket mode.",
                                     param="background", code="unsupported_parameter")
            generate = event.get("generate", True)
            if not isinstance(generate, bool):
                raise InvalidRequest("Invalid 'generate': expected a boolean.",
                                     param="generate", code="invalid_type")
            body = {k: v for k, v in event.items()
                    if k not in ("type", "stream_id", "stream", "background", "generate")}
            waiting = self._waiting.pop(str(body.get("previous_response_id")), [])
            if waiting:  # steering that waited for these tool outputs goes first
                body["input"] = [*(i for s in waiting for i in s.items),
                                 *_as_items(body.get("input"))]
            create = self._parse_create(json.dumps(body).encode())
        except APIError as exc:
            await self._sink.send_event(error_event(exc, stream_id))
            return
        self._start_lane(lane, create, generate=generate)

    def _lane(self, stream_id: str | None) -> Lane:
        lane = self._lanes.get(stream_id)
        if lane is None:
            named = len(self._lanes) - (None in self._lanes)
            if stream_id is not None and named >= self._limits.max_lanes:
                raise InvalidRequest(
                    f"This connection has its {self._limits.max_lanes} lanes; reconnect to "
                    "use new stream_ids.", param="stream_id",
                    code="websocket_stream_limit_reached")
            lane = self._lanes[stream_id] = Lane(stream_id)
        return lane

    def _start_lane(self, lane: Lane, create: CreateResponseRequest, *, generate: bool
                    ) -> None:
        assert self._nursery is not None
        lane.busy = True
        self._active += 1
        self._nursery.start_soon(self._lane_task, lane, create, generate)

    # -- a lane ----------------------------------------------------------------------

    async def _lane_task(self, lane: Lane, create: CreateResponseRequest,
                         generate: bool = True) -> None:
        try:
            if not generate:
                await self._warmup(lane, create)
                return
            turn: tuple[CreateResponseRequest, list[Steer]] | None = (create, [])
            while turn is not None:
                turn = await self._respond(lane, *turn)
        except Exception:  # a bug must not take the connection's other lanes down
            log.exception("WebSocket lane %r failed", lane.stream_id)
            await self._sink.send_event(error_event(
                ServerError("The server had an error while processing your request."),
                lane.stream_id))
        finally:
            lane.busy = False
            lane.run = None
            self._active -= 1

    async def _respond(self, lane: Lane, create: CreateResponseRequest,
                       committed: list[Steer]) -> tuple[CreateResponseRequest, list[Steer]] | None:
        """Run one response on ``lane`` (a successor carries the ``committed`` steering
        input); returns the successor steering asks for, and its steering."""
        resolved = self._resolve(create)
        try:
            run, delivery = await start_streamed(self._service, resolved, owner=self._owner,
                                                 heartbeats=False)
        except APIError as exc:
            await self._sink.send_event(error_event(exc, lane.stream_id))
            await self._send_failures(committed, create.previous_response_id or "",
                                      lane.stream_id, "successor_creation_failed", exc.message)
            return None
        lane.run, lane.delivery, lane.create = run, delivery, create
        run.cancellable = True  # over HTTP, while it runs
        self._running[run.id] = lane
        try:
            while frames := await self._sink.next_frames(delivery, lane.stream_id):
                await self._sink.send_frames(frames, lane.stream_id)
                if any(f.event is not None and f.event["type"] in TERMINAL_EVENTS
                       for f in frames):
                    break
        finally:
            delivery.release()
            lane.delivery = None
            del self._running[run.id]
            self._remember(run.id, str(run.response["status"]))
            self._keep_context(resolved, run.response)
        return await self._after(lane, run, create)

    async def _warmup(self, lane: Lane, create: CreateResponseRequest) -> None:
        """``generate: false``: a response with no output, whose id a later create on
        this connection continues (its input is kept as its context)."""
        resolved = self._resolve(create)
        try:
            frames = await self._service.warmup(resolved, self._owner)
        except APIError as exc:
            await self._sink.send_event(error_event(exc, lane.stream_id))
            return
        response = frames[-1].event["response"] if frames[-1].event else {}
        self._remember(response["id"], response["status"])
        self._keep_context(resolved, response, stored=False)
        await self._sink.send_frames(frames, lane.stream_id)

    def _resolve(self, create: CreateResponseRequest) -> CreateResponseRequest:
        """A create that continues an unstored response of this connection, with that
        response's context as the start of its input (the store has no chain for it)."""
        context = self._contexts.get(create.previous_response_id or "")
        if context is None:
            return create
        return msgspec.structs.replace(create, previous_response_id=None,
                                       input=[*context, *_as_items(create.input)])

    def _keep_context(self, resolved: CreateResponseRequest, response: Mapping[str, Any],
                      *, stored: bool | None = None) -> None:
        """Keep an unstored response's whole context (when the request carried it all:
        it continued nothing in the store, nor a conversation)."""
        stored = bool(response.get("store", True)) if stored is None else stored
        if stored or resolved.previous_response_id is not None \
                or resolved.conversation is not None \
                or response.get("status") not in ("completed", "incomplete"):
            return
        self._contexts[str(response["id"])] = [*_as_items(resolved.input),
                                               *response.get("output", ())]
        while len(self._contexts) > CACHED_CONTEXTS:
            self._contexts.popitem(last=False)

    # -- steering --------------------------------------------------------------------

    async def _steer(self, event: dict[str, Any]) -> None:
        """``response.steer``: validate and queue the input (``response.steer.accepted``)
        and ask the running response to stop at its next safe boundary; what happens at
        its end is :meth:`_after`. Input that cannot be queued comes back in
        ``response.steer.failed``."""
        response_id = event.get("previous_response_id")
        items = _steer_items(event.get("input"))
        # What a failure returns: the input as the SDK's models read it (a string, or
        # the messages with their type); invalid input comes back as a string or not.
        raw = event.get("input") if isinstance(event.get("input"), str) else (items or [])
        shown_id = response_id if isinstance(response_id, str) else ""
        lane = self._running.get(shown_id)
        stream_id = lane.stream_id if lane is not None else None

        async def fail(code: str, message: str) -> None:
            await self._sink.send_event(steer_failed(
                self._next_sequence(), code, message, response_id=shown_id, steer_input=raw,
                steer_id=None, stream_id=stream_id))

        extra = sorted(set(event) - {"type", "previous_response_id", "input"})
        if extra or not isinstance(response_id, str) or items is None:
            why = (f"unknown field '{extra[0]}'" if extra else
                   "'previous_response_id' must be a string" if not isinstance(response_id, str)
                   else "'input' must be a string or a non-empty list of user messages "
                        "(type, role 'user', content of input_text/input_image/input_file)")
            await fail("invalid_input", f"Invalid response.steer: {why}.")
            return
        if lane is None or lane.run is None:
            status = self._ended.get(shown_id)
            if status == "completed":
                await fail("response_already_completed",
                           "The response completed and no longer accepts steering input.")
            elif status is not None:
                await fail("response_not_active",
                           f"The response is {status}; it no longer accepts steering input.")
            else:
                await fail("response_not_found",
                           "No response with this id is running on this connection.")
            return
        if lane.create is not None and lane.create.conversation is not None:
            await fail("steering_not_supported",
                       "Responses bound to a conversation do not support steering.")
            return
        size = len(json.dumps(raw))
        queued = lane.steers
        if len(queued) >= self._limits.max_pending_steers or \
                sum(s.size for s in queued) + size > self._limits.max_pending_steer_bytes:
            await fail("too_many_pending_steers",
                       f"Too much steering input is pending for this response (at most "
                       f"{self._limits.max_pending_steers} submissions, "
                       f"{self._limits.max_pending_steer_bytes} bytes).")
            return
        steer = Steer(self._service.ids("steer"), raw, items, size)
        queued.append(steer)
        await self._sink.send_event(steer_accepted(self._next_sequence(), steer.id,
                                                   shown_id, stream_id))
        lane.run.steer()

    async def _after(self, lane: Lane, run: ResponseRun, create: CreateResponseRequest
                     ) -> tuple[CreateResponseRequest, list[Steer]] | None:
        """A response with accepted steering ended: its successor (the same settings,
        continuing from it, the queued input as its input) if it was steered or
        completed; if it completed waiting for client-owned tool outputs, the input
        stays queued for the create that brings them (``response.steer.pending``); if
        it was cancelled or failed, the input comes back (``response.steer.failed``)."""
        steers, lane.steers = lane.steers, []
        if not steers:
            return None
        response = run.response
        status = response["status"]
        required = _required_input(response)
        if status == "completed" and required:
            self._waiting.setdefault(run.id, []).extend(steers)
            for steer in steers:
                await self._sink.send_event(steer_pending(
                    self._next_sequence(), steer.id, run.id, required, lane.stream_id))
            return None
        if not (status == "completed" or run.steered):
            await self._send_failures(steers, run.id, lane.stream_id, "response_not_active",
                                      f"The response ended {status}; the input was not "
                                      "applied.")
            return None
        successor = msgspec.structs.replace(
            create, previous_response_id=run.id,
            input=[item for steer in steers for item in steer.items])
        return successor, steers

    async def _send_failures(self, steers: Sequence[Steer], response_id: str,
                             stream_id: str | None, code: str, message: str) -> None:
        for steer in steers:
            await self._sink.send_event(steer_failed(
                self._next_sequence(), code, message, response_id=response_id,
                steer_input=steer.raw, steer_id=steer.id, stream_id=stream_id))

    # -- bookkeeping -----------------------------------------------------------------

    def _remember(self, response_id: str, status: str) -> None:
        self._ended[response_id] = status
        while len(self._ended) > REMEMBERED_RESPONSES:
            self._ended.popitem(last=False)

    def _next_sequence(self) -> int:
        self._sequence += 1
        return self._sequence - 1


def _decode(message: str | bytes) -> dict[str, Any]:
    try:
        event = json.loads(message)
    except (ValueError, RecursionError):
        raise InvalidRequest("We could not parse the JSON of this message.",
                             code="invalid_json") from None
    if not isinstance(event, dict):
        raise InvalidRequest("A client event is a JSON object with a 'type'.",
                             code="invalid_json")
    return event


def _as_items(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    return list(value) if isinstance(value, list) else [value]


def _steer_items(raw: Any) -> list[dict[str, Any]] | None:
    """Steering input as input items, or None if it is not a string or a non-empty list
    of user messages (only ``type``, ``role``, ``content``)."""
    if isinstance(raw, str):
        return [{"type": "message", "role": "user", "content": raw}] if raw else None
    if not isinstance(raw, list) or not raw:
        return None
    items: list[dict[str, Any]] = []
    for item in raw:
        if not isinstance(item, dict) or set(item) - {"type", "role", "content"} \
                or item.get("type", "message") != "message" or item.get("role") != "user":
            return None
        content = item.get("content")
        if isinstance(content, list):
            if not content or not all(isinstance(part, dict) and part.get("type") in STEER_PARTS
                                      for part in content):
                return None
        elif not isinstance(content, str):
            return None
        items.append({"type": "message", "role": "user", "content": content})
    return items


def _required_input(response: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Stubs of the tool outputs a completed response waits for from its client."""
    stubs: list[dict[str, Any]] = []
    for item in response.get("output", ()):
        if item.get("type") == "function_call":
            stubs.append({"type": "function_call_output", "call_id": item["call_id"],
                          "name": item["name"]})
        elif item.get("type") == "custom_tool_call":
            stubs.append({"type": "custom_tool_call_output", "call_id": item["call_id"]})
    return stubs
