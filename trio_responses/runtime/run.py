"""ResponseRun: one response, as one nursery.

A run owns an engine stream, the response's event builder (sans-io) and its
:class:`EventBuffer`. It lives in the registry's app-lifetime nursery, never in an HTTP
handler's, as one task under one cancel scope:

- generation: engine deltas → builder → frames in the buffer;
- heartbeat: after every ``ping_interval`` seconds of silence, an SSE comment (``:
  ping``, which every client skips), or a ``response.ping`` event for a stream that asked
  for ping events (``RunOptions.ping_events``). The registry's one
  :class:`~.heartbeat.Heartbeats` task sends every run's (a run started without one, as
  in tests, runs its own beside its generation).

Every way a run can end early — ``/cancel``, the client disconnecting, the stream
buffer overflowing, shutdown, the engine failing — goes through :meth:`ResponseRun.end`
or an exception the run catches, and all of them finish the same way: abort the engine
request (shielded, bounded), build the terminal events, save the final object (and
append the turn to its conversation, in the same write), and only then publish the
terminal events. The first cause wins and is final: once a cause is
set, no engine delta is turned into an event any more, so the final status and the last
event do not depend on which task noticed first.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import trio

from ..engine.base import EngineDelta, EngineStream, ListenedStream
from ..errors import EngineError
from ..protocol.events import Emitted, Event, ResponseEvents
from ..protocol.machine import TERMINAL_EVENTS
from ..protocol.response import usage as usage_block
from ..protocol.sse import COMMENT_PING
from ..store.base import ResponseStore
from .buffer import BufferOverflow, EventBuffer, Frame
from .conversations import ConversationTurn
from .heartbeat import Heartbeats
from .ratelimit import LimitState
from .tools import ToolTurns

log = logging.getLogger(__name__)

CLEANUP_TIMEOUT = 10.0

# Why a run ended early: /cancel, the client leaving, shutdown, the stream buffer
# overflowing, the maximum stream duration, steering (a WebSocket's response.steer; it
# ends the response ``incomplete`` with reason ``steered``, see :meth:`ResponseRun.steer`).
EndCause = Literal["cancel", "disconnect", "shutdown", "overflow", "timeout", "steer"]

# Each cause → (final status, error message or None).
END_CAUSES: dict[EndCause, tuple[Literal["cancelled", "failed"], str | None]] = {
    "cancel": ("cancelled", None),
    "disconnect": ("cancelled", None),
    "shutdown": ("failed", "The server shut down while this response was running."),
    "overflow": ("failed", "The client did not read the stream fast enough; the stream "
                 "buffer limit (--responses-stream-buffer-max-bytes) was exceeded."),
    "timeout": ("failed", "The response exceeded the server's maximum stream duration."),
}
# A run that ended with no cause of its own (its nursery was cancelled from outside).
UNKNOWN_END: tuple[Literal["failed"], str] = ("failed", "The run ended.")


@dataclass(frozen=True, slots=True)
class RunOptions:
    """How a run behaves, beyond what it runs."""

    # Seconds of silence before a heartbeat (0: none).
    ping_interval: float = 0.0
    # Heartbeats as response.ping events, numbered like every event; otherwise SSE
    # comments, which no client sees (the official SDKs' stream helpers fail on an
    # event type they do not know).
    ping_events: bool = False
    # Only what the SDK's strict models parse: no incomplete reason of our own after a
    # tool-output timeout.
    compatibility_mode: bool = False
    # Output text deltas carry the tokens' logprobs.
    include_logprobs: bool = False
    # The server's maximum stream duration (0: none).
    max_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class TokenCounts:
    """A model turn's token counts (an EngineDelta's totals), or the sum of several."""

    prompt: int = 0
    cached: int = 0
    output: int = 0
    reasoning: int = 0

    @classmethod
    def of(cls, delta: EngineDelta) -> TokenCounts:
        return cls(prompt=delta.prompt_tokens, cached=delta.cached_tokens,
                   output=delta.output_tokens, reasoning=delta.reasoning_tokens)

    def __add__(self, other: TokenCounts) -> TokenCounts:
        return TokenCounts(prompt=self.prompt + other.prompt, cached=self.cached + other.cached,
                           output=self.output + other.output,
                           reasoning=self.reasoning + other.reasoning)



@dataclass(frozen=True, slots=True)
class CompactionDone:
    """A prompt compacted at the start of a run: the sealed summary, what writing it
    cost, and the answer's engine stream (over the compacted prompt) with its tool
    turns."""

    encrypted_content: str
    tokens: TokenCounts
    stream: EngineStream
    tools: ToolTurns | None


# Writes the summary (its engine request aborted if the run ends meanwhile), then submits
# the answer.
Compactor = Callable[[], Awaitable[CompactionDone]]


class ResponseRun:
    def __init__(
        self,
        builder: ResponseEvents,
        stream: EngineStream,
        buffer: EventBuffer,
        options: RunOptions,
        *,
        clock: Callable[[], float],
        store: ResponseStore | None = None,
        tools: ToolTurns | None = None,
        conversation: ConversationTurn | None = None,
        owner: str = "",
        rate_limits: Sequence[LimitState] = (),
        on_event: Callable[[ResponseRun, Event], None] | None = None,
        compactor: Compactor | None = None,
        earlier: TokenCounts | None = None,
        heartbeats: Heartbeats | None = None,
    ) -> None:
        self.builder = builder
        self.buffer = buffer
        self.id: str = builder.response["id"]
        self.background: bool = bool(builder.response["background"])
        self.owner = owner
        # Whether POST /cancel may end it: a background response, or one running on a
        # WebSocket (whose client may cancel it over HTTP).
        self.cancellable = self.background
        # Rate-limit figures of the request that started this run (for its headers).
        self.rate_limits = list(rate_limits)
        # done's Event, made when first asked for (most runs are never waited for: an
        # Event per live stream is ~0.3 KiB), and whether the run has ended.
        self._done: trio.Event | None = None
        self._ended = False
        self.end_cause: EndCause | None = None
        self.started_at = trio.current_time()
        # Set when the run had to abort an unfinished engine request.
        self.engine_aborted = False
        self._stream = stream
        self._store = store
        # The turn on its conversation it holds until its final write (see _finish).
        self._conversation = conversation
        self._options = options
        self._clock = clock
        self._on_event = on_event
        # The server's maximum stream duration ends the run like any other cause.
        self._scope = trio.CancelScope(deadline=self.started_at + options.max_seconds
                                       if options.max_seconds > 0 else math.inf)
        self._last_sent = trio.current_time()
        self._last_delta = EngineDelta()
        self.tools = tools
        # Token counts of earlier model turns (a response that waited for tool outputs
        # has several), added to the current turn's.
        self._earlier = earlier or TokenCounts()
        # A prompt to compact first (context_management, a compaction_trigger): its item
        # comes first in the output, written after response.created (see _compact).
        self._compactor = compactor
        self._engine_done = False  # the engine finished or failed the request itself
        self._steer_requested = False
        # Where its heartbeats come from (None: a Heartbeats task of its own).
        self._heartbeats = heartbeats

    # -- control ---------------------------------------------------------------------

    def end(self, cause: EndCause) -> bool:
        """End the run early for ``cause`` (see END_CAUSES). False if it already ended."""
        if self.builder.finished or self.end_cause is not None:
            return False
        self.end_cause = cause
        self._scope.cancel()
        self._abort_engine()
        return True

    def steer(self) -> bool:
        """Stop at the next safe output boundary (after the next engine delta, outside a
        tool call) as ``incomplete`` with reason ``steered``; the engine request is
        aborted as for any early end. False if the run is already over."""
        if self.builder.finished or self.end_cause is not None:
            return False
        self._steer_requested = True
        return True

    @property
    def done(self) -> trio.Event:
        """Set when the run has ended (its terminal events are out, its final object
        saved)."""
        if self._done is None:
            self._done = trio.Event()
            if self._ended:
                self._done.set()
        return self._done

    @property
    def steered(self) -> bool:
        return self.end_cause == "steer"

    @property
    def response(self) -> dict[str, Any]:
        return self.builder.response

    # -- the nursery -----------------------------------------------------------------

    async def run(self) -> None:
        """Run to the end. Every failure becomes events; only outside cancellation raises."""
        try:
            with self._scope:
                self._publish(self.builder.in_progress())
                if self._options.ping_interval <= 0:
                    await self._generate()
                elif self._heartbeats is not None:
                    beats = self._heartbeats.add(self)
                    try:
                        await self._generate()
                    finally:
                        self._heartbeats.remove(beats)
                else:
                    async with trio.open_nursery() as nursery:
                        own = Heartbeats()
                        own.add(self)
                        nursery.start_soon(own.serve)
                        await self._generate()
                        nursery.cancel_scope.cancel()
        finally:
            if self._scope.cancelled_caught and self.end_cause is None:
                self.end_cause = "timeout"
            with trio.CancelScope(shield=True):
                await self._close_stream()
                if not self.builder.finished:
                    await self._finish(self._early_end_events())
                if self._conversation is not None:
                    self._conversation.end()
                self.buffer.close()
                self._ended = True
                if self._done is not None:
                    self._done.set()

    async def _generate(self) -> None:
        try:
            if self._compactor is not None and await self._compact():
                return
            await self._consume()
        except EngineError as exc:
            self._engine_done = True
            if self.end_cause is None:
                await self._finish(self.builder.fail(str(exc), usage=self._usage()))
        except Exception as exc:  # a bug must still end the stream well-formed
            log.exception("response %s failed", self.id)
            await self._finish(self.builder.fail(f"Internal error ({type(exc).__name__}).",
                                                 usage=self._usage()))

    async def _compact(self) -> bool:
        """The compaction first: its item opened and ``response.compaction.compacting``
        sent, the summary written (heartbeats go on meanwhile; an end of the run cancels
        it, which aborts its engine request), then the item done with the sealed summary
        and the answer's stream in place. True if the run stopped meanwhile."""
        assert self._compactor is not None
        if await self._deliver(self.builder.compaction_started()):
            return True
        done = await self._compactor()
        self._stream, self._engine_done = done.stream, False
        if done.tools is not None:
            self.tools = done.tools
        self._earlier += done.tokens
        return await self._deliver(self.builder.compaction_done(done.encrypted_content))

    async def _consume(self) -> None:
        while True:
            stopped, reason = await self._turn()
            if stopped:
                return
            if self.tools is not None and self.tools.wants_next_turn(reason):
                self._publish(self.builder.end_items())
                outputs = await self.tools.wait_for_outputs()
                if outputs is None:
                    await self._finish(self.builder.complete(
                        usage=self._usage(), at=self._clock(), incomplete=True,
                        incomplete_reason=self._tool_timeout_reason))
                    return
                self._publish(self.tools.outputs_given(outputs))
                self._earlier += TokenCounts.of(self._last_delta)
                self._last_delta = EngineDelta()
                self._engine_done = False
                self._stream = await self.tools.next_turn(outputs)
                continue
            await self._finish(self.builder.complete(usage=self._usage(), at=self._clock(),
                                                     incomplete_reason=reason))
            return

    async def _turn(self) -> tuple[bool, str | None]:
        """One model turn: deltas to events until the engine's finish reason. Returns
        whether the run was stopped meanwhile, and the incomplete reason (None: a stop).
        Plain text deltas may be published in the engine's hand-over instead
        (:meth:`_take_plain`), while this task waits for the next delta."""
        stream = self._stream
        if not isinstance(stream, ListenedStream):
            return await self._deltas(stream)
        stream.listen(self._take_plain)
        try:
            return await self._deltas(stream)
        finally:
            stream.listen(None)

    def _take_plain(self, delta: EngineDelta) -> bool:
        """A delta offered where the engine hands it over, while this run's task waits
        for it (:class:`~..engine.base.ListenedStream`), in the engine's task: a text
        delta with nothing else due — no finish, reasoning, tool call, logprobs or tool
        parsing, no end or steer asked for, and the builder's template path taking it
        (valid, within the event size limit) — is published here, exactly as the run's
        task would (the same event, validator check, buffer append and bound), and the
        task is not woken for it. Anything else is left to the task (False), which then
        decides as always, so every end stays the task's and deterministic."""
        if (delta.finish_reason is not None or delta.reasoning or delta.tool_calls
                or not delta.text or self.tools is not None or self._steer_requested
                or self._options.include_logprobs or self.end_cause is not None
                or self._scope.cancel_called):
            return False
        events = self.builder.plain_text(delta.text)
        if events is None:
            return False
        self._last_delta = delta
        self._publish(events)
        return True

    async def _deltas(self, stream: EngineStream) -> tuple[bool, str | None]:
        async for delta in stream:
            if self.end_cause is not None:
                # A last delta that arrived after the end is not sent, but the engine
                # did finish: its request is not counted as aborted.
                self._engine_done = delta.finish_reason is not None
                return True, None
            self._last_delta = delta
            events: list[Emitted] = []
            if delta.reasoning:
                events += self.builder.reasoning(delta.reasoning)
            if delta.text:
                if self.tools is not None:
                    events += self.tools.text(delta.text)
                else:
                    events += self.builder.text(delta.text, self._logprobs(delta))
            if delta.tool_calls and self.tools is not None:
                events += self.tools.engine_calls(delta.tool_calls)
            stopped = await self._deliver(events)
            # Not held while the next delta is awaited: a stalled stream would keep its
            # last events (and their frames) for as long as it stalls.
            del events
            if stopped:
                self._engine_done = delta.finish_reason is not None
                return True, None
            if self._steer_requested and delta.finish_reason is None \
                    and not self.builder.in_tool_call \
                    and not (self.tools is not None and self.tools.mid_call):
                self.end_cause = "steer"
                await self._finish(self.builder.complete(
                    usage=self._usage(), at=self._clock(), incomplete_reason="steered"))
                return True, None
            if delta.finish_reason is not None:
                self._engine_done = True
                if self.tools is not None:
                    self._publish(self.tools.end_of_turn())
                stopped = self.end_cause is not None or self.builder.finished
                return stopped, "max_output_tokens" if delta.finish_reason == "length" else None
        if self.end_cause is None and not self.builder.finished:
            raise EngineError("The engine ended the request without a finish reason.")
        return True, None

    def next_beat(self) -> float:
        return self._last_sent + self._options.ping_interval

    def beat(self, now: float) -> float | None:
        """A heartbeat, if nothing was sent for ``ping_interval`` (see Heartbeats)."""
        if self.builder.finished:
            # The terminal events are built (and wait for the store write): nothing may
            # follow them.
            return None
        due = self.next_beat()
        if now >= due:
            if self._options.ping_events:
                self._publish(self.builder.ping())
            else:
                self._append(Frame(None, COMMENT_PING))
            if now - due < self._options.ping_interval:
                # Late (the process was held up: a full garbage collection, a burst), it
                # keeps the run's phase: the next is due an interval after the time this
                # one was due, so runs pinged together after a pause spread out again
                # instead of staying bunched into one burst of pings per interval.
                self._last_sent = due
        return self.next_beat()

    # -- ending ----------------------------------------------------------------------

    def _early_end_events(self) -> list[Emitted]:
        cause = self.end_cause
        status, message = UNKNOWN_END if cause is None else END_CAUSES.get(cause, UNKNOWN_END)
        if status == "cancelled":
            return self.builder.cancel(usage=self._usage())
        return self.builder.fail(message or "", usage=self._usage())

    def _abort_engine(self) -> None:
        """Abort the engine request in the caller's pass, where the stream can (see
        EngineStream): in a burst of disconnects every abort lands before the engine's
        next step, instead of after each run's task is woken and gets its turn."""
        abort = getattr(self._stream, "abort", None)
        if abort is None or self._engine_done:
            return
        try:
            if abort():
                self.engine_aborted = True
        except Exception:
            log.exception("aborting the engine request of %s failed", self.id)

    async def _close_stream(self) -> None:
        # Already aborted by end(), or aborted here.
        self.engine_aborted = self.engine_aborted or not self._engine_done
        with trio.move_on_after(CLEANUP_TIMEOUT):
            try:
                await self._stream.aclose()
            except Exception:
                log.exception("aborting the engine request of %s failed", self.id)

    async def _finish(self, events: list[Emitted]) -> None:
        """Save the final object and append the turn to the conversation, then publish
        the terminal events (in that order, so a client never sees a response end that a
        retrieve, or the conversation, would not show)."""
        if not events:
            return
        if self._store is not None or self._conversation is not None:
            with trio.CancelScope(shield=True), trio.move_on_after(CLEANUP_TIMEOUT):
                try:
                    await self._save(events)
                except Exception:
                    log.exception("saving response %s failed", self.id)
        if self._conversation is not None:
            self._conversation.end()
        self._publish(events)

    async def _save(self, events: list[Emitted]) -> None:
        response = self.builder.response
        conversation = self._conversation
        if self._store is None:
            if conversation is not None:  # not stored: the turn is the only write
                await conversation.append(response)
            return
        # The replay log: heartbeats are for the live connection only (a strict client
        # could not parse them on a replay anyway). A log cut past its bound keeps its
        # first event and the final ones: resumable from the final object only.
        final = [e for e, _ in events]
        if self.buffer.log_cut:
            kept = [e for e in (self.buffer.head_event,) if e is not None]
            final = [e for e in final if e["type"] in TERMINAL_EVENTS]
        else:
            kept = self.buffer.events()
        log_events = [
            event for event in (*kept, *final) if event["type"] != "response.ping"
        ] if self.background else []
        if conversation is None:
            await self._store.finish(self.id, response, log_events)
        else:  # the final object and the turn, in one store transaction
            await self._store.finish(self.id, response, log_events,
                                     append=conversation.append_for(response))

    # -- events out ------------------------------------------------------------------

    async def _deliver(self, events: list[Emitted]) -> bool:
        """Publish events built mid-turn. The builder may have ended the response itself
        (an event over --max-stream-event-bytes, an invalid event): then they end in the
        terminal events, which are saved first like any others, and the turn must stop
        (the engine request is aborted). True if so."""
        if not self.builder.finished:
            self._publish(events)
            return False
        await self._finish(events)
        return True

    def _publish(self, events: list[Emitted]) -> None:
        for event, data in events:
            if self._on_event is not None:
                self._on_event(self, event)
            self._append(Frame(event, data))

    def _append(self, item: Frame) -> None:
        self._last_sent = trio.current_time()
        try:
            self.buffer.append(item)
        except BufferOverflow:
            self.end("overflow")

    def _usage(self) -> dict[str, Any]:
        total = self._earlier + TokenCounts.of(self._last_delta)
        return usage_block(input_tokens=total.prompt, output_tokens=total.output,
                           cached_tokens=total.cached, reasoning_tokens=total.reasoning)

    @property
    def _tool_timeout_reason(self) -> str | None:
        # The SDK's strict models know no reason for this; in compatibility mode the
        # reason stays null so strict clients still parse the response.
        return None if self._options.compatibility_mode else "tool_output_timeout"

    def _logprobs(self, delta: EngineDelta) -> list[dict[str, Any]]:
        if not self._options.include_logprobs:
            return []
        return [
            {
                "token": lp.token,
                "bytes": list(lp.bytes),
                "logprob": lp.logprob,
                "top_logprobs": [
                    {"token": t.token, "bytes": list(t.bytes), "logprob": t.logprob}
                    for t in lp.top
                ],
            }
            for lp in delta.logprobs
        ]
