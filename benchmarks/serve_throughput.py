"""Steps/s and tokens/s through ``textgym serve`` against the local env, per protocol.

The server runs in its own process (``textgym serve ID``), the client here. For each number of
sessions N (1, 16, 64) and each protocol (HTTP, WebSocket) three ways of driving N episodes:

* ``token``: N single sessions, one token per request (``RemoteEnv.step``), N client threads;
* ``chunk``: N single sessions, each episode's tokens sent as one chunk
  (``step_chunks``: one ``/step_many`` request for all N over HTTP; one request per session over
  a WebSocket, N client threads), plus each episode's reset request;
* ``vector``: one vector session of N slots, one request per step of all N
  (``RemoteVectorEnv``).

The local rows step N ``gym.make`` envs in a loop (the reference of ``token`` and ``chunk``) and
one ``gym.make_vec`` env (the reference of ``vector``). A remote row and its local reference
take turns in three windows each, and each keeps its fastest window, so both see the same load
on a shared machine; a local row is its fastest window over all of them. The overhead per token
is ``1e6 / remote tokens/s - 1e6 / local tokens/s`` microseconds. On a token env one step is one
token, so requests/s (env steps) and tokens/s differ only for ``chunk``, whose requests carry
many tokens (and count the resets).

    python -m benchmarks.serve_throughput                       # TextGen-Copy-v0, N = 1, 16, 64
    python -m benchmarks.serve_throughput --sessions 1 16 --seconds 2 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import gymnasium as gym
import numpy as np

import textgym  # noqa: F401  (registers the ids)
from textgym.server import RemoteEnv, RemoteVectorEnv, step_chunks


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(env_id: str, port: int, max_sessions: int) -> subprocess.Popen:
    """``textgym serve`` in its own process; returns once /health answers."""
    import http.client

    cmd = [sys.executable, "-m", "textgym.cli", "serve", env_id, "--port", str(port)]
    cmd += ["--max-sessions", str(max_sessions)]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, env={**os.environ})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError(f"textgym serve {env_id} did not start on port {port}")


def timed(step, seconds: float) -> tuple[int, int, float]:
    """Call ``step() -> (requests, tokens)`` for about ``seconds``: totals and elapsed time."""
    requests = tokens = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        r, t = step()
        requests, tokens = requests + r, tokens + t
    return requests, tokens, time.perf_counter() - start


def faster(a: tuple | None, b: tuple) -> tuple:
    """The window with more tokens per second."""
    return b if a is None or b[1] / b[2] > a[1] / a[2] else a


def timed_pair(local, remote, seconds: float, windows: int = 3) -> tuple[tuple, tuple]:
    """The fastest of ``windows`` windows of each, local and remote taking turns, so that both
    see the same load on a shared machine."""
    local(), remote()  # warm up
    best_local = best_remote = None
    for _ in range(windows):
        best_local = faster(best_local, timed(local, seconds / windows / 2))
        best_remote = faster(best_remote, timed(remote, seconds / windows / 2))
    return best_local, best_remote


def local_singles(env_id: str, n: int, vocab: int):
    envs = [gym.make(env_id) for _ in range(n)]
    for i, env in enumerate(envs):
        env.reset(seed=i)
    rng = np.random.default_rng(0)

    def step():
        for env in envs:
            _, _, terminated, truncated, _ = env.step(int(rng.integers(vocab)))
            if terminated or truncated:
                env.reset()
        return n, n

    return step


def local_vector(env_id: str, n: int, vocab: int):
    envs = gym.make_vec(env_id, num_envs=n)
    envs.reset(seed=0)
    rng = np.random.default_rng(0)
    return lambda: (envs.step(rng.integers(vocab, size=n)), (1, n))[1]


def remote_tokens(url: str, protocol: str, n: int, vocab: int, pool: ThreadPoolExecutor):
    envs = [RemoteEnv(url, protocol=protocol) for _ in range(n)]
    for i, env in enumerate(envs):
        env.reset(seed=i)

    def play(env: RemoteEnv) -> None:
        _, _, terminated, truncated, _ = env.step(int(np.random.randint(vocab)))
        if terminated or truncated:
            env.reset()

    def step():
        list(pool.map(play, envs))
        return n, n

    return step, envs


def remote_chunks(url: str, protocol: str, n: int, vocab: int, pool: ThreadPoolExecutor):
    """Every episode's tokens in one chunk (a token env ends at its budget or EOS)."""
    envs = [RemoteEnv(url, protocol=protocol) for _ in range(n)]
    budget = int(envs[0].observation_space["num_generated"].high[0])
    rng = np.random.default_rng(0)

    def step():
        for i, env in enumerate(envs):
            env.reset(seed=i)
        chunks = rng.integers(vocab, size=(n, budget)).tolist()
        if protocol == "http":
            results = step_chunks(envs, chunks)
            return n + 1, sum(r.used for r in results)  # n resets, one /step_many
        results = list(pool.map(lambda k: envs[k].step_chunk(chunks[k]), range(n)))
        return 2 * n, sum(r.used for r in results)

    return step, envs


