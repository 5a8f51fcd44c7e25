"""ResponseService: what each endpoint does, over the engine, the store and the registry.

The web layer parses a request and calls one method here; this module decides
everything else: which model and tier, what prompt (the ``previous_response_id`` chain,
or the conversation's items), what the engine gets, what is stored, who may see what. It
starts runs in the registry and hands back either the run (to stream or wait on) or a
finished JSON object. The Conversations API is :attr:`ResponseService.conversations`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import trio

from ..engine.base import Engine
from ..errors import Conflict, EngineUnavailable, InvalidRequest, NotFound
from ..protocol.conversation import build_messages
from ..protocol.events import Emitted, Event, ResponseEvents, replay_without_log
from ..protocol.ids import IdFactory, random_id
from ..protocol.machine import TERMINAL_EVENTS
from ..protocol.request import CreateResponseRequest, conversation_id
from ..protocol.response import new_response
from ..protocol.sse import frame
from ..store.base import TERMINAL_STATUSES, ResponseStore, StoredResponse
from .buffer import EventBuffer, EventReader, Frame
from .conversations import ConversationService
from .prepare import PreparedRequest, first_engine_request, items_with_ids
from .ratelimit import LimitState, RateLimiter
from .registry import Registry
from .run import ResponseRun, RunOptions
from .service_config import ServiceConfig
from .tools import plan_tools, tool_turns


@dataclass(frozen=True)
class Admission:
    """A request let in past the rate limits and the engine queue bound."""

    owner: str
    # The owner's rate-limit figures after this request (for its headers and event).
    limits: list[LimitState]
    # The tokens charged for it, settled when its run ends (given back if it never runs).
    estimate: int


class ResponseService:
    def __init__(
        self,
        *,
        config: ServiceConfig,
        engine: Engine,
        store: ResponseStore,
        registry: Registry,
        ids: IdFactory = random_id,
        clock: Callable[[], float] = time.time,
        limiter: RateLimiter | None = None,
        observer: Callable[[ResponseRun, Event], None] | None = None,
    ) -> None:
        self.config = config
        self.engine = engine
        self.store = store
        self.registry = registry
        self.ids = ids
        self.clock = clock
        self.limiter = limiter
        self.observer = observer
        # The Conversations API, and the turns responses take on conversations.
        self.conversations = ConversationService(config=config, store=store, ids=ids,
                                                 clock=clock)
        # Token estimates charged to the rate limiter, settled when each run ends.
        self._charges: dict[str, tuple[str, int]] = {}

    def _observe(self, run: ResponseRun, event: Event) -> None:
        if self.observer is not None:
            self.observer(run, event)
        if event["type"] in TERMINAL_EVENTS and run.id in self._charges:
            owner, estimate = self._charges.pop(run.id)
            used = (event["response"].get("usage") or {}).get("total_tokens", 0)
            if self.limiter is not None:
                self.limiter.settle(owner, estimate, used)

    def _admit(self, prepared: PreparedRequest, owner: str) -> Admission:
        """Rate limits and the engine queue bound; raises 429 or 503."""
        bound = self.config.max_queued_requests
        if bound and self.engine.statistics().running >= bound:
            raise EngineUnavailable(
                "The server is overloaded (the engine queue is full); retry shortly.",
                headers={"retry-after": "1", "retry-after-ms": "1000"})
        if self.limiter is None or not self.limiter.enabled:
            return Admission(owner, [], 0)
        messages = prepared.engine_request.messages
        chars = sum(len(str(m.get("content") or "")) for m in messages)
        estimate = -(-chars // 4) + (prepared.request.max_output_tokens or 0)
        return Admission(owner, self.limiter.acquire(owner, estimate), estimate)

    def _refund(self, admission: Admission) -> None:
        """A request refused after it was admitted (the engine said the prompt is too
        long, say) used no tokens: give its estimate back."""
        if admission.estimate and self.limiter is not None:
            self.limiter.settle(admission.owner, admission.estimate, 0)

    # -- create ----------------------------------------------------------------------

    def _service_tier(self, request: CreateResponseRequest) -> str:
        tier = request.service_tier or self.config.default_service_tier
        if tier not in self.config.allowed_service_tiers:
            raise InvalidRequest(
                f"Service tier {tier!r} is not available on this server; allowed: "
                f"{', '.join(self.config.allowed_service_tiers)}.",
                param="service_tier", code="invalid_value")
        return "default" if tier == "auto" else tier

    def _check_model(self, request: CreateResponseRequest) -> None:
        if request.model != self.engine.model_name:
            raise NotFound(
                f"The model '{request.model}' does not exist; this server serves "
                f"'{self.engine.model_name}'.", param="model", code="model_not_found")

    async def _history(self, request: CreateResponseRequest, owner: str) -> list[Mapping[str, Any]]:
        if request.previous_response_id is None:
            return []
        chain = await self.store.chain(request.previous_response_id, owner)
        if chain is None:
            raise NotFound(
                f"Previous response with id '{request.previous_response_id}' not found.",
                param="previous_response_id", code="previous_response_not_found")
        if chain[-1].status not in TERMINAL_STATUSES:
            raise InvalidRequest(
                f"Previous response '{request.previous_response_id}' is still "
                f"{chain[-1].status}; wait for it to finish.", param="previous_response_id")
        history: list[Mapping[str, Any]] = []
        for turn in chain:
            history.extend(turn.input_items)
            history.extend(turn.response.get("output", ()))
        return history

    async def prepare(self, request: CreateResponseRequest, owner: str, *,
                      take_turn: bool = False) -> PreparedRequest:
        """Everything up to the engine: checks, prompt, sampling. Raises 4xx errors.
        ``take_turn``: a request on a conversation waits for its turn and holds it (in
        ``PreparedRequest.conversation``: the caller ends it unless a run takes it);
        otherwise the conversation is only read."""
        self._check_model(request)
        tier = self._service_tier(request)
        items = items_with_ids(request, self.ids)
        conversation = conversation_id(request)
        turn = None
        if conversation is not None and take_turn:
            turn = await self.conversations.begin_turn(conversation, owner, items)
            history: list[Mapping[str, Any]] = list(turn.history)
        elif conversation is not None:
            history = await self.conversations.history(conversation, owner)
        else:
            history = await self._history(request, owner)
        try:
            messages = build_messages(request.instructions, history, items)
            tools = plan_tools(request, self.engine)
            model_limit = int(self.engine.sampling_defaults.get("max_tokens", 0)) or None
            return PreparedRequest(
                request=request,
                engine_request=first_engine_request(request, self.ids("resp"), messages,
                                                    tier, tools,
                                                    default_max_tokens=model_limit),
                input_items=tuple(items), service_tier=tier, tools=tools, conversation=turn)
        except BaseException:
            if turn is not None:
                turn.end()
            raise

    async def post_tool_outputs(self, response_id: str, owner: str,
                                outputs: list[dict[str, Any]]) -> Mapping[str, Any]:
        run = self.registry.get(response_id)
        if run is None or run.owner != owner:
            await self._record(response_id, owner)  # 404 unless it exists for this owner
            raise Conflict("This response is not waiting for tool outputs.",
                           param="tool_outputs", code="not_waiting_for_tool_outputs")
        if run.tools is None:
            raise Conflict("This response has no function calls to answer.",
                           param="tool_outputs", code="not_waiting_for_tool_outputs")
        run.tools.post(outputs)
        return run.response

    async def create(
        self, request: CreateResponseRequest, *, owner: str, stream: bool,
        tool_wait: bool = False, ping_events: bool | None = None,
    ) -> ResponseRun:
        """Start a response. ``stream``: its creator will read the events (a bounded,
        primary reader) — otherwise a foreground run keeps no events. ``tool_wait``:
        after function calls, wait for their outputs in the same response.
        ``ping_events``: heartbeats as ``response.ping`` events rather than SSE comments
        (None: the server's default)."""
        prepared = await self.prepare(request, owner, take_turn=True)
        try:
            builder, created = self._open_events(
                prepared, sends_events=stream or bool(request.background))
            admission = self._admit(prepared, owner)
            if admission.limits and not self.config.compatibility_mode:
                created += builder.notice("response.rate_limits.updated",
                                          **RateLimiter.event_fields(admission.limits))
            options = self._run_options(prepared, ping_events)
            return await self._start(prepared, builder, created, admission, options,
                                     stream=stream, tool_wait=tool_wait)
        except BaseException:
            # Refused before its run began: the next response on the conversation may go.
            if prepared.conversation is not None:
                prepared.conversation.end()
            raise

    def _open_events(self, prepared: PreparedRequest, *, sends_events: bool
                     ) -> tuple[ResponseEvents, list[Emitted]]:
        """The new response's event builder and its ``response.created``; raises 400 when
        that event alone is over the per-event limit."""
        request, tier = prepared.request, prepared.service_tier
        response = new_response(request, response_id=prepared.engine_request.request_id,
                                created_at=self.clock(), model=self.engine.model_name,
                                service_tier=tier,
                                sampling_defaults=self.engine.sampling_defaults)
        if request.enable_response_messages:
            response["input_messages"] = [dict(m) for m in prepared.engine_request.messages]
        # The per-event limit is for events someone reads (a stream, a background log):
        # a plain JSON response has none, and must not fail for an event never sent.
        builder = ResponseEvents(response, self.ids, max_event_bytes=(
            self.config.max_stream_event_bytes if sends_events else 0))
        created = builder.created()
        if builder.finished:  # the request's own echo is over --max-stream-event-bytes
            raise InvalidRequest(
                "The request is too large to stream: its response.created event would "
                f"exceed the server's limit of {self.config.max_stream_event_bytes} bytes "
                "(--max-stream-event-bytes).", param="instructions", code="request_too_large")
        return builder, created

    async def _start(self, prepared: PreparedRequest, builder: ResponseEvents,
                     created: list[Emitted], admission: Admission, options: RunOptions,
                     *, stream: bool, tool_wait: bool) -> ResponseRun:
        """Submit to the engine, save the new response, start its run in the registry.
        A request that fails here is given its admission back, and its engine request
        is aborted."""
        try:
            engine_stream = await self.engine.submit(prepared.engine_request)
        except BaseException:
            self._refund(admission)
            raise
        try:
            stored = builder.response["store"]
            if stored:
                await self.store.create(self._new_record(prepared, builder, admission.owner))
            run = ResponseRun(
                builder, engine_stream, self._new_buffer(builder, created, stream=stream),
                options, clock=self.clock,
                store=self.store if stored else None, conversation=prepared.conversation,
                tools=None if prepared.tools is None else tool_turns(
                    prepared.tools, prepared.engine_request, builder, self.ids,
                    engine=self.engine, wait=tool_wait, timeout=self.config.tool_timeout),
                owner=admission.owner, rate_limits=admission.limits, on_event=self._observe)
            self.registry.start(run)
        except BaseException:
            self._refund(admission)
            with trio.CancelScope(shield=True):
                await engine_stream.aclose()
            raise
        if admission.estimate:  # the run has not begun: nothing can settle it before this
            self._charges[run.id] = (admission.owner, admission.estimate)
        return run

    def _new_record(self, prepared: PreparedRequest, builder: ResponseEvents, owner: str
                    ) -> StoredResponse:
        response = builder.response
        return StoredResponse(
            id=response["id"], owner=owner, status=response["status"],
            background=response["background"],
            previous_response_id=prepared.request.previous_response_id,
            created_at=response["created_at"], response=response,
            input_items=prepared.input_items)

    def _new_buffer(self, builder: ResponseEvents, created: list[Emitted], *, stream: bool
                    ) -> EventBuffer:
        background = builder.response["background"]
        buffer = EventBuffer(max_unsent_bytes=self.config.stream_buffer_max_bytes,
                             keep_log=background, primary=stream and not background)
        for event, data in created:
            buffer.append(Frame(event, data))
        return buffer

    def _run_options(self, prepared: PreparedRequest, ping_events: bool | None) -> RunOptions:
        return RunOptions(
            ping_interval=self.config.ping_interval,
            ping_events=self.config.ping_events if ping_events is None else ping_events,
            compatibility_mode=self.config.compatibility_mode,
            include_logprobs=prepared.engine_request.sampling.top_logprobs is not None,
            max_seconds=self.config.max_stream_seconds)

    # -- stored responses ------------------------------------------------------------

    async def _record(self, response_id: str, owner: str) -> StoredResponse:
        record = await self.store.get(response_id, owner)
        if record is None:
            raise NotFound(f"Response with id '{response_id}' not found.", param="response_id")
        return record

    async def retrieve(self, response_id: str, owner: str) -> Mapping[str, Any]:
        record = await self._record(response_id, owner)
        run = self.registry.get(response_id)
        if run is None:
            return record.response
        if run.response["status"] in TERMINAL_STATUSES:
            # Final but maybe not saved yet (the run saves it, then is done): show it
            # once saved, so no client sees a status that a crash could take back.
            await run.done.wait()
        return run.response

    async def follow(
        self, response_id: str, owner: str, starting_after: int | None
    ) -> tuple[EventReader, int]:
        """Where to read a background response's events from, and the cursor."""
        record = await self._record(response_id, owner)
        if not record.background:
            raise InvalidRequest("Only background responses can be streamed by id.",
                                 param="stream")
        run = self.registry.get(response_id)
        if run is not None:
            buffer = run.buffer
        else:
            buffer = EventBuffer(keep_log=True)
            for event in record.events or replay_without_log(record.response):
                buffer.append(Frame(dict(event), frame(event)))
            buffer.close()
        after = -1 if starting_after is None else starting_after
        return buffer.after(after), buffer.position_after(after)

    async def cancel(self, response_id: str, owner: str) -> Mapping[str, Any]:
        record = await self._record(response_id, owner)
        if not record.background:
            raise InvalidRequest("Cannot cancel a synchronous response.", param="response_id")
        run = self.registry.get(response_id)
        if run is None:
            return record.response
        run.end("cancel")
        await run.done.wait()
        return run.response

    async def delete(self, response_id: str, owner: str) -> dict[str, Any]:
        await self._record(response_id, owner)
        run = self.registry.get(response_id)
        if run is not None:
            run.end("cancel")
            await run.done.wait()
        if not await self.store.delete(response_id, owner):
            raise NotFound(f"Response with id '{response_id}' not found.", param="response_id")
        return {"id": response_id, "object": "response", "deleted": True}

    async def input_items(
        self, response_id: str, owner: str, *, limit: int, order: str,
        after: str | None, before: str | None,
    ) -> dict[str, Any]:
        record = await self._record(response_id, owner)
        items = list(record.input_items)
        if order == "desc":
            items.reverse()
        ids = [item["id"] for item in items]
        for name, cursor in (("after", after), ("before", before)):
            if cursor is not None and cursor not in ids:
                raise InvalidRequest(f"No input item with id '{cursor}'.", param=name)
        start = ids.index(after) + 1 if after is not None else 0
        end = ids.index(before) if before is not None else len(items)
        window = items[start:end]
        page = window[:limit]
        return {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(window) > len(page),
        }

    async def count_input_tokens(self, request: CreateResponseRequest, owner: str) -> int:
        prepared = await self.prepare(request, owner)
        return await self.engine.count_tokens(prepared.engine_request)

