"""The web layer of ``textgym serve``: OpenEnv's HTTP and WebSocket protocol over a
:class:`~textgym.server.sessions.SessionStore`.

OpenEnv's routes, with its JSON shapes (``/reset`` and ``/step`` answer ``{"observation",
"reward", "done"}``, ``/ws`` takes ``{"type": "reset" | "step" | "state" | "close", "data"}``
and answers ``{"type": "observation" | "state" | "error", "data"}``), so OpenEnv clients and
``openenv validate`` work against it:

* ``GET /health``, ``GET /metadata``, ``GET /schema``, ``GET /openapi.json`` (FastAPI's),
  ``POST /mcp`` (JSON-RPC; a textgym env offers no MCP tools, so every method is "not found",
  as is a WebSocket ``{"type": "mcp"}`` message).
* ``POST /reset``: ``{"session_id"?, "seed"?, "options"?, "episode_id"?}`` (the episode id
  ``/state`` reports, OpenEnv's field; else a fresh one); without a session id a new session
  is made first (``"num_envs"``, ``"turns"``, ``"autoreset_mode"`` choose its kind) and its id
  is in the answer. OpenEnv's HTTP reset builds a throwaway env per request; textgym's episodes
  span many requests, so the session id is the one addition to OpenEnv's request fields (which
  allow extra fields).
* ``POST /step``: ``{"session_id", "action"}``; ``POST /step_many``: ``{"steps": [{"session_id",
  "action"}, ...]}`` steps several sessions in one request, each answer or error in its place.
* ``GET /state?session_id=...``, ``GET /control_points?session_id=...`` (where an engine must
  hand control back, :mod:`textgym.envs.control_points`), ``POST /sessions`` (make one, answer
  its spaces), ``DELETE /sessions/{id}``.
* ``/ws?num_envs=&turns=&autoreset_mode=``: one session per connection, as OpenEnv's; the extra
  messages ``{"type": "session"}`` and ``{"type": "control_points"}`` answer the session's
  spaces and its env's control points.

Every request but ``/health`` carries ``Authorization: Bearer <token>`` when the server has a
token. Bodies and messages over ``max_request_bytes`` are refused unread. Env calls run in worker
threads, each session's one at a time; an error answers that request only.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
from typing import Any

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

import textgym
from textgym.server.protocol import (
    CAPACITY_REACHED,
    INVALID_JSON,
    REQUEST_TOO_LARGE,
    UNAUTHORIZED,
    VALIDATION_ERROR,
    ProtocolError,
    dumps,
    error_payload,
    http_status,
    json_schema,
)
from textgym.server.sessions import Session, SessionStore


def create_app(
    store: SessionStore, token: str | None = None, max_request_bytes: int = 1 << 20
) -> FastAPI:
    """The FastAPI app serving ``store``'s id (see the module doc)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        reaper = asyncio.create_task(_reap_forever(store))
        try:
            yield
        finally:
            reaper.cancel()
            store.close_all()

    app = FastAPI(
        title=f"textgym: {store.env_id}",
        version=textgym.__version__,
        description=textgym.summary(store.env_id),
        lifespan=lifespan,
    )
    app.state.store = store

    def check_token(headers: Any) -> None:
        if token is None:
            return
        given = headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise ProtocolError(
                UNAUTHORIZED,
                "missing or wrong token: send the header 'Authorization: Bearer <token>' "
                "(the token the server was started with)",
            )

    async def read_json(request: Request) -> Any:
        check_token(request.headers)
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_request_bytes:
            raise ProtocolError(REQUEST_TOO_LARGE, _too_large(int(length), max_request_bytes))
        body = bytearray()
        async for piece in request.stream():
            body += piece
            if len(body) > max_request_bytes:
                raise ProtocolError(REQUEST_TOO_LARGE, _too_large(len(body), max_request_bytes))
        try:
            return json.loads(body) if body else {}
        except (ValueError, UnicodeDecodeError) as e:
            raise ProtocolError(INVALID_JSON, f"the body is not valid JSON: {e}") from None

    def answer(payload: Any, status: int = 200) -> Response:
        return Response(dumps(payload), status_code=status, media_type="application/json")

    def failure(error: BaseException) -> Response:
        return answer({"error": error_payload(error)}, http_status(error))

    def run(session: Session, fn: Any, *args: Any) -> Any:
        """``fn(session, *args)`` holding the session's lock (in a worker thread)."""
        with session.lock:
            session.touch()
            try:
                return fn(session, *args)
            finally:
                session.touch()

    @app.exception_handler(ProtocolError)
    async def protocol_error(request: Request, error: ProtocolError) -> Response:
        return failure(error)

    @app.get("/health")
    async def health() -> Response:
        return answer({"status": "healthy"})

    @app.get("/metadata")
    async def metadata(request: Request) -> Response:
        check_token(request.headers)
        return answer(
            {
                "name": store.env_id,
                "description": textgym.summary(store.env_id),
                "readme_content": textgym.describe(store.env_id),
                "version": textgym.__version__,
                "author": "textgym",
                "documentation_url": None,
            }
        )

    @app.get("/schema")
    async def schema(request: Request) -> Response:
        check_token(request.headers)
        probe = store.probe
        vocab = int(probe.action_space.n)
        token = {"type": "integer", "minimum": 0, "maximum": vocab - 1}
        action = {
            "type": "object",
            "description": "one key: token, tokens (a chunk), actions (vector), turn or turns",
            "properties": {
                "token": token,
                "tokens": {"type": "array", "items": token, "maxItems": store.max_chunk},
                "actions": {"type": "array", "items": token},
                "turn": {"anyOf": [{"type": "string"}, {"type": "array", "items": token}]},
                "turns": {"type": "array"},
            },
        }
        state = {
            "type": "object",
            "properties": {
                "episode_id": {"type": ["string", "null"]},
                "step_count": {"type": "integer", "minimum": 0},
            },
        }
        return answer(
            {
                "action": action,
                "observation": json_schema(probe.observation_space),
                "state": state,
                "spaces": store.describe_probe(),
            }
        )

    @app.post("/mcp")
    async def mcp(request: Request) -> Response:
        return answer(_no_mcp_tools(await read_json(request)))

    @app.post("/sessions")
    async def create_session(request: Request) -> Response:
        body = _object(await read_json(request))
        try:
            session = await run_in_threadpool(
                store.create,
                body.get("num_envs"),
                body.get("turns", False),
                body.get("autoreset_mode"),
            )
        except Exception as e:
            return failure(e)
        return answer(store.describe(session))

    @app.delete("/sessions/{session_id}")
    async def delete_session(session_id: str, request: Request) -> Response:
        check_token(request.headers)
        closed = await run_in_threadpool(store.close, session_id)
        return answer({"session_id": session_id, "closed": closed})

    @app.post("/reset")
    async def reset(request: Request) -> Response:
        body = _object(await read_json(request))
        new = body.get("session_id") is None
        try:
            if new:
                session = await run_in_threadpool(
                    store.create,
                    body.get("num_envs"),
                    body.get("turns", False),
                    body.get("autoreset_mode"),
                )
            else:
                session = store.get(body["session_id"])
        except Exception as e:
            return failure(e)
        try:
            result = await run_in_threadpool(
                run,
                session,
                store.reset,
                body.get("seed"),
                body.get("options"),
                body.get("episode_id"),
            )
        except Exception as e:
            if new:  # a rejected request leaves no session behind
                await run_in_threadpool(store.close, session.id)
            return failure(e)
        return answer({**result, "session_id": session.id})

    @app.post("/step")
    async def step(request: Request) -> Response:
        body = _object(await read_json(request))
        try:
            session = store.get(body.get("session_id"))
            result = await run_in_threadpool(run, session, store.step, body.get("action"))
        except Exception as e:
            return failure(e)
        return answer({**result, "session_id": session.id})

    @app.post("/step_many")
    async def step_many(request: Request) -> Response:
        body = _object(await read_json(request))
        steps = body.get("steps")
        if not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps):
            raise ProtocolError(VALIDATION_ERROR, "steps must be a list of {session_id, action}")

        def step_each() -> list[dict[str, Any]]:
            results = []
            for item in steps:
                try:
                    session = store.get(item.get("session_id"))
                    results.append(
                        {**run(session, store.step, item.get("action")), "session_id": session.id}
                    )
                except Exception as e:
                    results.append({"error": error_payload(e)})
            return results

        return answer({"results": await run_in_threadpool(step_each)})

    @app.get("/state")
    async def state(request: Request) -> Response:
        check_token(request.headers)
        session_id = request.query_params.get("session_id")
        if session_id is None:  # the server's, for OpenEnv's stateless GET /state
            used, limit = store.slots_in_use, store.max_sessions
            return answer(
                {"episode_id": None, "step_count": 0, "slots_in_use": used, "max_sessions": limit}
            )
        try:
            return answer(store.state(store.get(session_id)))
        except ProtocolError as e:
            return failure(e)

    @app.get("/control_points")
    async def control_points(request: Request) -> Response:
        check_token(request.headers)
        try:
            session = store.get(request.query_params.get("session_id"))
            return answer(await run_in_threadpool(run, session, store.control_points))
        except Exception as e:
            return failure(e)

    @app.websocket("/ws")
    async def websocket(ws: WebSocket) -> None:
        await ws.accept()
        session = None
        try:
            check_token(ws.headers)
            query = ws.query_params
            num_envs = int(query["num_envs"]) if query.get("num_envs") else None
            turns = query.get("turns", "false").lower() in ("1", "true")
            mode = query.get("autoreset_mode") or None
            session = await run_in_threadpool(store.create, num_envs, turns, mode)
        except (ValueError, ProtocolError, Exception) as e:
            await ws.send_text(_ws_error(e))
            # The close frame says why too: OpenEnv's client sends its first message before it
            # reads, so it meets the close, not the error (1013: no free slot, 1008: the rest).
            code = 1013 if getattr(e, "code", None) == CAPACITY_REACHED else 1008
            await ws.close(code=code, reason=str(e).encode()[:123].decode(errors="ignore"))
            return
        try:
            while True:
                text = await ws.receive_text()
                try:
                    if len(text) > max_request_bytes:
                        raise ProtocolError(
                            REQUEST_TOO_LARGE, _too_large(len(text), max_request_bytes)
                        )
                    reply = await _ws_message(store, session, run, text)
                except Exception as e:
                    await ws.send_text(_ws_error(e))
                    continue
                if reply is None:
                    break
                await ws.send_text(reply)
        except WebSocketDisconnect:
            pass
        finally:
            await run_in_threadpool(store.close, session.id)
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await ws.close()

    return app


