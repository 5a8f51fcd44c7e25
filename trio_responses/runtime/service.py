"""ResponseService: what each endpoint does, over the engine, the store and the registry.

The web layer parses a request and calls one method here; this module decides
everything else: which model and tier, what prompt (the ``previous_response_id`` chain),
what the engine gets, what is stored, who may see what. It starts runs in the registry
and hands back either the run (to stream or wait on) or a finished JSON object.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any

import trio

from ..config import Settings
from ..engine.base import Engine, EngineRequest, SamplingOptions
from ..errors import EngineUnavailable, InvalidRequest, NotFound
from ..protocol.conversation import build_messages
from ..protocol.events import Event, ResponseEvents, replay_without_log
from ..protocol.ids import IdFactory, random_id
from ..protocol.items import normalize_input
from ..protocol.machine import TERMINAL_EVENTS
from ..protocol.request import CreateResponseRequest, stop_sequences
from ..protocol.response import new_response
from ..protocol.sse import frame
from ..protocol.toolcalls import call_schema
from ..store.base import TERMINAL_STATUSES, ResponseStore, StoredResponse
from .buffer import EventBuffer, EventReader, Frame
from .ratelimit import LimitState, RateLimiter
from .registry import Registry
from .run import ResponseRun
from .tools import Conflict, EngineTools, chat_tools, tool_turns, with_tool_instructions

# Service tier → engine priority (vLLM: lower runs first).
TIER_PRIORITY = {"priority": -10, "default": 0, "auto": 0, "scale": 0, "flex": 10}
LOGPROBS_INCLUDE = "message.output_text.logprobs"


class ResponseService:
    def __init__(
        self,
        *,
        settings: Settings,
        engine: Engine,
        store: ResponseStore,
        registry: Registry,
        ids: IdFactory = random_id,
        clock: Callable[[], float] = time.time,
        limiter: RateLimiter | None = None,
        observer: Callable[[ResponseRun, Event], None] | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.store = store
        self.registry = registry
        self.ids = ids
        self.clock = clock
        self.limiter = limiter
        self.observer = observer
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

    def _admit(self, request: CreateResponseRequest, engine_request: EngineRequest,
               owner: str) -> tuple[list[LimitState], int]:
        """Rate limits and the engine queue bound; raises 429 or 503."""
        bound = self.settings.max_queued_requests
        if bound and self.engine.statistics().running >= bound:
            raise EngineUnavailable(
                "The server is overloaded (the engine queue is full); retry shortly.",
                headers={"retry-after": "1", "retry-after-ms": "1000"})
        if self.limiter is None or not self.limiter.enabled:
            return [], 0
        chars = sum(len(str(m.get("content") or "")) for m in engine_request.messages)
        estimate = -(-chars // 4) + (request.max_output_tokens or 0)
        return self.limiter.acquire(owner, estimate), estimate

    # -- create ----------------------------------------------------------------------

    def _service_tier(self, request: CreateResponseRequest) -> str:
        tier = request.service_tier or self.settings.responses_default_service_tier
        if tier not in self.settings.responses_allowed_service_tiers:
            raise InvalidRequest(
                f"Service tier {tier!r} is not available on this server; allowed: "
                f"{', '.join(self.settings.responses_allowed_service_tiers)}.",
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

    def engine_request(
        self, request: CreateResponseRequest, request_id: str, messages: list[dict[str, Any]],
        tier: str,
    ) -> EngineRequest:
        fmt = request.text.format if request.text else None
        logprobs = LOGPROBS_INCLUDE in (request.include or ())
        sampling = SamplingOptions(
            max_tokens=request.max_output_tokens or 4096,
            temperature=request.temperature,
            top_p=request.top_p,
            top_logprobs=(request.top_logprobs or 0) if logprobs else None,
            top_k=request.top_k,
            min_p=request.min_p,
            repetition_penalty=request.repetition_penalty,
            seed=request.seed,
            stop=stop_sequences(request),
            ignore_eos=bool(request.ignore_eos),
            json_schema=fmt.schema if fmt is not None and fmt.type == "json_schema" else None,
            json_object=fmt is not None and fmt.type == "json_object",
        )
        support = EngineTools.of(self.engine)
        mode = support.mode(request)
        tools = chat_tools(request) if mode else ()
        if mode == "json":
            sampling = dataclasses.replace(sampling, json_object=False, json_schema=call_schema(
                request.tools or (), _named_tool(request.tool_choice)))
        elif mode is not None and support.needs_instructions(mode):
            messages = with_tool_instructions(messages, tools)
        return EngineRequest(
            request_id=request_id,
            messages=tuple(messages),
            sampling=sampling,
            tools=tools,
            cache_salt=request.cache_salt or request.prompt_cache_key,
            priority=request.priority if request.priority is not None else TIER_PRIORITY[tier],
            truncate=request.truncation == "auto",
            reasoning_effort=request.reasoning.effort if request.reasoning else None,
            parse_tool_calls=mode == "engine",
        )

    async def prepare(
        self, request: CreateResponseRequest, owner: str
    ) -> tuple[EngineRequest, list[dict[str, Any]], str]:
        """Everything up to the engine: checks, prompt, sampling. Raises 4xx errors."""
        self._check_model(request)
        tier = self._service_tier(request)
        assert request.input is not None
        items = normalize_input(request.input)
        for item in items:
            item.setdefault("id", self.ids(_ITEM_PREFIX.get(item["type"], "item")))
        history = await self._history(request, owner)
        messages = build_messages(request.instructions, history, items)
        return self.engine_request(request, self.ids("resp"), messages, tier), items, tier

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
        tool_wait: bool = False,
    ) -> ResponseRun:
        """Start a response. ``stream``: its creator will read the events (a bounded,
        primary reader) — otherwise a foreground run keeps no events. ``tool_wait``:
        after function calls, wait for their outputs in the same response."""
        engine_request, items, tier = await self.prepare(request, owner)
        response = new_response(request, response_id=engine_request.request_id,
                                created_at=round(self.clock(), 3),
                                model=self.engine.model_name, service_tier=tier)
        if request.enable_response_messages:
            response["input_messages"] = [dict(m) for m in engine_request.messages]
        # The per-event limit is for events someone reads (a stream, a background log):
        # a plain JSON response has none, and must not fail for an event never sent.
        sends_events = stream or bool(request.background)
        builder = ResponseEvents(response, self.ids, max_event_bytes=(
            self.settings.max_stream_event_bytes if sends_events else 0))
        created = builder.created()
        if builder.finished:  # the request's own echo is over --max-stream-event-bytes
            raise InvalidRequest(
                "The request is too large to stream: its response.created event would "
                f"exceed the server's limit of {self.settings.max_stream_event_bytes} bytes "
                "(--max-stream-event-bytes).", param="instructions", code="request_too_large")
        stored = response["store"]
        limits, estimate = self._admit(request, engine_request, owner)
        if limits and not self.settings.responses_compatibility_mode:
            created += builder.notice("response.rate_limits.updated",
                                      **RateLimiter.event_fields(limits))
        try:
            engine_stream = await self.engine.submit(engine_request)
        except BaseException:
            self._refund(owner, estimate)
            raise
        try:
            if stored:
                await self.store.create(StoredResponse(
                    id=response["id"], owner=owner, status=response["status"],
                    background=response["background"],
                    previous_response_id=request.previous_response_id,
                    created_at=response["created_at"], response=builder.response,
                    input_items=tuple(items)))
            buffer = EventBuffer(max_unsent_bytes=self.settings.responses_stream_buffer_max_bytes,
                                 keep_log=response["background"],
                                 primary=stream and not response["background"])
            for event, data in created:
                buffer.append(Frame(event, data))
            run = ResponseRun(
                builder=builder, stream=engine_stream, store=self.store if stored else None,
                buffer=buffer, ping_interval=self.settings.responses_ping_interval_seconds,
                compatibility_mode=self.settings.responses_compatibility_mode,
                include_logprobs=engine_request.sampling.top_logprobs is not None,
                clock=self.clock, on_event=self._observe,
                tools=tool_turns(request, engine_request, builder, self.ids,
                                 engine=self.engine, wait=tool_wait,
                                 timeout=self.settings.responses_tool_timeout_seconds),
                max_seconds=self.settings.responses_max_stream_seconds)
            run.owner = owner
            run.rate_limits = limits
            if estimate:
                self._charges[run.id] = (owner, estimate)
            self.registry.start(run)
        except BaseException:
            self._charges.pop(response["id"], None)
            self._refund(owner, estimate)
            with trio.CancelScope(shield=True):
                await engine_stream.aclose()
            raise
        return run

    def _refund(self, owner: str, estimate: int) -> None:
        """A request refused after it was admitted (the engine said the prompt is too
        long, say) used no tokens: give its estimate back."""
        if estimate and self.limiter is not None:
            self.limiter.settle(owner, estimate, 0)

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
        engine_request, _, _ = await self.prepare(request, owner)
        return await self.engine.count_tokens(engine_request)


def _named_tool(choice: str | dict[str, Any] | None) -> str | None:
    return choice.get("name") if isinstance(choice, dict) else None


_ITEM_PREFIX = {"message": "msg", "function_call": "fc", "function_call_output": "fco",
                "reasoning": "rs"}

