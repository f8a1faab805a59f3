"""Kill -9 during training and during a checkpoint write; corrupted checkpoints; no unpickling;
a checkpoint's training env state (a curriculum's) must fit the env it is resumed on."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest
import torch
from test_agents_helpers import a_task, make_envs, make_policy, one_thread  # noqa: F401

from agents import PPO, CheckpointError, PPOConfig

TESTS = str(Path(__file__).parent)
ITERATIONS = 6
CONFIG = dict(lr=3e-3, seed=0, progress=False, kl_coef=0.01, minibatch_size=4, adaptive_kl=True)

# Trains the tiny PPO run to ITERATIONS, checkpointing every iteration (resuming if asked).
# PAUSE_AT=k: while writing checkpoint k, after the weights, announce it and hang (to be killed).
SCRIPT = textwrap.dedent(f"""
    import os, sys, time
    sys.path.insert(0, {TESTS!r})
    import torch
    torch.set_num_threads(1)
    from test_agents_helpers import make_envs, make_policy
    from agents import PPO, PPOConfig
    ckpt, resume = sys.argv[1], sys.argv[2] == "resume"
    pause_at = int(os.environ.get("PAUSE_AT", "0"))
    class Slow(PPO):
        def extra_state(self):
            if self.iteration == pause_at:
                open(os.path.join(ckpt, "PAUSED"), "w").close()
                time.sleep(600)
            if os.environ.get("SLOW"):
                time.sleep(0.3)  # leaves the killer a window between checkpoints
            return super().extra_state()
    Slow.__name__ = "PPO"
    agent = Slow(make_policy(), make_envs(), PPOConfig(**{CONFIG!r}, checkpoint_dir=ckpt,
                                                       checkpoint_every=1))
    if resume:
        agent.resume()
        print("resumed at", agent.iteration, flush=True)
    agent.learn(total_episodes={ITERATIONS} * 8)
