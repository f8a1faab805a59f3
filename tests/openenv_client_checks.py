"""`textgym serve` driven by OpenEnv's own client (`make openenv-check`, docs/serving.md).

Run with the Python of a venv that has `openenv-core` (not the project's .venv: it pulls gradio,
openai and fastmcp); the server and the local reference run with the project's Python:

    /tmp/openenv-venv/bin/python tests/openenv_client_checks.py [ENV_ID]

It starts `python -m textgym.cli serve ENV_ID` on a free loopback port, plays a few seeded
episodes with OpenEnv's `GenericEnvClient` (a WebSocket session: reset, step until done, state,
a chunk of ids, a bad action) and over HTTP with OpenEnv's own request models, runs
`openenv validate --url`, and checks every observation, reward and done against the same
episodes played on a local `gym.make(ENV_ID)` in the project's Python. It prints one line per
check and exits 1 at the first mismatch.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests
from openenv.core import GenericEnvClient
from openenv.core.env_server.types import ResetRequest, ResetResponse, StepRequest, StepResponse

ROOT = Path(__file__).resolve().parents[1]
# Not resolved: a venv's python is a link, and the venv is found through the link's path.
PROJECT_PYTHON = str((ROOT / os.environ.get("TEXTGYM_PYTHON", ".venv/bin/python")).absolute())
SEEDS = (0, 1, 2)

# Played in the project's Python: the episodes of gym.make(env_id) for SEEDS, as JSON. The first
# episode types the prompt back (a right answer on the copy task: a reward that is not 0), the
# others play ids the env allows, drawn from a seeded generator.
LOCAL_EPISODES = r"""
import json, sys
import gymnasium as gym
import numpy as np
import textgym

env_id, seeds = sys.argv[1], json.loads(sys.argv[2])
env = gym.make(env_id)
base = env.unwrapped
allowed = np.flatnonzero(np.asarray(base.action_masks())) if hasattr(base, "action_masks") else (
    np.arange(env.action_space.n)
)
episodes = []
for k, seed in enumerate(seeds):
    obs, info = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    planned = []
    if k == 0 and isinstance(info.get("prompt"), str):
        text = info["prompt"].rstrip("=")
        planned = base.tokenizer(text, add_special_tokens=False)["input_ids"]
    episode = {"seed": seed, "reset": {k: v.tolist() for k, v in obs.items()}, "steps": []}
    done = False
    while not done:
        action = int(planned.pop(0)) if planned else int(rng.choice(allowed))
        obs, reward, terminated, truncated, info = env.step(action)
        done = bool(terminated or truncated)
        episode["steps"].append(
            {"action": action, "observation": {k: v.tolist() for k, v in obs.items()},
             "reward": float(reward), "done": done}
        )
    episodes.append(episode)
