"""``textgym serve ID``: serve a registered id over OpenEnv's protocol (HTTP and WebSocket).

:func:`main` parses the flags, checks them (a bad one is one line on stderr, before anything
starts), builds the :class:`~textgym.server.sessions.SessionStore` and runs uvicorn. With
``--workers K`` it starts K server processes on ports P, P+1, ..., each with its own sessions
(a session lives in one process, so the client spreads its slots over the K URLs:
``RemoteVectorEnv([url1, url2, ...])``).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import multiprocessing
import os
import signal
import socket
import sys
from typing import Any

from textgym.errors import TextgymError

TOKEN_VARIABLE = "TEXTGYM_SERVE_TOKEN"

DESCRIPTION = """Serve a textgym id over OpenEnv's protocol: /health, /metadata, /schema, /reset,
/step, /step_many, /state and WebSocket sessions on /ws. Clients: textgym.server.RemoteEnv and
RemoteVectorEnv (Gymnasium envs), or any OpenEnv client. See docs/serving.md."""

EPILOG = """examples:
  textgym serve TextGen-Copy-v0 --port 8000
  textgym serve TextTools-Arithmetic-v0 --host 0.0.0.0 --token "$SECRET" --workers 4
  textgym serve TextGen-v0 --env-kwargs '{"max_new_tokens": 16}' --max-sessions 256

