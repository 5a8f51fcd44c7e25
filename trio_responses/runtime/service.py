"""ResponseService: what each endpoint does, over the engine, the store and the registry.

The web layer parses a request and calls one method here; this module decides
everything else: which model and tier, what prompt (the ``previous_response_id`` chain,
or the conversation's items), what the engine gets, what is stored, who may see what. It
starts runs in the registry and hands back either the run (to stream or wait on) or a
finished JSON object. The Conversations API is :attr:`ResponseService.conversations`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import trio

from ..engine.base import Engine, EngineRequest, EngineStream
from ..errors import (
    APIError,
    Conflict,
    EngineError,
    EngineUnavailable,
    InvalidRequest,
    NotFound,
)
from ..protocol.conversation import build_messages
from ..protocol.events import Emitted, Event, ResponseEvents, replay_without_log
from ..protocol.ids import IdFactory, random_id
from ..protocol.machine import TERMINAL_EVENTS
from ..protocol.request import CreateResponseRequest, compact_threshold, conversation_id
from ..protocol.response import new_response
from ..protocol.response import usage as usage_block
from ..protocol.sse import frame
from ..store.base import TERMINAL_STATUSES, ResponseStore, SharedStore, StoredResponse
from .buffer import EventBuffer, EventReader, Frame
from .compaction import (
    DEFAULT_THRESHOLD_SHARE,
    FinishedStream,
    budget_of,
    compaction_item,
    prompt_items,
    restored_items,
    summary_budget,
    triggered,
)
from .compaction import compact as compact_prompt
from .conversations import ConversationService
from .prepare import TIER_PRIORITY, PreparedRequest, first_engine_request, items_with_ids
from .quotas import Hold, KeyQuotas
from .ratelimit import LimitState, RateLimiter
from .registry import Registry
from .replay import StoredLog
from .run import CompactionDone, Compactor, ResponseRun, RunOptions
from .sealed_items import ENCRYPTED_REASONING_INCLUDE, open_input_items, reasoning_sealer
from .sealing import Sealer
from .service_config import ServiceConfig
from .shared import (
    CANCEL_WAIT,
    TOOL_OUTPUTS_WAIT,
    SharedLog,
    answer_of,
    live_response,
    publish_events,
    wait_terminal,
)
from .tools import plan_tools, tool_turns

_Built = TypeVar("_Built")
# A prompt with this many history items or more is built in a worker thread (below it,
# the hop costs more than the work), at most PROMPT_THREADS at once per process.
PROMPT_THREAD_MIN_ITEMS = 64
PROMPT_THREADS = 2

@dataclass(frozen=True)
class Admission:
    """A request let in past the engine queue bound, its key's quotas and rate limits."""

    owner: str
    # The owner's rate-limit figures after this request (for its headers and event).
    limits: list[LimitState]
    # The tokens charged for it (its prompt estimate and the most it may generate),
    # settled against what it used when its run ends, given back if it never runs.
    estimate: int
    # Its place among the owner's live responses, given back when it ends.
    hold: Hold


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
        sealer: Sealer | None = None,
    ) -> None:
        self.config = config
        self.engine = engine
        self.store = store
        self.registry = registry
        self.ids = ids
        self.clock = clock
        self.limiter = limiter
        self.observer = observer
        # Seals and opens encrypted reasoning (the server's key file; without one, a key
        # of this process alone).
        self.sealer = sealer if sealer is not None else Sealer.generate()
        # The Conversations API, and the turns responses take on conversations.
        self.conversations = ConversationService(config=config, store=store, ids=ids,
                                                 clock=clock)
        self.quotas = KeyQuotas(config.quotas)
        # Long prompts are built in worker threads, at most this many at once per process
        # (the loop stays free for everyone else; a request waiting for a thread is
        # cancelled with its client, so no work piles up behind the limiter).
        self._prompt_threads = trio.CapacityLimiter(PROMPT_THREADS)
        # The admissions of live runs, settled when each run ends.
        self._admissions: dict[str, Admission] = {}

    def _observe(self, run: ResponseRun, event: Event) -> None:
        if self.observer is not None:
            self.observer(run, event)
        if event["type"] in TERMINAL_EVENTS and run.id in self._admissions:
            used = (event["response"].get("usage") or {}).get("total_tokens", 0)
            self._settle(self._admissions.pop(run.id), used)

    def _admit(self, owner: str, estimate: Callable[[], int], *,
               output_defaulted: bool = False) -> Admission:
        """The engine queue bound, the owner's quotas and rate limits (one request and
        ``estimate()`` tokens); raises 503 or 429."""
        self._check_engine_queue()
        hold = self.quotas.hold_response(owner)
        if self.limiter is None or not self.limiter.enabled:
            return Admission(owner, [], 0, hold)
        tokens = estimate()
        try:
            limits = self.limiter.acquire(owner, tokens, output_defaulted=output_defaulted)
        except BaseException:
            hold.release()
            raise
        return Admission(owner, limits, tokens, hold)

    def _token_estimate(self, prepared: PreparedRequest) -> int:
        """What a request may cost: its prompt (characters ÷ 4) and the most it may
        generate, the effective maximum (the default when max_output_tokens is absent)
        within the room the model's context leaves. The unused part is given back when
        its run ends, so a burst of requests cannot spend the limit many times over."""
        messages = prepared.engine_request.messages
        chars = sum(len(str(m.get("content") or "")) for m in messages)
        prompt = -(-chars // 4)
        output = prepared.engine_request.sampling.max_tokens
        context = self.engine.max_model_len
        if context:
            output = max(1, min(output, context - prompt))
        # A prompt its run compacts first also costs the summary's turn (which the
        # response's usage counts); a compaction_trigger costs that turn alone.
        budget = prepared.compaction_budget
        if budget is None:
            return prompt + output
        return sum(budget) if prepared.compaction_only else prompt + output + sum(budget)

    def _settle(self, admission: Admission, used: int) -> None:
        """A request is over: settle its token charge against what it ``used`` and give
        its place back."""
        admission.hold.release()
        if admission.estimate and self.limiter is not None:
            self.limiter.settle(admission.owner, admission.estimate, used)

    def _refund(self, admission: Admission) -> None:
        """A request refused after it was admitted (the engine said the prompt is too
        long, say) used nothing."""
        self._settle(admission, 0)

    def count_request(self, owner: str) -> None:
        """A request other than a create: counted against the owner's requests per
        minute (429 past them), as every request is."""
        if self.limiter is not None and self.limiter.enabled:
            self.limiter.acquire(owner, None)

    @asynccontextmanager
    async def reading(self, owner: str) -> AsyncIterator[None]:
        """A request that reads the store or counts tokens (also the Conversations API's,
        which its routes run in this): counted, then run in one of the owner's read
        slots."""
        self.count_request(owner)
        async with self.quotas.reading(owner):
            yield

    # -- create ----------------------------------------------------------------------

    def _service_tier(self, request: CreateResponseRequest, owner: str) -> str:
        """The tier a request runs with: the one it asks for, else the server's default
        (else, for a key that may not use that, the key's first); only those the key may
        use (its own list, or the server's), and, unless that has the ``priority`` tier,
        an engine ``priority`` no better than the best of them."""
        allowed = self.config.service_tiers_by_owner.get(owner,
                                                         self.config.allowed_service_tiers)
        tier = request.service_tier or self.config.default_service_tier
        if request.service_tier is None and tier not in allowed:
            tier = allowed[0]
        if tier not in allowed:
            raise InvalidRequest(
                f"Service tier {tier!r} is not available to this API key; allowed: "
                f"{', '.join(allowed)}.", param="service_tier", code="invalid_value")
        best = min(TIER_PRIORITY[name] for name in allowed)
        # A key that may use the top tier may set any priority; others none better than
        # their best tier's, or the field would walk around the tier list.
        if request.priority is not None and "priority" not in allowed \
                and request.priority < best:
            raise InvalidRequest(
                f"Invalid 'priority': this API key may not ask for a priority below {best} "
                "(lower runs first), the priority of the best service tier it may use.",
                param="priority", code="invalid_value")
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
                      take_turn: bool = False, compact: bool = False) -> PreparedRequest:
        """Everything up to the engine: checks, prompt, sampling. Raises 4xx errors.
        ``take_turn``: a request on a conversation waits for its turn and holds it (in
        ``PreparedRequest.conversation``: the caller ends it unless a run takes it);
        otherwise the conversation is only read. ``compact``: a prompt over the request's
        ``context_management`` threshold (or ending with a compaction_trigger) is to be
        compacted first, by its run (``PreparedRequest.compaction_budget``)."""
        self._check_model(request)
        tier = self._service_tier(request, owner)
        items = items_with_ids(request, self.ids)
        # A compaction_trigger asks for a compaction; it is no item to store or list (the
        # SDK's item types have none).
        trigger = triggered(items)
        if trigger:
            items = items[:-1]
        # Sealed reasoning opened for the prompt (a 400 naming the item if it does not
        # open); the items stored keep it sealed.
        open_input_items(self.sealer, items)
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
            tools = plan_tools(request, self.engine)
            model_limit = int(self.engine.sampling_defaults.get("max_tokens", 0)) or None
            response_id = self.ids("resp")

            def engine_request(in_prompt: list[Mapping[str, Any]]) -> EngineRequest:
                messages = build_messages(request.instructions, (), in_prompt)
                return first_engine_request(request, response_id, messages, tier, tools,
                                            owner, default_max_tokens=model_limit)

            def build() -> tuple[list[Mapping[str, Any]], EngineRequest]:
                in_prompt = prompt_items(self.sealer, history, items)
                return in_prompt, engine_request(in_prompt)

            in_prompt, first = await self._build_prompt(build, len(history))
            only = compact and trigger
            budget = (await summary_budget(self.engine, first) if only
                      else await self._compaction_budget(request, first) if compact
                      else None)
            return PreparedRequest(
                request=request, engine_request=first, input_items=tuple(items),
                service_tier=tier, tools=tools, conversation=turn,
                prompt_items=tuple(in_prompt), compaction_budget=budget,
                rebuild=engine_request, compaction_only=only)
        except BaseException:
            if turn is not None:
                turn.end()
            raise

    async def _build_prompt(self, build: Callable[[], _Built], history_items: int) -> _Built:
        """``build()`` (open the history's sealed items, lay out the messages): on the
        loop for a short history, in a worker thread for a long one, so that a request
        on a long chain does not hold up every other request for its CPU time. The
        thread is not abandoned when the caller is cancelled (it ends in milliseconds,
        and its result is dropped); callers waiting for the limiter are cancelled at
        once."""
        if history_items < PROMPT_THREAD_MIN_ITEMS:
            return build()
        return await trio.to_thread.run_sync(build, limiter=self._prompt_threads)

    async def _compaction_budget(self, request: CreateResponseRequest, first: EngineRequest
                                 ) -> tuple[int, int] | None:
        """The summary budget of a prompt over the request's ``context_management``
        threshold (none asked, or under it: None)."""
        threshold = compact_threshold(request.context_management)
        if threshold is None:
            return None
        limit = threshold or int(self.engine.max_model_len * DEFAULT_THRESHOLD_SHARE)
        prompt = await self.engine.count_tokens(first)
        return None if prompt <= limit else budget_of(prompt)

    def _compactor(self, prepared: PreparedRequest, builder: ResponseEvents, *,
                   tool_wait: bool) -> Compactor | None:
        """What a run that compacts its prompt first does (see ResponseRun._compact):
        the summary, then the answer's engine request over the compacted prompt (none
        after a compaction_trigger)."""
        budget, rebuild = prepared.compaction_budget, prepared.rebuild
        if budget is None or rebuild is None:
            return None

        async def compact() -> CompactionDone:
            compacted = await compact_prompt(self.engine, self.sealer,
                                             prepared.engine_request, prepared.prompt_items,
                                             max_tokens=budget[1])
            if prepared.compaction_only:
                return CompactionDone(compacted.encrypted_content, compacted.tokens,
                                      FinishedStream(), None)
            first = rebuild(restored_items(compacted.summary, compacted.user_texts))
            try:
                stream = await self.engine.submit(first)
            except APIError as exc:  # the response has started: a failed response
                raise EngineError(exc.message) from exc
            tools = None if prepared.tools is None else tool_turns(
                prepared.tools, first, builder, self.ids, engine=self.engine,
                wait=tool_wait, timeout=self.config.tool_timeout)
            return CompactionDone(compacted.encrypted_content, compacted.tokens, stream, tools)

        return compact

    def _check_engine_queue(self) -> None:
        """503 while the engine queue is at its bound."""
        bound = self.config.max_queued_requests
        if bound and self.engine.statistics().running >= bound:
            raise EngineUnavailable(
                "The server is overloaded (the engine queue is full); retry shortly.",
                headers={"retry-after": "1", "retry-after-ms": "1000"})

    async def compact(self, request: CreateResponseRequest, owner: str
                      ) -> tuple[dict[str, Any], list[LimitState]]:
        """``POST /v1/responses/compact``: the ``response.compaction`` object of
        ``request``'s prompt (one compaction item), written by the model, and the
        owner's rate-limit figures. Admitted like a create: a live response of the key,
        one request, and the summary's prompt and most output tokens up front, settled
        against what it used when it is done (all given back if it fails or is
        cancelled before the summary is written)."""
        async with self.quotas.reading(owner):
            prepared = await self.prepare(request, owner)
        prompt, limit = await summary_budget(self.engine, prepared.engine_request)
        admission = self._admit(owner, lambda: prompt + limit)
        used = 0
        try:
            compacted = await compact_prompt(self.engine, self.sealer,
                                             prepared.engine_request,
                                             prepared.prompt_items, max_tokens=limit)
            tokens = compacted.tokens
            used = tokens.prompt + tokens.output
        finally:
            self._settle(admission, used)
        return {"id": prepared.engine_request.request_id, "object": "response.compaction",
                "created_at": int(self.clock()),
                "output": [compaction_item(self.ids, compacted.encrypted_content)],
                "usage": usage_block(input_tokens=tokens.prompt, output_tokens=tokens.output,
                                     cached_tokens=tokens.cached,
                                     reasoning_tokens=tokens.reasoning)}, admission.limits

    async def post_tool_outputs(self, response_id: str, owner: str,
                                outputs: list[dict[str, Any]]) -> Mapping[str, Any]:
        self.count_request(owner)
        run = self.registry.get(response_id)
        if run is None or run.owner != owner:
            async with self.quotas.reading(owner):
                record = await self._record(response_id, owner)  # 404 unless it is its
            if (run is None and record.status not in TERMINAL_STATUSES
                    and isinstance(self.store, SharedStore)):
                # Running on another replica, maybe waiting there: ask it.
                answer = await self.store.call_replica(
                    "tool_outputs", response_id, {"owner": owner, "outputs": outputs},
                    wait_seconds=TOOL_OUTPUTS_WAIT)
                if answer is not None:
                    return answer_of(answer)
            raise Conflict("This response is not waiting for tool outputs.",
                           param="tool_outputs", code="not_waiting_for_tool_outputs")
        if run.tools is None:
            raise Conflict("This response has no function calls to answer.",
                           param="tool_outputs", code="not_waiting_for_tool_outputs")
        run.tools.post(outputs)
        return run.response

    async def create(
        self, request: CreateResponseRequest, *, owner: str, stream: bool,
        tool_wait: bool = False, ping_events: bool | None = None, heartbeats: bool = True,
        rate_limit_events: bool | None = None,
    ) -> ResponseRun:
        """Start a response. ``stream``: its creator will read the events (a bounded,
        primary reader) — otherwise a foreground run keeps no events. ``tool_wait``:
        after function calls, wait for their outputs in the same response.
        ``ping_events``: heartbeats as ``response.ping`` events rather than SSE comments
        (None: the server's default). ``heartbeats=False``: none at all (a WebSocket's
        heartbeats are transport pings). ``rate_limit_events``: a
        ``response.rate_limits.updated`` event after ``response.created`` while rate
        limits are on (None: the server's default, off unless
        ``--responses-rate-limit-events``)."""
        prepared = await self.prepare(request, owner, take_turn=True, compact=True)
        try:
            builder, created = self._open_events(
                prepared, sends_events=stream or bool(request.background))
            admission = self._admit(
                owner, lambda: self._token_estimate(prepared),
                output_defaulted=request.max_output_tokens is None)
            if rate_limit_events is None:
                rate_limit_events = self.config.rate_limit_events
            if admission.limits and rate_limit_events:
                created += builder.notice("response.rate_limits.updated",
                                          **RateLimiter.event_fields(admission.limits))
            options = self._run_options(prepared, ping_events, heartbeats=heartbeats)
            return await self._start(prepared, builder, created, admission, options,
                                     stream=stream, tool_wait=tool_wait)
        except BaseException:
            # Refused before its run began: the next response on the conversation may go.
            if prepared.conversation is not None:
                prepared.conversation.end()
            raise

    async def warmup(self, request: CreateResponseRequest, owner: str) -> list[Frame]:
        """A response that generates nothing (a WebSocket create with ``generate:
        false``): checked like any create and counted as a request, its events built
        (created, in progress, completed with no output), nothing sent to the engine
        nor stored; its id continues a chain on the connection that made it."""
        self.count_request(owner)
        prepared = await self.prepare(request, owner)
        builder, created = self._open_events(prepared, sends_events=True)
        events = [*created, *builder.in_progress(), *builder.complete(
            usage=usage_block(input_tokens=0, output_tokens=0), at=self.clock())]
        return [Frame(event, data) for event, data in events]

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
        if ENCRYPTED_REASONING_INCLUDE in (request.include or ()):
            builder.seal_reasoning = reasoning_sealer(self.sealer)
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
            # A run that compacts first submits its answer when the summary is written.
            engine_stream: EngineStream = FinishedStream() \
                if prepared.compaction_budget is not None \
                else await self.engine.submit(prepared.engine_request)
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
                owner=admission.owner, rate_limits=admission.limits, on_event=self._observe,
                compactor=self._compactor(prepared, builder, tool_wait=tool_wait),
                heartbeats=self.registry.heartbeats)
            # Its place is given back at its terminal event, or when it leaves the
            # registry however it ends.
            self.registry.start(run, on_exit=admission.hold.release)
            if stored and run.background and isinstance(self.store, SharedStore):
                # Other replicas follow it from the store (runtime/shared.py).
                self.registry.spawn(publish_events, self.store, run.id, run.buffer,
                                    name=f"publish {run.id}")
        except BaseException:
            self._refund(admission)
            with trio.CancelScope(shield=True):
                await engine_stream.aclose()
            raise
        # The run has not begun: nothing can settle it before this.
        self._admissions[run.id] = admission
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
                             keep_log=background, primary=stream and not background,
                             max_log_bytes=self.config.max_background_log_bytes)
        for event, data in created:
            buffer.append(Frame(event, data))
        return buffer

    def _run_options(self, prepared: PreparedRequest, ping_events: bool | None, *,
                     heartbeats: bool = True) -> RunOptions:
        return RunOptions(
            ping_interval=self.config.ping_interval if heartbeats else 0.0,
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
        async with self.reading(owner):
            record = await self._record(response_id, owner)
        run = self.registry.get(response_id)
        if run is None:
            if (record.background and record.status not in TERMINAL_STATUSES
                    and isinstance(self.store, SharedStore)):
                # Running on another replica: as its saved events show it now.
                return await live_response(self.store, record,
                                           lambda: self.quotas.reading(owner))
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
        async with self.reading(owner):
            record = await self._record(response_id, owner)
        if not record.background:
            raise InvalidRequest("Only background responses can be streamed by id.",
                                 param="stream")
        after = -1 if starting_after is None else starting_after
        run = self.registry.get(response_id)
        if run is None and record.status not in TERMINAL_STATUSES:
            # Its run ended between the two looks: the row now has the final object.
            async with self.reading(owner):
                record = await self._record(response_id, owner)
        if run is not None:
            buffer = run.buffer
        elif record.status not in TERMINAL_STATUSES and isinstance(self.store, SharedStore):
            # Running on another replica: follow what it saves, woken by the store.
            return SharedLog(self.store, self.store, response_id, owner,
                             read_slot=lambda: self.quotas.reading(owner)), after
        elif record.event_count:
            # Read from the store a page at a time, in the owner's read slots.
            return StoredLog(self.store, response_id, owner,
                             read_slot=lambda: self.quotas.reading(owner)), after
        else:  # no log kept (its process died first): the final object alone
            buffer = EventBuffer(keep_log=True)
            for event in replay_without_log(record.response):
                buffer.append(Frame(dict(event), frame(event)))
            buffer.close()
        return buffer.after(after), buffer.position_after(after)

    async def cancel(self, response_id: str, owner: str) -> Mapping[str, Any]:
        async with self.reading(owner):
            record = await self._record(response_id, owner)
        run = self.registry.get(response_id)
        if not (record.background or (run is not None and run.cancellable)):
            raise InvalidRequest("Cannot cancel a synchronous response.", param="response_id")
        if run is None:
            if record.status in TERMINAL_STATUSES or not isinstance(self.store, SharedStore):
                return record.response
            # Running on another replica: it aborts the engine request and saves
            # "cancelled" (see AppState's control handler); wait for that.
            await self.store.send_control("cancel", response_id)
            final = await wait_terminal(self.store, self.store, response_id, owner,
                                        CANCEL_WAIT)
            if final is None:
                raise NotFound(f"Response with id '{response_id}' not found.",
                               param="response_id")
            return final
        run.end("cancel")
        await run.done.wait()
        return run.response

    async def delete(self, response_id: str, owner: str) -> dict[str, Any]:
        async with self.reading(owner):
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
        async with self.reading(owner):
            stored = await self.store.input_items(response_id, owner)
        if stored is None:
            raise NotFound(f"Response with id '{response_id}' not found.", param="response_id")
        items = list(stored)
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
        """The prompt's length in tokens: a count, nothing about the prefix cache (which
        would tell a key about other requests)."""
        async with self.reading(owner):
            prepared = await self.prepare(request, owner)
            return await self.engine.count_tokens(prepared.engine_request)