async def _ws_message(store: SessionStore, session: Session, run: Any, text: str) -> str | None:
    """The answer to one WebSocket message (None: close the session)."""
    try:
        message = json.loads(text)
    except ValueError as e:
        raise ProtocolError(INVALID_JSON, f"the message is not valid JSON: {e}") from None
    kind = message.get("type") if isinstance(message, dict) else None
    data = message.get("data", {}) if isinstance(message, dict) else {}
    if kind == "close":
        return None
    if kind == "mcp":
        return dumps({"type": "mcp", "data": _no_mcp_tools(data)})
    store.get(session.id)  # reclaimed after the idle timeout: say so
    if kind == "reset":
        data = _object(data)
        result = await run_in_threadpool(
            run, session, store.reset, data.get("seed"), data.get("options"), data.get("episode_id")
        )
        return dumps({"type": "observation", "data": {**result, "session_id": session.id}})
    if kind == "step":
        result = await run_in_threadpool(run, session, store.step, data)
        return dumps({"type": "observation", "data": {**result, "session_id": session.id}})
    if kind == "state":
        return dumps({"type": "state", "data": store.state(session)})
    if kind == "control_points":
        result = await run_in_threadpool(run, session, store.control_points)
        return dumps({"type": "control_points", "data": result})
    if kind == "session":
        return dumps({"type": "session", "data": store.describe(session)})
    raise ProtocolError(
        VALIDATION_ERROR,
        f"unknown message type {kind!r:.40}; send reset, step, state, control_points, session, "
        f"mcp or close",
    )


def _no_mcp_tools(request: Any) -> dict[str, Any]:
    """The JSON-RPC answer to any MCP request (``POST /mcp``, a ``{"type": "mcp"}`` message):
    a textgym env offers no MCP tools."""
    request_id = request.get("id") if isinstance(request, dict) else None
    error = {"code": -32601, "message": "Method not found: a textgym env offers no MCP tools"}
    return {"jsonrpc": "2.0", "error": error, "id": request_id}


def _ws_error(error: BaseException) -> str:
    return dumps({"type": "error", "data": error_payload(error)})


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ProtocolError(VALIDATION_ERROR, f"the body must be a JSON object, got {body!r:.60}")
    return body


def _too_large(size: int, limit: int) -> str:
    return f"the request has {size} bytes, over the server's limit of {limit} (--max-request-bytes)"


async def _reap_forever(store: SessionStore) -> None:
    """Close idle sessions, checking a few times per timeout (at least once a second)."""
    period = min(1.0, store.idle_timeout / 4)
    while True:
        await asyncio.sleep(period)
        await run_in_threadpool(store.reap)