""")


def _start(tmp_path: Path, ckpt: Path, mode: str, **env) -> subprocess.Popen:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    return subprocess.Popen(
        [sys.executable, str(script), str(ckpt), mode],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"trainer exited early:\n{proc.stdout.read()}")
        assert time.monotonic() < deadline, "timed out waiting for the trainer"
        time.sleep(0.02)


def _latest(ckpt: Path) -> int:
    try:
        return int((ckpt / "latest").read_text().split("-")[1])
    except (OSError, IndexError, ValueError):
        return 0


def _straight_run() -> PPO:
    agent = PPO(make_policy(), make_envs(), PPOConfig(**CONFIG))
    agent.learn(iterations=ITERATIONS)
    return agent


def test_kill_9_then_resume_loses_at_most_the_iteration_in_flight(tmp_path):
    ckpt = tmp_path / "ckpt"
    proc = _start(tmp_path, ckpt, "fresh", SLOW="1")
    _wait_for(lambda: _latest(ckpt) >= 2, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    saved = _latest(ckpt)
    assert 2 <= saved < ITERATIONS
    proc = _start(tmp_path, ckpt, "resume")
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output
    assert f"resumed at {saved}" in output
    assert _latest(ckpt) == ITERATIONS
    resumed = PPO(make_policy(), make_envs(), PPOConfig(**CONFIG)).resume(ckpt)
    straight = _straight_run()
    assert resumed.episodes == straight.episodes == ITERATIONS * 8
    for (name, a), b in zip(straight.policy.named_parameters(), resumed.policy.parameters()):
        assert torch.equal(a, b), name  # bit for bit the uninterrupted run


def test_kill_during_checkpoint_write_keeps_latest_complete(tmp_path):
    ckpt = tmp_path / "ckpt"
    proc = _start(tmp_path, ckpt, "fresh", PAUSE_AT="3")
    _wait_for(lambda: (ckpt / "PAUSED").exists(), proc)
    os.kill(proc.pid, signal.SIGKILL)  # model + optimizer of iteration 3 written, state not yet
    proc.wait()
    assert (ckpt / "latest").read_text() == "iter-000002"
    assert list(ckpt.glob(".iter-000003.tmp-*"))  # the half-written one is only a temporary
    agent = PPO(make_policy(), make_envs(), PPOConfig(**CONFIG, checkpoint_dir=str(ckpt)))
    agent.resume()
    assert agent.iteration == 2
    agent.learn(iterations=1)  # the next save sweeps the stale temporary away
    assert not list(ckpt.glob(".*tmp*")) and (ckpt / "latest").read_text() == "iter-000003"


# -- corrupted and mismatched checkpoints --------------------------------------------------------


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    agent = PPO(make_policy(), make_envs(), PPOConfig(**CONFIG, checkpoint_dir=str(tmp_path / "c")))
    agent.learn(iterations=1)
    return tmp_path / "c" / "iter-000001"


def _fresh() -> PPO:
    return PPO(make_policy(), make_envs(), PPOConfig(**CONFIG))


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _flip_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x04  # one bit of the last weight: the file still parses
    path.write_bytes(bytes(data))


def _poison(path: Path) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(path))
    name = sorted(tensors)[0]
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[-1] = float("inf")
    save_file(tensors, str(path))


def _edit_state(path: Path) -> None:
    state = json.loads(path.read_text())
    state["iteration"] += 1
    path.write_text(json.dumps(state))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda c: _truncate(c / "model.safetensors"), r"model\.safetensors: not a readable"),
        (lambda c: (c / "model.safetensors").write_bytes(b"\x00" * 16), "model.safetensors"),
        (lambda c: _truncate(c / "rng.safetensors"), r"rng\.safetensors: not a readable"),
        (lambda c: _truncate(c / "optimizer.pt"), r"optimizer\.pt: cannot be loaded"),
        (lambda c: (c / "state.json").write_text("{not json"), r"state\.json: not valid JSON"),
        (lambda c: (c / "state.json").write_text("{}"), r"state\.json: missing fields"),
        (lambda c: (c / "optimizer.pt").unlink(), "incomplete: missing optimizer.pt"),
        (lambda c: (c / "model.safetensors").unlink(), "incomplete: missing model.safetensors"),
        (lambda c: _poison(c / "model.safetensors"), r"model\.safetensors: tensor .* NaN/inf"),
        (lambda c: _flip_bit(c / "model.safetensors"), r"model\.safetensors: checksum mismatch"),
        (lambda c: _flip_bit(c / "rng.safetensors"), r"rng\.safetensors: checksum mismatch"),
        (lambda c: _edit_state(c / "state.json"), r"state\.json: checksum mismatch"),
    ],
    ids=[
        "truncated-model",
        "garbage-model",
        "truncated-rng",
        "truncated-optimizer",
        "garbage-json",
        "empty-json",
        "no-optimizer",
        "no-model",
        "nan-model",
        "bit-flipped-model",
        "bit-flipped-rng",
        "edited-state",
    ],
)
def test_corrupted_checkpoint_gives_a_clear_error(checkpoint, damage, message):
    damage(checkpoint)
    agent = _fresh()
    before = [p.detach().clone() for p in agent.policy.parameters()]
    with pytest.raises(CheckpointError, match=message):
        agent.resume(checkpoint)
    assert agent.iteration == 0  # nothing was changed
    assert all(torch.equal(a, b) for a, b in zip(before, agent.policy.parameters()))


def test_mismatched_model_gives_a_clear_error(checkpoint):
    from test_agents_helpers import VOCAB

    from agents import LMPolicy
    from textgym.models import tiny_lm

    wider = LMPolicy(tiny_lm(vocab_size=VOCAB + 5, n_layer=2, n_embd=64), precision="fp32")
    with pytest.raises(CheckpointError, match="shape mismatch"):
        PPO(wider, make_envs(), PPOConfig(**CONFIG)).resume(checkpoint)
    deeper = LMPolicy(tiny_lm(vocab_size=VOCAB, n_layer=3, n_embd=64), precision="fp32")
    with pytest.raises(CheckpointError, match="missing tensors"):
        PPO(deeper, make_envs(), PPOConfig(**CONFIG)).resume(checkpoint)


def test_latest_pointing_nowhere_is_reported(checkpoint):
    (checkpoint.parent / "latest").write_text("iter-999999")
    with pytest.raises(CheckpointError, match="latest"):
        _fresh().resume(checkpoint.parent)


def _curriculum_envs():
    from textgym.tasks import Task
    from textgym.wrappers import VectorCurriculum

    easy = a_task()
    return VectorCurriculum(make_envs(), levels=[easy, Task("frac-a-2", easy.prompts, easy.scorer)])


def test_a_run_without_env_state_resumed_on_a_curriculum_is_refused(checkpoint):
    assert json.loads((checkpoint / "state.json").read_text())["env_state"] is None
    agent = PPO(make_policy(), _curriculum_envs(), PPOConfig(**CONFIG))
    with pytest.raises(CheckpointError, match=r"state\.json: the run's training env had no state"):
        agent.resume(checkpoint)
    assert agent.iteration == 0


def test_a_checkpoint_from_before_env_states_still_loads(checkpoint):
    from agents.checkpoint import _state_checksum

    state = json.loads((checkpoint / "state.json").read_text())
    del state["env_state"]  # as checkpoints were written before env states were recorded
    state["checksum"] = _state_checksum(state)
    (checkpoint / "state.json").write_text(json.dumps(state))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the env has no state to miss: no warning
        assert _fresh().resume(checkpoint).iteration == 1
    agent = PPO(make_policy(), _curriculum_envs(), PPOConfig(**CONFIG))
    with pytest.warns(RuntimeWarning, match="records no training env state"):
        agent.resume(checkpoint)
    assert agent.iteration == 1 and agent.envs.level == 0  # the curriculum keeps its own state


class _Payload:
    """Unpickling this runs code: what a malicious optimizer.pt would do."""

    def __reduce__(self):
        return (os.system, (f"touch {os.environ['PWNED']}",))


def test_pickle_payload_is_refused(checkpoint, tmp_path, monkeypatch):
    pwned = tmp_path / "pwned"
    monkeypatch.setenv("PWNED", str(pwned))
    state = torch.load(checkpoint / "optimizer.pt", weights_only=True)
    state["evil"] = _Payload()
    with open(checkpoint / "optimizer.pt", "wb") as f:
        pickle.dump(
            state, f, protocol=2
        )  # a plain pickle: torch.load(weights_only=False) would run it
    with pytest.raises(CheckpointError, match="weights_only"):
        _fresh().resume(checkpoint)
    assert not pwned.exists()


def test_no_unsafe_loading_in_agents():
    """Every torch.load in agents/ passes weights_only=True; no pickle module use."""
    root = Path(__file__).parent.parent / "agents"
    for path in root.glob("*.py"):
        text = path.read_text()
        for line in text.splitlines():
            if "torch.load(" in line:
                assert "weights_only=True" in line, f"{path.name}: {line.strip()}"
        assert "import pickle" not in text, path.name
    json.dumps({})  # state.json is plain JSON
