"""ServiceConfig: what the runtime needs of the server's settings, and nothing more.

The runtime does not read :class:`~trio_responses.config.Settings` (hosts, keys, store
paths and engine flags are not its business): whoever builds a ResponseService builds
this record from them with :meth:`ServiceConfig.from_settings`, so the defaults stay in
one place, ``Settings``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..config import Settings
from .quotas import QuotaLimits


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    # Seconds of silence before a heartbeat (0: none); --responses-ping-interval-seconds.
    ping_interval: float
    # Heartbeats as response.ping events (else SSE comments) unless a request says;
    # --responses-ping-events.
    ping_events: bool
    # A response.rate_limits.updated event opens each stream (while rate limits are on)
    # unless a request says; --responses-rate-limit-events.
    rate_limit_events: bool
    # Only what the official SDK's strict models parse; --responses-compatibility-mode.
    compatibility_mode: bool
    # The tier of a request that names none, and the tiers a request may name.
    default_service_tier: str
    allowed_service_tiers: tuple[str, ...]
    # Largest event a stream or a background log may carry; --max-stream-event-bytes.
    max_stream_event_bytes: int
    # Most bytes of events a stream's reader may leave unsent;
    # --responses-stream-buffer-max-bytes.
    stream_buffer_max_bytes: int
    # Seconds a response waits for tool outputs; --responses-tool-timeout.
    tool_timeout: float
    # Longest a stream may run (0: no limit); --responses-max-stream-seconds.
    max_stream_seconds: float
    # New responses are refused while this many run in the engine (0: no bound).
    max_queued_requests: int
    # Conversations: most items one holds, largest item a client adds (0: no limit), and
    # how long a response waits for the one running on its conversation (0: forever);
    # --max-conversation-items, --max-conversation-item-bytes,
    # --conversation-lock-timeout-seconds.
    max_conversation_items: int
    max_conversation_item_bytes: int
    conversation_lock_timeout: float
    # Memory a background response's event log may hold before it is cut (0: no bound);
    # --max-background-log-bytes.
    max_background_log_bytes: int = 0
    # What one key may hold at once (--max-responses-per-key and the others).
    quotas: QuotaLimits = field(default_factory=QuotaLimits)
    # Owners (as the gateway names keys) with tiers of their own; --api-key-service-tiers.
    service_tiers_by_owner: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings,
                      owner_of: Callable[[str], str] | None = None) -> ServiceConfig:
        """The runtime's part of ``settings``; ``owner_of`` names the owner of an API key
        (the gateway's naming), for the keys with service tiers of their own."""
        tiers_by_key = settings.service_tiers_by_key()
        if tiers_by_key and owner_of is None:
            raise ValueError("per-key service tiers need the gateway's owner of each key")
        return cls(
            ping_interval=settings.responses_ping_interval_seconds,
            ping_events=settings.responses_ping_events,
            rate_limit_events=settings.responses_rate_limit_events,
            compatibility_mode=settings.responses_compatibility_mode,
            default_service_tier=settings.responses_default_service_tier,
            allowed_service_tiers=settings.responses_allowed_service_tiers,
            max_stream_event_bytes=settings.max_stream_event_bytes,
            stream_buffer_max_bytes=settings.responses_stream_buffer_max_bytes,
            tool_timeout=settings.responses_tool_timeout_seconds,
            max_stream_seconds=settings.responses_max_stream_seconds,
            max_queued_requests=settings.max_queued_requests,
            max_conversation_items=settings.max_conversation_items,
            max_conversation_item_bytes=settings.max_conversation_item_bytes,
            conversation_lock_timeout=settings.conversation_lock_timeout_seconds,
            max_background_log_bytes=settings.max_background_log_bytes,
            quotas=QuotaLimits(
                responses=settings.max_responses_per_key,
                queue=settings.max_queued_requests,
                queue_share=settings.max_queued_requests_per_key,
                streams=settings.max_streams_per_key,
                reads=settings.max_concurrent_reads_per_key),
            service_tiers_by_owner={owner_of(key): tiers for key, tiers in tiers_by_key.items()}
            if owner_of is not None else {},
        )
