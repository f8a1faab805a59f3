"""textgym serve and its Gymnasium clients, on loopback only.

Remote equals local, token for token (a TextGen, a dialogue, a tool-use and a reasoning-gym id;
single and vector; HTTP and WebSocket; chunked steps and text turns); 64 sessions at once;
faults (a killed server, a vanished client, malformed/oversized/unauthorised requests, unknown
sessions: each a named error, and the other sessions go on unchanged); OpenEnv's conformance
checks; the command line; a learner trained through RemoteVectorEnv equals one trained locally.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import gymnasium as gym
import numpy as np
import pytest
import requests
import torch
from registered import kwargs_for
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

import textgym
from textgym.errors import (
    InvalidTokenError,
    RemoteEnvError,
    ResetNeeded,
    ServerAuthError,
    ServerUnavailableError,
    SessionNotFoundError,
)
from textgym.server import RemoteEnv, RemoteVectorEnv, step_chunks
from textgym.server.serve import ServerThread
from textgym.server.sessions import SessionStore
from textgym.turns import TextTurns, VectorTextTurns

COPY = "TextGen-Copy-v0"
DIALOGUE = "TextDialogue-GuessNumber-v0"
TOOLS = "TextTools-Arithmetic-v0"
RG = "RG-letter_counting-v0"
KWARGS = {
    COPY: {},
    DIALOGUE: {},
    TOOLS: {"max_new_tokens": 40},
    RG: {**kwargs_for(RG), "max_new_tokens": 8},
}


@pytest.fixture(scope="module")
def servers():
    """One server per id, in this process (so envs may take Python objects as arguments)."""
    started = {
        env_id: ServerThread(SessionStore(env_id, kwargs, max_sessions=200))
        for env_id, kwargs in KWARGS.items()
    }
    yield {env_id: s.url for env_id, s in started.items()}
    for s in started.values():
        s.stop()


def same(a, b, where="value"):
    """Exactly equal: types, dtypes, shapes and values (NaN equals NaN)."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, (
            f"{where}: {a.dtype}{a.shape} != {b.dtype}{b.shape}"
        )
        if a.dtype == object:
            for k, (x, y) in enumerate(zip(a.tolist(), b.tolist())):
                same(x, y, f"{where}[{k}]")
        else:
            assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), f"{where}: {a} != {b}"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where}: length {len(a)} != {len(b)}"
        for k, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{where}[{k}]")
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b), where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def script(env_id: str, tokenizer, rng) -> list[int]:
    """Token ids that play an episode of ``env_id`` through its interesting parts."""
    text = {
        DIALOGUE: "4\n6\n7\n",  # three guesses: the partner answers each
        TOOLS: "<calc>12*3</calc>Answer: 36\n",  # a tool call: the env appends its result
    }.get(env_id)
    if text is None:
        return rng.integers(len(tokenizer), size=12).tolist()
    return tokenizer(text, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("protocol", ["http", "ws"])
@pytest.mark.parametrize("env_id", list(KWARGS))
def test_remote_env_equals_local(servers, env_id, protocol):
    local = gym.make(env_id, **KWARGS[env_id])
    remote = RemoteEnv(servers[env_id], protocol=protocol)
    assert remote.observation_space == local.observation_space
    assert remote.action_space == local.action_space
    same(remote.action_masks(), local.unwrapped.action_masks())
    rng = np.random.default_rng(0)
    for episode in range(2):
        same(remote.reset(seed=episode), local.reset(seed=episode), "reset")
        for k, token in enumerate(script(env_id, local.unwrapped.tokenizer, rng)):
            if k % 4 == 0:  # where an engine must hand control back, as the env says
                assert remote.control_points() == local.unwrapped.control_points()
            out = local.step(token)
            same(remote.step(token), out, f"episode {episode} step {k}")
            if out[2] or out[3]:
                break
    assert remote.state()["step_count"] == k + 1
    remote.close()


@pytest.mark.parametrize("protocol", ["http", "ws"])
@pytest.mark.parametrize("env_id", list(KWARGS))
def test_remote_vector_env_equals_local(servers, env_id, protocol):
    """Five slots split over two sessions (the blocks of two servers), NextStep autoreset."""
    local = gym.make_vec(env_id, num_envs=5, **KWARGS[env_id])
    remote = RemoteVectorEnv([servers[env_id]] * 2, num_envs=5, protocol=protocol)
    assert remote.single_observation_space == local.single_observation_space
    assert remote.observation_space == local.observation_space
    same(remote.reset(seed=7), local.reset(seed=7), "reset")
    rng = np.random.default_rng(1)
    ids = script(env_id, local.tokenizer, rng)
    for k in range(len(ids) + 3):
        actions = np.array([ids[(k + s) % len(ids)] for s in range(5)])
        same(remote.step(actions), local.step(actions), f"step {k}")
        assert remote.control_points() == local.control_points()
    mask = np.array([True, False, False, True, False])
    options = {"reset_mask": mask}
    if env_id == DIALOGUE:  # a per-slot episode option, split over the servers' blocks too
        options["secret"] = [1, 2, 3, 4, 5]
    same(
        remote.reset(seed=3, options=options),
        local.reset(seed=3, options=options),
    )
    remote.close()


@pytest.mark.parametrize("env_id", [COPY, DIALOGUE])
def test_gymnasium_and_sb3_env_checkers_pass(servers, env_id):
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    for check in (lambda e: check_env(e, skip_render_check=True), sb3_check_env):
        env = RemoteEnv(servers[env_id])
        check(env)
        env.close()


def test_gym_make_with_a_url(servers):
    env = gym.make("textgym.server:textgym/Remote-v0", url=servers[COPY], protocol="ws")
    twin = gym.make(COPY)
    same(env.reset(seed=5), twin.reset(seed=5))
    same(env.step(9), twin.step(9))
    envs = gym.make_vec("textgym/Remote-v0", num_envs=3, url=[servers[COPY]] * 2)
    local = gym.make_vec(COPY, num_envs=3)
    same(envs.reset(seed=5), local.reset(seed=5))
    same(envs.step(np.array([1, 2, 3])), local.step(np.array([1, 2, 3])))
    env.close()
    envs.close()


def test_vector_env_over_two_servers_same_step_autoreset(servers):
    second = ServerThread(SessionStore(COPY))
    try:
        local = gym.make_vec(COPY, num_envs=6, autoreset_mode="SameStep")
        remote = RemoteVectorEnv([servers[COPY], second.url], num_envs=6, autoreset_mode="SameStep")
        same(remote.reset(seed=0), local.reset(seed=0))
        rng = np.random.default_rng(2)
        for k in range(20):
            actions = rng.integers(99, size=6)
            same(remote.step(actions), local.step(actions), f"step {k}")
        remote.close()
    finally:
        second.stop()


@pytest.mark.parametrize("protocol", ["http", "ws"])
def test_a_chunk_stops_where_the_env_acts(servers, protocol):
    """A tool call's closing tag: the env appends the result, so the chunk stops there; the
    rest of the chunk, sent again, finishes the episode exactly as token-by-token steps do."""
    local = gym.make(TOOLS, **KWARGS[TOOLS])
    remote = RemoteEnv(servers[TOOLS], protocol=protocol)
    ids = script(TOOLS, local.unwrapped.tokenizer, None)
    remote.reset(seed=5)
    local.reset(seed=5)
    sent, used = 0, []
    while sent < len(ids):
        chunk = remote.step_chunk(ids[sent:])
        used.append(chunk.used)
        for k in range(chunk.used):
            obs, reward, terminated, truncated, info = local.step(ids[sent + k])
            assert chunk.rewards[k] == reward
        same(chunk.observation, obs)
        same((chunk.terminated, chunk.truncated, chunk.info), (terminated, truncated, info))
        sent += chunk.used
        if terminated or truncated:
            break
        assert obs["agent_mask"].sum() < obs["num_generated"][0]  # it stopped after a tool result
    assert terminated and sent == len(ids) and info["tool_calls"] == 1
    assert len(used) == 2 and used[0] < len(ids)  # two requests: up to the result, then the rest


def test_text_turns_over_the_wire(servers):
    local = TextTurns(gym.make(TOOLS, **KWARGS[TOOLS]))
    remote = RemoteEnv(servers[TOOLS], turns=True, protocol="ws")
    assert remote.action_space == local.action_space
    same(remote.reset(seed=1), local.reset(seed=1))
    same(remote.step("<calc>7*6</calc>"), local.step("<calc>7*6</calc>"))
    ids = local.unwrapped.tokenizer("Answer: 42\n", add_special_tokens=False)["input_ids"]
    out = local.step(ids)
    same(remote.step(ids), out)
    assert out[2] and out[4]["token_ids"]  # the exact token trajectory is in the info
    # N slots of turns, over two sessions (blocks), as VectorTextTurns over N envs
    local = VectorTextTurns([gym.make(TOOLS, **KWARGS[TOOLS]) for _ in range(3)])
    remote = RemoteVectorEnv([servers[TOOLS]] * 2, num_envs=3, turns=True)
    assert remote.single_action_space == local.single_action_space
    same(remote.reset(seed=4), local.reset(seed=4))
    for turns in (["<calc>1+1</calc>", "Answer: 3\n", "<calc>2*2</calc>"], ["Answer: 2\n"] * 3):
        same(remote.step(turns), local.step(turns))
    remote.close()


def test_64_sessions_at_once_equal_64_local_envs(servers):
    """Half over HTTP, half over WebSocket, stepped from 16 threads at once."""
    envs = [RemoteEnv(servers[COPY], protocol=("http", "ws")[i % 2]) for i in range(64)]
    local = [gym.make(COPY) for _ in range(64)]

    def play(i: int) -> list:
        rng = np.random.default_rng(i)
        out = [envs[i].reset(seed=i)]
        for _ in range(10):
            out.append(envs[i].step(int(rng.integers(99))))
            if out[-1][2] or out[-1][3]:
                out.append(envs[i].reset())
        return out

    with ThreadPoolExecutor(16) as pool:
        remote_runs = list(pool.map(play, range(64)))
    for i in range(64):
        rng = np.random.default_rng(i)
        expected = [local[i].reset(seed=i)]
        for _ in range(10):
            expected.append(local[i].step(int(rng.integers(99))))
            if expected[-1][2] or expected[-1][3]:
                expected.append(local[i].reset())
        same(remote_runs[i], expected, f"session {i}")
    # The 32 HTTP sessions, a chunk each, in one request.
    envs, local = envs[::2], local[::2]
    chunks = [[5 + i % 50] * 3 for i in range(32)]
    for env, twin, i in zip(envs, local, range(32)):
        env.reset(seed=100 + i)
        twin.reset(seed=100 + i)
    results = step_chunks(envs, chunks)
    for i, (result, twin) in enumerate(zip(results, local)):
        steps = [twin.step(t) for t in chunks[i][: result.used]]
        same(result.observation, steps[-1][0], f"chunk {i}")
        assert result.rewards.tolist() == [s[1] for s in steps]
    for env in envs:
        env.close()


def test_bad_requests_get_clear_errors_and_leave_other_sessions_alone():
    server = ServerThread(SessionStore(COPY, max_sessions=4), max_request_bytes=4096)
    try:
        bystander, twin = RemoteEnv(server.url), gym.make(COPY)
        same(bystander.reset(seed=9), twin.reset(seed=9))
        same(bystander.step(3), twin.step(3))
        victim = RemoteEnv(server.url)
        victim.reset(seed=1)
        url = server.url
        # malformed JSON, an oversized body, an unknown session, a bad action: each answered
        # with its error, as HTTP status and JSON
        r = requests.post(f"{url}/reset", json={"seed": -1}, timeout=10)  # makes no session
        assert r.status_code == 400 and r.json()["error"]["type"] == "InvalidArgumentError"
        assert requests.get(f"{url}/state", timeout=10).json()["slots_in_use"] == 2
        r = requests.post(f"{url}/step", data="{not json", timeout=10)
        assert r.status_code == 400 and r.json()["error"]["code"] == "INVALID_JSON"
        r = requests.post(f"{url}/step", data=json.dumps({"x": "a" * 10_000}), timeout=10)
        assert r.status_code == 413 and "4096" in r.json()["error"]["message"]
        r = requests.post(
            f"{url}/step", json={"session_id": "nope", "action": {"token": 1}}, timeout=10
        )
        assert r.status_code == 404 and r.json()["error"]["code"] == "SESSION_NOT_FOUND"
        r = requests.post(
            f"{url}/step", json={"session_id": victim.session_id, "action": [1]}, timeout=10
        )
        assert r.status_code == 400 and "one key" in r.json()["error"]["message"]
        with pytest.raises(InvalidTokenError, match="not a valid token|vocabulary"):
            victim.step(10_000)
        with pytest.raises(
            InvalidTokenError, match=r"tokens\[2\]"
        ):  # checked before any is stepped
            victim.step_chunk([1, 2, -5])
        assert victim.state()["step_count"] == 0
        victim._link.session_id = "0" * 32
        with pytest.raises(SessionNotFoundError, match="reset to start a new one"):
            victim.step(1)
        victim.reset(seed=1)  # a new session
        never_reset = RemoteEnv(url)
        with pytest.raises(ResetNeeded):
            never_reset.step(1)  # never reset: the env's own error, by its class
        with pytest.raises(RemoteEnvError, match="episode slots"):
            RemoteEnv(url)  # the fifth session of four
        never_reset.close()  # a free slot: the WebSocket session below is not refused
        # a WebSocket message over the limit closes that connection only (1009: too big)
        with connect(url.replace("http", "ws") + "/ws") as ws:
            ws.send("x" * 10_000)
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
            assert closed.value.rcvd.code == 1009
        for token in (4, 5, 6):
            same(bystander.step(token), twin.step(token))
    finally:
        server.stop()


def test_token_is_required_when_set():
    server = ServerThread(SessionStore(COPY), token="s3cret")
    try:
        bystander, twin = RemoteEnv(server.url, token="s3cret"), gym.make(COPY)
        same(bystander.reset(seed=8), twin.reset(seed=8))
        assert requests.get(f"{server.url}/health", timeout=10).json() == {"status": "healthy"}
        for token in (None, "wrong"):
            with pytest.raises(ServerAuthError, match="token"):
                RemoteEnv(server.url, token=token)
            with pytest.raises(ServerAuthError, match="token"):
                RemoteEnv(server.url, token=token, protocol="ws")
        r = requests.post(
            f"{server.url}/step",
            json={"session_id": bystander.session_id, "action": {"token": 1}},
            timeout=10,
        )
        assert r.status_code == 401 and r.json()["error"]["code"] == "UNAUTHORIZED"
        assert requests.get(f"{server.url}/metadata", timeout=10).status_code == 401
        # the close frame names the reason too (OpenEnv's client meets it before the error)
        with connect(server.url.replace("http", "ws") + "/ws") as ws:
            assert json.loads(ws.recv(timeout=10))["data"]["code"] == "UNAUTHORIZED"
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
            assert closed.value.rcvd.code == 1008 and "token" in closed.value.rcvd.reason
        same(bystander.step(2), twin.step(2))  # untouched by the refused step
        env, twin = RemoteEnv(server.url, token="s3cret", protocol="ws"), gym.make(COPY)
        same(env.reset(seed=2), twin.reset(seed=2))
    finally:
        server.stop()


def test_a_vanished_clients_sessions_are_reclaimed_after_the_idle_timeout():
    store = SessionStore(COPY, max_sessions=2, idle_timeout=1.5)
    server = ServerThread(store)
    try:
        env = RemoteEnv(server.url)
        env.reset(seed=0)  # then the client goes quiet: its session is reclaimed after 1.5 s
        assert store.slots_in_use == 1
        ws = connect(server.url.replace("http", "ws") + "/ws", legacy=True)
        ws.socket.close()  # vanishes without a goodbye: its session closes with the connection
        deadline = time.monotonic() + 10
        while store.slots_in_use and time.monotonic() < deadline:
            time.sleep(0.1)
        assert store.slots_in_use == 0
        with pytest.raises(SessionNotFoundError, match="reclaimed"):
            env.step(1)
        twin = gym.make(COPY)
        same(env.reset(seed=4), twin.reset(seed=4))  # a new session, within the limit again
        same(env.step(7), twin.step(7))
    finally:
        server.stop()


@pytest.mark.parametrize("protocol", ["http", "ws"])
def test_a_request_past_the_clients_timeout_is_a_named_error(protocol):
    def slow(prompts, completions, references):
        time.sleep(3.0)
        return np.zeros(len(completions), dtype=np.float32)

    server = ServerThread(SessionStore(COPY, {"scorer": slow}))
    try:
        env = RemoteEnv(server.url, protocol=protocol, timeout=1.0)
        env.reset(seed=0)
        with pytest.raises(ServerUnavailableError, match="did not answer within 1 s"):
            for _ in range(8):  # the episode's last step calls the scorer
                env.step(5)
    finally:
        server.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_cli(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "textgym.cli", "serve", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def wait_healthy(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read()
        try:
            if requests.get(f"{url}/health", timeout=1).ok:
                return
        except requests.RequestException:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not come up")


def test_a_killed_server_is_a_named_error_and_a_restart_works():
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = start_cli(COPY, "--port", str(port))
    try:
        wait_healthy(url, process)
        envs = {protocol: RemoteEnv(url, protocol=protocol) for protocol in ("http", "ws")}
        for env in envs.values():
            env.reset(seed=0)
            env.step(3)
        process.kill()  # mid-episode
        process.wait()
        for env in envs.values():
            with pytest.raises(ServerUnavailableError, match="reset"):
                env.step(4)
            with pytest.raises(ServerUnavailableError):
                env.reset(seed=0)
        process = start_cli(COPY, "--port", str(port))
        wait_healthy(url, process)
        for env in envs.values():
            twin = gym.make(COPY)
            same(env.reset(seed=0), twin.reset(seed=0))
            same(env.step(4), twin.step(4))
    finally:
        process.kill()
        process.wait()


def test_workers_serve_a_vector_env_over_their_ports():
    port = free_port()
    process = start_cli(COPY, "--port", str(port), "--workers", "2")
    try:
        urls = [f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}"]
        for url in urls:
            wait_healthy(url, process)
        local = gym.make_vec(COPY, num_envs=4)
        remote = RemoteVectorEnv(urls, num_envs=4, protocol="ws")
        same(remote.reset(seed=11), local.reset(seed=11))
        for k in range(9):
            same(remote.step(np.full(4, 20 + k)), local.step(np.full(4, 20 + k)))
        remote.close()
    finally:
        process.terminate()
        process.wait()
    # SIGTERM to the command ends its worker processes too: nothing listens any more.
    for port_k in (port, port + 1):
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port_k)) != 0, f"a worker still serves {port_k}"


def test_cli_errors_are_one_line_before_anything_listens(capsys):
    from textgym.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        free = ["--port", str(free_port())]
        for argv, message in (
            (["Nope-v0"], "unknown environment id 'Nope-v0'"),
            ([COPY, "--port", str(port)], f"cannot listen on 127.0.0.1:{port}"),
            ([COPY, "--host", "0.0.0.0"], "a token is required"),
            ([COPY, "--env-kwargs", "{"], "--env-kwargs is not valid JSON"),
            ([COPY, "--env-kwargs", '{"max_new_tokens": -1}'], "max_new_tokens must be"),
            ([COPY, "--max-sessions", "0"], "--max-sessions must be >= 1"),
        ):
            with pytest.raises(SystemExit) as error:
                main(["serve", *argv, *free] if "--port" not in argv else ["serve", *argv])
            text = str(error.value.code)
            assert text.startswith("textgym serve: error: ") and message in text, text
            assert "\n" not in text
    assert (
        "--max-request-bytes"
        in subprocess.run(
            [sys.executable, "-m", "textgym.cli", "serve", "--help"], capture_output=True, text=True
        ).stdout
    )


def test_the_throughput_benchmark_runs():
    from benchmarks.serve_throughput import run, table

    rows = run(COPY, [2], seconds=0.3)
    assert {(r["protocol"], r["mode"]) for r in rows} == {
        ("local", "singles"),
        ("local", "vector"),
        *((p, m) for p in ("http", "ws") for m in ("token", "chunk", "vector")),
    }
    assert all(r["tokens_per_s"] > 0 for r in rows) and "overhead per token" in table(rows)


def test_openenv_conformance(servers):
    """What `openenv validate --url` checks, and OpenEnv's WebSocket client exchange."""
    url = servers[COPY]
    openapi = requests.get(f"{url}/openapi.json", timeout=10).json()
    assert isinstance(openapi["info"]["version"], str)
    assert {"/reset", "/step", "/state"} <= set(openapi["paths"])
    assert requests.get(f"{url}/health", timeout=10).json()["status"] == "healthy"
    metadata = requests.get(f"{url}/metadata", timeout=10).json()
    assert metadata["name"] == COPY and isinstance(metadata["description"], str)
    schema = requests.get(f"{url}/schema", timeout=10).json()
    assert all(isinstance(schema[k], dict) for k in ("action", "observation", "state"))
    assert requests.post(f"{url}/mcp", json={}, timeout=10).json()["jsonrpc"] == "2.0"
    # OpenEnv's HTTP shapes: reset and step answer {observation, reward, done}
    reset = requests.post(f"{url}/reset", json={"seed": 0}, timeout=10).json()
    assert reset["reward"] is None and reset["done"] is False
    local = gym.make(COPY)
    obs, _ = local.reset(seed=0)
    assert reset["observation"]["input_ids"] == obs["input_ids"].tolist()
    step = requests.post(
        f"{url}/step", json={"session_id": reset["session_id"], "action": {"token": 5}}, timeout=10
    ).json()
    obs, reward, *_ = local.step(5)
    assert (
        step["observation"]["input_ids"] == obs["input_ids"].tolist() and step["reward"] == reward
    )
    # OpenEnv's reset field episode_id names the episode in /state; a bad one changes nothing
    session_id = reset["session_id"]
    named = {"session_id": session_id, "seed": 1, "episode_id": "ep-7"}
    requests.post(f"{url}/reset", json=named, timeout=10).raise_for_status()
    state = requests.get(f"{url}/state", params={"session_id": session_id}, timeout=10).json()
    assert state["episode_id"] == "ep-7" and state["step_count"] == 0
    bad = requests.post(f"{url}/reset", json={**named, "episode_id": 7}, timeout=10)
    assert bad.status_code == 400 and "episode_id must be a string" in bad.text
    state = requests.get(f"{url}/state", params={"session_id": session_id}, timeout=10).json()
    assert state["episode_id"] == "ep-7"
    # OpenEnv's EnvClient over /ws: reset, step, state, mcp, close
    with connect(url.replace("http", "ws") + "/ws") as ws:
        ws.send(json.dumps({"type": "reset", "data": {"seed": 0, "episode_id": "ws-1"}}))
        answer = json.loads(ws.recv(timeout=10))
        assert answer["type"] == "observation" and answer["data"]["done"] is False
        ws.send(json.dumps({"type": "step", "data": {"token": 5}}))
        answer = json.loads(ws.recv(timeout=10))
        assert answer["data"]["observation"]["input_ids"] == obs["input_ids"].tolist()
        ws.send(json.dumps({"type": "state"}))
        state = json.loads(ws.recv(timeout=10))
        assert state["type"] == "state" and state["data"]["step_count"] == 1
        assert state["data"]["episode_id"] == "ws-1"
        ws.send(json.dumps({"type": "mcp", "data": {"jsonrpc": "2.0", "method": "tools/list"}}))
        mcp = json.loads(ws.recv(timeout=10))
        assert mcp["type"] == "mcp" and mcp["data"]["error"]["code"] == -32601
        ws.send(json.dumps({"type": "nonsense"}))
        error = json.loads(ws.recv(timeout=10))
        assert error["type"] == "error" and "unknown message type" in error["data"]["message"]
        ws.send(json.dumps({"type": "close"}))


def test_a_learner_trains_through_remote_vector_env_as_locally():
    """REINFORCE on the tiny character task: every weight and the evaluation equal a local
    run's with the same seeds."""
    from test_agents_helpers import a_task, make_policy

    from agents import REINFORCE, REINFORCEConfig, evaluate

    kwargs = dict(task=a_task(), tokenizer="char", max_new_tokens=6, max_prompt_tokens=10)
    server = ServerThread(SessionStore("TextGen-v0", kwargs))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        runs = []
        for envs in (
            gym.make_vec("TextGen-v0", num_envs=8, **kwargs),
            RemoteVectorEnv(server.url, num_envs=8, protocol="ws"),
        ):
            config = REINFORCEConfig(lr=3e-3, seed=0, progress=False, kl_coef=0.0)
            agent = REINFORCE(make_policy(), envs, config)
            agent.learn(iterations=4)
            result = evaluate(agent, envs, n_episodes=16, split="test", seed=1)
            runs.append((agent.policy.model.state_dict(), result.reward_mean))
        (local_weights, local_reward), (remote_weights, remote_reward) = runs
        assert remote_reward == local_reward
        for name, tensor in local_weights.items():
            assert torch.equal(tensor, remote_weights[name]), name
    finally:
        torch.set_num_threads(threads)
        server.stop()


def test_protocol_round_trips_values_exactly():
    from textgym.server.protocol import decode, dumps, encode

    values = {
        "ints": np.arange(6, dtype=np.int64).reshape(2, 3),
        "bools": np.array([True, False]),
        "floats": np.array([0.1, np.nan, -np.inf], dtype=np.float32),
        "objects": np.array([None, "a", [1, 2]], dtype=object),
        "scalar": np.float64(0.30000000000000004),
        "tuple": ("x", 1),
        "nan": float("nan"),
        "nested": {"final_info": {"score": np.array([1.5])}},
    }
    same(decode(json.loads(dumps(encode(values)))), values)
    assert textgym.server.RemoteEnv is RemoteEnv