print(json.dumps(episodes))
"""


def main() -> int:
    env_id = sys.argv[1] if len(sys.argv) > 1 else "TextGen-Copy-v0"
    episodes = local_episodes(env_id)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [PROJECT_PYTHON, "-m", "textgym.cli", "serve", env_id, "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until_healthy(url, server)
        check_websocket_client(url, episodes)
        check_http(url, episodes)
        check_openenv_validate(url)
    except CheckFailed as e:
        print(f"FAIL {e}")
        return 1
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"all OpenEnv client checks passed for {env_id}")
    return 0


class CheckFailed(Exception):
    pass


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise CheckFailed(what)


def local_episodes(env_id: str) -> list[dict[str, Any]]:
    run = subprocess.run(
        [PROJECT_PYTHON, "-c", LOCAL_EPISODES, env_id, json.dumps(SEEDS)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if run.returncode != 0:
        sys.exit(f"the local episodes failed in {PROJECT_PYTHON}:\n{run.stderr}")
    return json.loads(run.stdout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_healthy(url: str, server: subprocess.Popen, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"the server exited with {server.returncode}:\n{server.stdout.read()}")
        try:
            if requests.get(f"{url}/health", timeout=2).json() == {"status": "healthy"}:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    sys.exit(f"the server at {url} was not healthy after {timeout:g} s")


def check_websocket_client(url: str, episodes: list[dict[str, Any]]) -> None:
    """OpenEnv's GenericEnvClient (a WebSocket session) plays each episode as locally."""
    with GenericEnvClient(base_url=url).sync() as env:
        for episode in episodes:
            seed = episode["seed"]
            result = env.reset(seed=seed, episode_id=f"openenv-check-{seed}")
            expect(result.observation == episode["reset"], f"ws: reset(seed={seed}) observation")
            expect(result.reward is None and result.done is False, f"ws: reset(seed={seed})")
            for t, step in enumerate(episode["steps"]):
                result = env.step({"token": step["action"]})
                where = f"ws: seed {seed}, step {t}"
                expect(result.observation == step["observation"], f"{where}: observation")
                expect(result.reward == step["reward"], f"{where}: reward {result.reward}")
                expect(result.done == step["done"], f"{where}: done {result.done}")
            state = env.state()
            expect(state["episode_id"] == f"openenv-check-{seed}", f"ws: state {state}")
            expect(state["step_count"] == len(episode["steps"]), f"ws: state {state}")
            rewards = [s["reward"] for s in episode["steps"]]
            print(f"ok  ws   seed {seed}: {len(rewards)} steps, return {sum(rewards):.4g}")

        # One request for a whole episode's ids: it stops at the episode's end, or earlier at a
        # control point (the env appended tokens of its own); either way after some step k of
        # the local episode, with the observation of step k and the rewards up to k summed.
        episode = episodes[0]
        env.reset(seed=episode["seed"])
        actions = [s["action"] for s in episode["steps"]]
        result = env.step({"tokens": actions})
        sums = itertools.accumulate(s["reward"] for s in episode["steps"])
        expect(
            any(
                result.observation == step["observation"]
                # the server sums in float64 (numpy's pairwise order): equal up to rounding
                and math.isclose(result.reward, total, rel_tol=1e-12, abs_tol=1e-12)
                and result.done == step["done"]
                for step, total in zip(episode["steps"], sums)
            ),
            f"ws: a chunk's answer is no step's of the local episode: {result}",
        )
        print(f"ok  ws   a chunk of {len(actions)} ids: reward {result.reward}, done {result.done}")

        # A bad action is an error of that message only; the session goes on.
        env.reset(seed=episode["seed"])
        try:
            env.step({"token": 10**9})
        except RuntimeError as e:
            expect("is not a token id" in str(e), f"ws: the bad action's error: {e}")
        else:
            raise CheckFailed("ws: a bad token id was accepted")
        result = env.step({"token": episode["steps"][0]["action"]})
        expect(result.observation == episode["steps"][0]["observation"], "ws: after an error")
        expect(env.state()["step_count"] == 1, "ws: the bad action was counted")
        print("ok  ws   a bad action: RuntimeError naming it, the session unchanged")


def check_http(url: str, episodes: list[dict[str, Any]]) -> None:
    """OpenEnv's HTTP request models (ResetRequest, StepRequest) plus the session id."""
    for episode in episodes:
        seed = episode["seed"]
        body = ResetRequest(seed=seed, episode_id=f"http-{seed}").model_dump(exclude_none=True)
        answer = post(f"{url}/reset", body)
        session_id = answer["session_id"]
        reset = ResetResponse(**{k: answer[k] for k in ResetResponse.model_fields})
        expect(reset.observation == episode["reset"], f"http: reset(seed={seed}) observation")
        for t, step in enumerate(episode["steps"]):
            body = StepRequest(action={"token": step["action"]}, request_id=f"{seed}-{t}")
            answer = post(
                f"{url}/step", {**body.model_dump(exclude_none=True), "session_id": session_id}
            )
            result = StepResponse(**{k: answer[k] for k in StepResponse.model_fields})
            where = f"http: seed {seed}, step {t}"
            expect(result.observation == step["observation"], f"{where}: observation")
            expect(result.reward == step["reward"], f"{where}: reward {result.reward}")
            expect(result.done == step["done"], f"{where}: done {result.done}")
        state = requests.get(f"{url}/state", params={"session_id": session_id}, timeout=30).json()
        expect(state["episode_id"] == f"http-{seed}", f"http: state {state}")
        expect(state["step_count"] == len(episode["steps"]), f"http: state {state}")
        requests.delete(f"{url}/sessions/{session_id}", timeout=30).raise_for_status()
        print(f"ok  http seed {seed}: {len(episode['steps'])} steps")


def post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    response = requests.post(url, json=body, timeout=30)
    expect(response.status_code == 200, f"POST {url}: {response.status_code} {response.text}")
    return response.json()


def check_openenv_validate(url: str) -> None:
    """`openenv validate --url` (OpenEnv's runtime checks) passes."""
    cli = shutil.which("openenv", path=str(Path(sys.executable).parent)) or "openenv"
    run = subprocess.run(
        [cli, "validate", "--url", url], capture_output=True, text=True, timeout=120
    )
    try:
        report = json.loads(run.stdout)
    except ValueError:
        raise CheckFailed(f"openenv validate: no JSON report\n{run.stdout}{run.stderr}") from None
    failed = report["summary"]["failed_criteria"]
    expect(run.returncode == 0 and report["passed"], f"openenv validate: failed {failed}")
    print(f"ok  openenv validate --url: {report['summary']['passed_count']} criteria passed")


if __name__ == "__main__":
    sys.exit(main())