A token is required unless the server listens on a loopback address (127.0.0.1, ::1,
localhost); it may come from the environment variable TEXTGYM_SERVE_TOKEN instead of --token.
Needs the `serve` extra: pip install "textgym[serve]"."""


def build_parser(prog: str = "textgym serve") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("env_id", help="a registered id (`textgym list`)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=8000, help="port (8000); with --workers, the first"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes on ports PORT..PORT+K-1, each with its own sessions (1)",
    )
    parser.add_argument(
        "--max-sessions",
        type=int,
        default=64,
        help="episode slots per process: a session takes 1, a vector session num_envs (64)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=300.0,
        help="seconds after which an unused session is closed and its slots freed (300)",
    )
    parser.add_argument(
        "--max-request-bytes",
        type=int,
        default=1 << 20,
        help="largest request body or WebSocket message accepted (1048576)",
    )
    parser.add_argument(
        "--max-chunk", type=int, default=4096, help="most token ids one step may carry (4096)"
    )
    parser.add_argument(
        "--token",
        default=None,
        help=f"shared secret clients send as 'Authorization: Bearer TOKEN' (or ${TOKEN_VARIABLE})",
    )
    parser.add_argument(
        "--env-kwargs",
        default=None,
        metavar="JSON",
        help="keyword arguments for gym.make, as a JSON object (none)",
    )
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=["debug", "info", "warning", "error"],
        help="uvicorn's",
    )
    return parser


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_args(args: argparse.Namespace) -> dict[str, Any]:
    """The checked settings; raises ``SystemExit`` with one line for a bad flag."""
    import gymnasium as gym

    import textgym  # noqa: F401  (registers the ids)

    def fail(message: str) -> None:
        raise SystemExit(f"textgym serve: error: {message}")

    if args.env_id not in gym.registry:
        fail(f"unknown environment id {args.env_id!r}; `textgym list` shows the ids")
    for name, low in (
        ("workers", 1),
        ("max_sessions", 1),
        ("max_request_bytes", 1024),
        ("max_chunk", 1),
    ):
        if getattr(args, name) < low:
            fail(f"--{name.replace('_', '-')} must be >= {low}, got {getattr(args, name)}")
    if not args.idle_timeout > 0:
        fail(f"--idle-timeout must be > 0 seconds, got {args.idle_timeout}")
    if not 0 < args.port <= 65535 - (args.workers - 1):
        fail(f"--port must be in 1..65535 (with --workers, every port), got {args.port}")
    token = args.token or os.environ.get(TOKEN_VARIABLE) or None
    if token is None and not is_loopback(args.host):
        fail(
            f"--host {args.host} is not a loopback address, so a token is required: pass "
            f"--token SECRET (or set {TOKEN_VARIABLE}); clients send it as token=SECRET"
        )
    try:
        env_kwargs = json.loads(args.env_kwargs) if args.env_kwargs else {}
    except ValueError as e:
        fail(f"--env-kwargs is not valid JSON: {e}")
    if not isinstance(env_kwargs, dict):
        fail(f"--env-kwargs must be a JSON object, got {args.env_kwargs}")
    ports = [args.port + k for k in range(args.workers)]
    for port in ports:
        busy = _port_in_use(args.host, port)
        if busy:
            fail(f"cannot listen on {args.host}:{port}: {busy}; choose another --port")
    return {
        "env_id": args.env_id,
        "host": args.host,
        "ports": ports,
        "token": token,
        "env_kwargs": env_kwargs,
        "max_sessions": args.max_sessions,
        "idle_timeout": args.idle_timeout,
        "max_request_bytes": args.max_request_bytes,
        "max_chunk": args.max_chunk,
        "log_level": args.log_level,
    }


def _port_in_use(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be bound, or None."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as e:
            return e.strerror or str(e)
    return None


class ServerThread:
    """A server on ``host:port`` in a thread of this process (tests, benchmarks, notebooks):
    ``ServerThread(store).url``; :meth:`stop` closes it and its sessions."""

    def __init__(
        self,
        store: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        max_request_bytes: int = 1 << 20,
    ):
        import threading
        import time

        import uvicorn

        from textgym.server.app import create_app

        if port == 0:  # a free port, chosen by the OS
            with socket.socket() as s:
                s.bind((host, 0))
                port = s.getsockname()[1]
        app = create_app(store, token, max_request_bytes)
        config = uvicorn.Config(
            app, host=host, port=port, log_level="error", ws_max_size=max_request_bytes
        )
        self.server = uvicorn.Server(config)
        self.url = f"http://{host}:{port}"
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server on {self.url} did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def run_server(settings: dict[str, Any], port: int) -> None:
    """Build the store and serve it on ``port`` until interrupted (one process)."""
    import uvicorn

    from textgym.server.app import create_app
    from textgym.server.sessions import SessionStore

    store = SessionStore(
        settings["env_id"],
        settings["env_kwargs"],
        max_sessions=settings["max_sessions"],
        idle_timeout=settings["idle_timeout"],
        max_chunk=settings["max_chunk"],
    )
    app = create_app(store, settings["token"], settings["max_request_bytes"])
    uvicorn.run(
        app,
        host=settings["host"],
        port=port,
        log_level=settings["log_level"],
        ws_max_size=settings["max_request_bytes"],
        timeout_graceful_shutdown=5,
    )


def main(argv: list[str] | None = None, prog: str = "textgym serve") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
        import websockets  # noqa: F401
    except ModuleNotFoundError as e:
        raise SystemExit(
            f'textgym serve: error: {e.name} is not installed; pip install "textgym[serve]"'
        ) from None
    settings = check_args(args)
    try:  # build one env now: bad --env-kwargs fail here, in one line, before listening
        from textgym.server.sessions import SessionStore

        SessionStore(settings["env_id"], settings["env_kwargs"], max_sessions=1)
    except (TextgymError, TypeError) as e:
        raise SystemExit(f"textgym serve: error: {args.env_id}: {e}") from None
    scheme_host = f"http://{settings['host']}"
    for port in settings["ports"]:
        print(
            f"serving {settings['env_id']} on {scheme_host}:{port} (ws://{settings['host']}:{port}/ws)",
            flush=True,
        )
    try:
        if len(settings["ports"]) == 1:
            run_server(settings, settings["ports"][0])
            return 0
        workers = [
            multiprocessing.get_context("spawn").Process(target=run_server, args=(settings, port))
            for port in settings["ports"]
        ]

        def stop(signum: int, frame: Any) -> None:
            # SIGTERM would end this process alone and leave its workers serving: end them too.
            for w in workers:
                if w.pid is not None:
                    w.terminate()
            for w in workers:
                if w.pid is not None:
                    w.join(timeout=30)
            raise SystemExit(128 + signum)

        signal.signal(signal.SIGTERM, stop)
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(prog="python -m textgym.server.serve"))