def remote_vector(url: str, protocol: str, n: int, vocab: int, pool: ThreadPoolExecutor):
    envs = RemoteVectorEnv(url, num_envs=n, protocol=protocol)
    envs.reset(seed=0)
    rng = np.random.default_rng(0)
    return lambda: (envs.step(rng.integers(vocab, size=n)), (1, n))[1], [envs]


REMOTE_MODES = {"token": remote_tokens, "chunk": remote_chunks, "vector": remote_vector}


def run(env_id: str, sizes: list[int], seconds: float) -> list[dict]:
    vocab = int(gym.make(env_id).action_space.n)
    port = free_port()
    server = start_server(env_id, port, max_sessions=4 * max(sizes) + 8)
    url = f"http://127.0.0.1:{port}"
    rows = []
    try:
        for n in sizes:
            pool = ThreadPoolExecutor(min(n, 16))
            local = {
                "singles": local_singles(env_id, n, vocab),
                "vector": local_vector(env_id, n, vocab),
            }
            best_local: dict[str, tuple | None] = dict.fromkeys(local)
            remote_rows = []
            for protocol in ("http", "ws"):
                for mode, make in REMOTE_MODES.items():
                    step, clients = make(url, protocol, n, vocab, pool)
                    reference = "vector" if mode == "vector" else "singles"
                    ref, (requests, tokens, elapsed) = timed_pair(local[reference], step, seconds)
                    best_local[reference] = faster(best_local[reference], ref)
                    for client in clients:
                        client.close()
                    remote_rows.append(row(n, protocol, mode, requests, tokens, elapsed, ref))
            for name, (_, tokens, elapsed) in best_local.items():
                rows.append(row(n, "local", name, tokens, tokens, elapsed, None))
            rows += remote_rows
            pool.shutdown()
    finally:
        server.terminate()
        server.wait()
    return rows


def row(n: int, protocol: str, mode: str, requests: int, tokens: int, elapsed: float, ref) -> dict:
    out = {
        "sessions": n,
        "protocol": protocol,
        "mode": mode,
        "requests_per_s": requests / elapsed,
        "tokens_per_s": tokens / elapsed,
    }
    if ref is not None:
        local_tokens_per_s = ref[1] / ref[2]
        out["overhead_us_per_token"] = 1e6 / out["tokens_per_s"] - 1e6 / local_tokens_per_s
    return out


def table(rows: list[dict]) -> str:
    lines = [
        "| sessions | protocol | mode | requests/s | tokens/s | overhead per token (us) |",
        "|---:|---|---|---:|---:|---:|",
    ]
    for r in rows:
        overhead = r.get("overhead_us_per_token")
        lines.append(
            f"| {r['sessions']} | {r['protocol']} | {r['mode']} | {r['requests_per_s']:,.0f} | "
            f"{r['tokens_per_s']:,.0f} | {'' if overhead is None else f'{overhead:,.0f}'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="TextGen-Copy-v0", help="the served id (TextGen-Copy-v0)")
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--seconds", type=float, default=6.0, help="time per row (6)")
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    args = parser.parse_args(argv)
    rows = run(args.env, args.sessions, args.seconds)
    print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
