"""One session on one ``textgym serve`` server, over HTTP or a WebSocket: the transport under
:class:`~textgym.server.client.RemoteEnv` and :class:`~textgym.server.client.RemoteVectorEnv`.

:class:`Link` sends OpenEnv's requests (``/sessions``, ``/reset``, ``/step``, ``/state``; over a
WebSocket ``{"type", "data"}`` messages), turns error answers into textgym's exceptions
(:func:`textgym.server.protocol.remote_error`) and a broken connection into
:class:`~textgym.errors.ServerUnavailableError`, and reopens a session that the server lost
when the client resets.
"""

from __future__ import annotations

import contextlib
import http.client
import json
from typing import Any
from urllib.parse import urlencode, urlsplit

from textgym.errors import (
    InvalidArgumentError,
    RemoteEnvError,
    ServerUnavailableError,
    SessionNotFoundError,
)
from textgym.server.protocol import decode, encode, remote_error

PROTOCOLS = ("http", "ws")


class Link:
    """One session on one server, over HTTP or a WebSocket; reopened by :meth:`reset` when the
    server lost it (restarted, reclaimed it)."""

    def __init__(
        self, url: str, protocol: str, token: str | None, timeout: float, params: dict[str, Any]
    ):
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise InvalidArgumentError(f"url must start with http:// or https://, got {url!r:.80}")
        if protocol not in PROTOCOLS:
            raise InvalidArgumentError(f"protocol must be one of {PROTOCOLS}, got {protocol!r:.40}")
        self.url, self.protocol, self.timeout = url.rstrip("/"), protocol, float(timeout)
        self.params = {k: v for k, v in params.items() if v is not None}
        self.headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        self.session_id: str | None = None
        self._http: Any = None
        self._ws: Any = None

    # -- transport ------------------------------------------------------------------------

    def _request(self, method: str, path: str, payload: Any = None, retry: bool = False) -> Any:
        """One HTTP request on the kept-alive connection; the answer's JSON, or its error raised.
        ``retry``: an idempotent request is sent once more on a fresh connection when the kept
        one turns out dead (the server restarted since)."""
        body = None if payload is None else json.dumps(payload)
        headers = {"Content-Type": "application/json", **self.headers}
        try:
            try:
                status, text = self._exchange(method, path, body, headers)
            except (OSError, http.client.HTTPException):
                if not retry:
                    raise
                status, text = self._exchange(method, path, body, headers)
        except TimeoutError:
            raise ServerUnavailableError(
                f"the textgym server at {self.url} did not answer within {self.timeout:g} s (a "
                f"slow scorer or tool? raise the client's timeout=); the request's outcome is "
                f"unknown, so reset() before stepping on"
            ) from None
        except (OSError, http.client.HTTPException) as e:
            raise ServerUnavailableError(
                f"cannot reach the textgym server at {self.url} ({type(e).__name__}); once it is "
                f"back, reset() starts a new session"
            ) from None
        try:
            answer = json.loads(text)
        except ValueError:
            raise RemoteEnvError(
                f"{self.url}{path} answered HTTP {status} without JSON: {text[:200]!r}"
            ) from None
        if status != 200:
            raise remote_error(answer.get("error", {}) if isinstance(answer, dict) else {})
        return answer

    def _exchange(self, method: str, path: str, body: str | None, headers: dict) -> tuple[int, str]:
        if self._http is None:
            parts = urlsplit(self.url)
            kind = (
                http.client.HTTPSConnection
                if parts.scheme == "https"
                else http.client.HTTPConnection
            )
            self._http = kind(parts.hostname, parts.port, timeout=self.timeout)
        try:
            self._http.request(method, path, body=body, headers=headers)
            response = self._http.getresponse()
            return response.status, response.read().decode()
        except BaseException:
            self._http.close()  # the next request opens a fresh connection
            self._http = None
            raise

    def _post(self, path: str, payload: dict[str, Any], retry: bool = False) -> dict[str, Any]:
        return self._request("POST", path, payload, retry)

    def _send(self, kind: str, data: Any = None) -> dict[str, Any]:
        from websockets.exceptions import WebSocketException

        if self._ws is None:
            raise ServerUnavailableError(
                f"the WebSocket session with {self.url} is closed; reset() opens a new one"
            )
        from websockets.exceptions import ConnectionClosed

        try:
            # An error the server sent before closing (a wrong token) is still readable.
            with contextlib.suppress(ConnectionClosed):
                self._ws.send(
                    json.dumps({"type": kind} if data is None else {"type": kind, "data": data})
                )
            message = json.loads(self._ws.recv(timeout=self.timeout))
        except TimeoutError:
            self._drop_ws()  # its late answer would be read as the next one's
            raise ServerUnavailableError(
                f"the textgym server at {self.url} did not answer within {self.timeout:g} s (a "
                f"slow scorer or tool? raise the client's timeout=); the request's outcome is "
                f"unknown: reset() opens a new session"
            ) from None
        except (OSError, WebSocketException) as e:
            self._drop_ws()
            raise ServerUnavailableError(
                f"the WebSocket session with {self.url} broke ({type(e).__name__}); once the "
                f"server is back, reset() starts a new session"
            ) from None
        if message.get("type") == "error":
            error = remote_error(message.get("data", {}))
            if isinstance(error, SessionNotFoundError):
                self._drop_ws()
            raise error
        return message.get("data", {})

    def _drop_ws(self) -> None:
        if self._ws is not None:
            with contextlib.suppress(Exception):  # the connection is gone already
                self._ws.close()
        self._ws = None

    # -- the session ----------------------------------------------------------------------

    def open(self) -> dict[str, Any]:
        """Start a session; its description (spaces, tokenizer, ...)."""
        if self.protocol == "http":
            description = self._post("/sessions", self.params, retry=True)
        else:
            from websockets.sync.client import connect

            query = urlencode(
                {k: str(v).lower() if isinstance(v, bool) else v for k, v in self.params.items()}
            )
            ws_url = "ws" + self.url[len("http") :] + "/ws" + (f"?{query}" if query else "")
            try:
                self._ws = connect(
                    ws_url,
                    additional_headers=self.headers,
                    open_timeout=self.timeout,
                    max_size=None,
                    legacy=True,  # a connection object, not a context manager
                )
            except OSError as e:
                raise ServerUnavailableError(
                    f"cannot reach the textgym server at {self.url} ({type(e).__name__})"
                ) from None
            description = self._send("session")
        self.session_id = description["session_id"]
        return description

    def reset(self, seed: Any, options: Any) -> dict[str, Any]:
        payload = {"seed": seed, "options": None if options is None else encode(options)}
        if self.protocol == "ws":
            if self._ws is None:
                self.open()
            return self._send("reset", payload)
        try:
            return self._post("/reset", {"session_id": self.session_id, **payload}, retry=True)
        except SessionNotFoundError:
            self.open()
            return self._post("/reset", {"session_id": self.session_id, **payload})

    def step(self, action: dict[str, Any]) -> dict[str, Any]:
        if self.protocol == "ws":
            return self._send("step", action)
        return self._post("/step", {"session_id": self.session_id, "action": action})

    def state(self) -> dict[str, Any]:
        if self.protocol == "ws":
            return self._send("state")
        return self._request("GET", f"/state?{urlencode({'session_id': self.session_id})}")

    def control_points(self) -> list[Any]:
        if self.protocol == "ws":
            answer = self._send("control_points")
        else:
            query = urlencode({"session_id": self.session_id})
            answer = self._request("GET", f"/control_points?{query}")
        return decode(answer["control_points"])

    def close(self) -> None:
        if self.protocol == "ws":
            if self._ws is not None:
                with contextlib.suppress(Exception):  # closing a connection that is gone
                    self._ws.send(json.dumps({"type": "close"}))
            self._drop_ws()
        elif self._http is not None and self.session_id is not None:
            with contextlib.suppress(Exception):  # the server is gone: nothing to close
                self._request("DELETE", f"/sessions/{self.session_id}")
            if self._http is not None:
                self._http.close()
                self._http = None
