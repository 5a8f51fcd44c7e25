"""The HTTP routes: parse, call the service, write JSON or SSE. No business logic.

Every error a client can get goes through one handler and leaves in OpenAI's shape;
unknown routes are 404 and wrong methods 405 in that shape too, and anything
unexpected is a 500 ``server_error`` without internals.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import trio
from quart import Response, g, has_websocket_context, request, websocket
from quart.typing import ResponseTypes
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException
from werkzeug.routing import WebsocketMismatch

from ..errors import (
    APIError,
    EngineUnavailable,
    HTTPVersionNotSupported,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ServerError,
)
from ..protocol.compaction import decode_compact_request
from ..protocol.request import (
    CreateResponseRequest,
    decode_create_request,
    extension_fields_set,
)
from ..protocol.tool_outputs import parse_tool_outputs
from ..protocol.tooldefs import refuse_hosted_tools
from ..runtime.delivery import Delivery, start_streamed
from .gateway import (
    UNAUTHENTICATED_PATHS,
    HostCheck,
    check_body_request_id,
    echoable,
    request_id,
)
from .json_io import (
    json_response,
    query_bool,
    query_include,
    query_int,
    query_order,
    read_body,
)
from .metrics import CONTENT_TYPE
from .state import AppState
from .streaming import SSEBody, sse_response
from .websocket import register_websocket_routes

log = logging.getLogger("trio_responses")

# Opt-in: keep the response open after its function calls (see runtime/tools.py).
TOOL_WAIT_HEADER = "x-responses-tool-wait"
# Heartbeats of this stream as response.ping events ("true") or SSE comments ("false");
# absent: the server's --responses-ping-events.
PING_EVENTS_HEADER = "x-responses-ping-events"
# A response.rate_limits.updated event in this stream ("true") or none ("false"); absent:
# the server's --responses-rate-limit-events.
RATE_LIMIT_EVENTS_HEADER = "x-responses-rate-limit-events"


def error_response(exc: APIError) -> Response:
    return json_response(exc.to_dict(), exc.status, exc.headers)


def _body_left_unread() -> bool:
    """Whether the request came with a body this app answered without reading."""
    if getattr(g, "body_read", False):
        return False
    length = (request.headers.get("content-length") or "0").strip()
    return "transfer-encoding" in request.headers or length != "0"


def _flag_header(name: str, title: str) -> bool | None:
    """A true/false opt-in header (None: absent); anything else is a 400."""
    raw = request.headers.get(name)
    if raw is None:
        return None
    value = raw.strip().lower()
    if value not in ("true", "false", "1", "0"):
        raise InvalidRequest(f"Invalid {title} header {raw!r}: expected true or false.",
                             code="invalid_value")
    return value in ("true", "1")


def _current() -> Any:
    """The HTTP request or the WebSocket upgrade being handled (both have the headers,
    path and method-free fields the gateway reads)."""
    return websocket if has_websocket_context() else request


def _method() -> str:
    return "WEBSOCKET" if has_websocket_context() else request.method


def register_routes(app: QuartTrio, state: AppState) -> None:
    settings = state.settings
    hosts = HostCheck(settings.allowed_hosts, keys_configured=not state.keys.open)

    @app.before_request
    @app.before_websocket
    async def _gateway() -> None:
        current = _current()
        g.started = time.perf_counter()
        g.request_id = request_id(current.headers)
        # Unset until the key checked out: a 401 shows no one's rate limits.
        g.owner = None
        if current.http_version == "2" and current.scheme in ("http", "ws") \
                and not settings.h2c:
            raise HTTPVersionNotSupported(
                "HTTP/2 over cleartext (h2c) is off on this server (--h2c); use HTTP/1.1.")
        hosts.check(current.headers.get("host"))
        g.owner = "" if current.path in UNAUTHENTICATED_PATHS \
            else state.keys.owner(current.headers.get("authorization"))

    def gateway_headers(status: int | None) -> dict[str, str]:
        """The headers every answer carries (an HTTP response, a WebSocket's accept or
        refusal), and its count in the metrics."""
        current = _current()
        rule = current.url_rule
        state.metrics.count_request(
            route=rule.rule if rule is not None else None, method=_method(),
            status=status if status is not None else 101,
            authenticated=getattr(g, "owner", None) is not None)
        headers: dict[str, str] = {}
        if state.limiter.enabled and current.path.startswith("/v1/"):
            owner = getattr(g, "owner", None)
            if owner is not None:
                limits = getattr(g, "rate_limits", None) or state.limiter.states(owner)
                headers.update(state.limiter.headers(limits))
        headers["x-request-id"] = getattr(g, "request_id", "") or request_id({})
        started = getattr(g, "started", None)
        if started is not None:
            elapsed = int((time.perf_counter() - started) * 1000)
            headers["openai-processing-ms"] = str(elapsed)
        headers["openai-version"] = \
            echoable(current.headers.get("openai-version")) or "2020-10-01"
        organization = echoable(current.headers.get("openai-organization"))
        if organization:
            headers["openai-organization"] = organization
        return headers

    @app.after_request
    async def _headers(response: Response) -> Response:
        own_limits = "x-ratelimit-limit-requests" in response.headers  # set by the route
        for name, value in gateway_headers(response.status_code).items():
            if not (own_limits and name.startswith("x-ratelimit-")):
                response.headers[name] = value
        if _body_left_unread():
            # Answered before the body was read (401, 413, 404 ...): Hypercorn leaves such
            # a connection open but never serves another request on it, so a client that
            # reuses it waits forever. Tell the client not to.
            response.headers["connection"] = "close"
        return response

    @app.after_websocket
    async def _upgrade_refused(response: ResponseTypes | None) -> ResponseTypes | None:
        if response is not None:  # refused: an HTTP answer to the upgrade
            response.headers.update(gateway_headers(response.status_code))
        return response

    @app.errorhandler(APIError)
    async def _api_error(exc: APIError) -> Response:
        return error_response(exc)

    @app.errorhandler(HTTPException)
    async def _http_error(exc: HTTPException) -> Response:
        path = _current().path
        if has_websocket_context() and (exc.code in (404, 405)
                                        or isinstance(exc, WebsocketMismatch)):
            # An upgrade where there is no WebSocket: refused like an unknown URL.
            return error_response(NotFound(f"No WebSocket endpoint at {path}; WebSocket "
                                           "mode is at /v1/responses.", code="unknown_url"))
        if exc.code == 404:
            return error_response(NotFound(f"Unknown request URL: {_method()} "
                                           f"{path}.", code="unknown_url"))
        if exc.code == 405:
            return error_response(MethodNotAllowed(
                f"Method {_method()} is not allowed for {path}."))
        if exc.code == 413:
            return error_response(PayloadTooLarge(
                f"The request body exceeds the server's limit of "
                f"{settings.max_request_body_bytes} bytes (--max-request-body-bytes)."))
        error = APIError(exc.description or "HTTP error", code=None)
        error.status, error.type = exc.code or 400, "invalid_request_error"
        return error_response(error)

    @app.errorhandler(Exception)
    async def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error in %s %s", _method(), _current().path)
        return error_response(ServerError("The server had an error while processing your "
                                          "request."))

    def parse_create(body: bytes, header_request_id: str | None = None
                     ) -> CreateResponseRequest:
        create = decode_create_request(body)
        if settings.responses_compatibility_mode:
            extensions = extension_fields_set(create)
            if extensions:
                raise InvalidRequest(
                    f"Unknown parameter: '{extensions[0]}' (a vLLM extension; this server "
                    "runs in compatibility mode).", param=extensions[0],
                    code="unknown_parameter")
        if settings.responses_reject_hosted_tools:
            refuse_hosted_tools(create.tools or ())
        check_body_request_id(create.request_id, header_request_id)
        return create

    register_websocket_routes(app, state, parse_create,
                              upgrade_headers=lambda: gateway_headers(None))

    @app.post("/v1/responses")
    async def create_response() -> Response:
        create = parse_create(await read_body(), request.headers.get("x-request-id"))
        wants_sse = "text/event-stream" in request.headers.get("accept", "")
        stream = bool(create.stream) or (create.stream is None and wants_sse)
        tool_wait = request.headers.get(TOOL_WAIT_HEADER, "").lower() in ("1", "true")
        ping_events = _flag_header(PING_EVENTS_HEADER, "X-Responses-Ping-Events")
        rate_limit_events = _flag_header(RATE_LIMIT_EVENTS_HEADER,
                                         "X-Responses-Rate-Limit-Events")
        if stream:
            run, delivery = await start_streamed(state.service, create, owner=g.owner,
                                                 tool_wait=tool_wait, ping_events=ping_events,
                                                 rate_limit_events=rate_limit_events)
            g.rate_limits = run.rate_limits
            return sse_response(SSEBody(delivery))
        run = await state.service.create(create, owner=g.owner, stream=False,
                                         tool_wait=tool_wait, ping_events=ping_events,
                                         rate_limit_events=rate_limit_events)
        g.rate_limits = run.rate_limits
        try:
            # A disconnect that came while create() was in a worker thread (the store
            # write, which Trio does not interrupt) is only delivered at a checkpoint.
            await trio.lowlevel.checkpoint_if_cancelled()
        except BaseException:
            if not run.background:
                run.end("disconnect")
            raise
        if not run.background:
            try:
                await run.done.wait()
            except BaseException:
                run.end("disconnect")
                raise
        return json_response(run.response)

    @app.post("/v1/responses/input_tokens")
    async def input_tokens() -> Response:
        create = parse_create(await read_body(), request.headers.get("x-request-id"))
        count = await state.service.count_input_tokens(create, g.owner)
        return json_response({"object": "response.input_tokens", "input_tokens": count})

    @app.post("/v1/responses/compact")
    async def compact_response() -> Response:
        compact = decode_compact_request(await read_body())
        compacted, g.rate_limits = await state.service.compact(compact, g.owner)
        return json_response(compacted)

    @app.get("/v1/responses/<response_id>")
    async def retrieve_response(response_id: str) -> Response:
        # Every parameter is checked, also those only a stream uses.
        stream = query_bool("stream")
        query_bool("include_obfuscation")
        query_include()
        raw = request.args.get("starting_after")
        starting_after = None if raw is None else query_int("starting_after", 0, -1, 2**62)
        if stream:
            slot = state.service.quotas.hold_stream(g.owner)
            try:
                buffer, cursor = await state.service.follow(response_id, g.owner,
                                                            starting_after)
            except BaseException:
                slot.release()
                raise
            return sse_response(SSEBody(Delivery(buffer, cursor, owner_run=None, slot=slot)))
        return json_response(await state.service.retrieve(response_id, g.owner))

    @app.delete("/v1/responses/<response_id>")
    async def delete_response(response_id: str) -> Response:
        return json_response(await state.service.delete(response_id, g.owner))

    @app.post("/v1/responses/<response_id>/cancel")
    async def cancel_response(response_id: str) -> Response:
        return json_response(await state.service.cancel(response_id, g.owner))

    @app.post("/v1/responses/<response_id>/tool_outputs")
    async def post_tool_outputs(response_id: str) -> Response:
        try:
            body = json.loads(await read_body())
        except (ValueError, RecursionError):
            raise InvalidRequest("We could not parse the JSON body of your request.",
                                 code="invalid_json") from None
        outputs = parse_tool_outputs(body)
        return json_response(await state.service.post_tool_outputs(response_id, g.owner,
                                                                    outputs))

    @app.get("/v1/responses/<response_id>/input_items")
    async def list_input_items(response_id: str) -> Response:
        order = query_order()
        query_include()
        page = await state.service.input_items(
            response_id, g.owner, limit=query_int("limit", 20, 1, 100), order=order,
            after=request.args.get("after"), before=request.args.get("before"))
        return json_response(page)

    @app.get("/v1/models")
    async def list_models() -> Response:
        model = {"id": state.engine.model_name, "object": "model",
                 "created": state.started_at, "owned_by": "trio_responses"}
        return json_response({"object": "list", "data": [model]})

    @app.get("/v1/models/<path:model_id>")
    async def retrieve_model(model_id: str) -> Response:
        if model_id != state.engine.model_name:
            raise NotFound(f"The model '{model_id}' does not exist.", param="model",
                           code="model_not_found")
        return json_response({"id": model_id, "object": "model", "created": state.started_at,
                              "owned_by": "trio_responses"})

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(state.metrics.render(), content_type=CONTENT_TYPE)

    @app.get("/health")
    async def health() -> Response:
        stats = state.engine.statistics()
        if not (state.ready and stats.healthy):
            error = EngineUnavailable("The engine is not healthy." if state.ready
                                      else "The server is not ready.")
            return json_response({"status": "unhealthy", **error.to_dict()}, 503)
        return json_response({"status": "ok", "model": state.engine.model_name})
