"""Checkpoints that cannot be written, weights-only checkpoints, and crafted checkpoint files that
parse but do not fit: each fails with a CheckpointError naming the file and the field, before the
learner changes (the damage is written with the files' hashes re-recorded, as a careful forger
would, so only the field checks can catch it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from test_agents_helpers import make_envs, make_policy, one_thread  # noqa: F401

from agents import PPO, CheckpointError, PPOConfig
from agents.checkpoint import CheckpointWriteError, _sha256, _state_checksum, resolve_checkpoint

CONFIG = dict(lr=3e-3, seed=0, progress=False, kl_coef=0.01, minibatch_size=4)


def _agent(**changes) -> PPO:
    return PPO(make_policy(), make_envs(), PPOConfig(**{**CONFIG, **changes}))


def _learner_state(agent: PPO) -> dict:
    """Everything resume may change: weights, optimizer, counters, RNGs."""
    return {
        "weights": [p.detach().clone() for p in agent.policy.parameters()],
        "optimizer": repr(agent.optimizer.state_dict()),
        "counters": (agent.iteration, agent.episodes, agent.tokens, agent.kl_coef),
        "numpy_rng": json.dumps(agent.rng.bit_generator.state),
        "generator": agent.generator.get_state().clone(),
    }


def _same(a: dict, b: dict) -> bool:
    return (
        all(torch.equal(x, y) for x, y in zip(a["weights"], b["weights"]))
        and a["optimizer"] == b["optimizer"]
        and a["counters"] == b["counters"]
        and a["numpy_rng"] == b["numpy_rng"]
        and torch.equal(a["generator"], b["generator"])
    )


def _rehash(folder: Path) -> None:
    """Record the files' current hashes in state.json, and its checksum."""
    state = json.loads((folder / "state.json").read_text())
    state["files"] = {
        f.name: _sha256(f) for f in sorted(folder.iterdir()) if f.name != "state.json"
    }
    state["checksum"] = _state_checksum(state)
    (folder / "state.json").write_text(json.dumps(state))


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    agent = _agent(checkpoint_dir=str(tmp_path / "c"))
    agent.learn(iterations=1)
    return tmp_path / "c" / "iter-000001"


def _edit_state(folder: Path, **fields) -> None:
    state = json.loads((folder / "state.json").read_text())
    state.update(fields)
    (folder / "state.json").write_text(json.dumps(state))
    _rehash(folder)


def _edit_optimizer(folder: Path, edit) -> None:
    optim = torch.load(folder / "optimizer.pt", weights_only=True)
    edit(optim)
    torch.save(optim, folder / "optimizer.pt")
    torch.load(folder / "optimizer.pt", weights_only=True)  # still loads safely
    _rehash(folder)


def _both_tied_names(folder: Path) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(folder / "model.safetensors"))
    own = make_policy().state_dict()
    names = [k for k in own if own[k].data_ptr() == own["model.lm_head.weight"].data_ptr()]
    assert len(names) == 2, names  # the tiny LM ties its embedding and output weights
    for name in names:
        tensors[name] = own[names[0]].clone() * 0 + 1
    save_file(tensors, str(folder / "model.safetensors"))
    _rehash(folder)


def _junk_rng(folder: Path) -> None:
    from safetensors.torch import load_file, save_file

    rng = load_file(str(folder / "rng.safetensors"))
    rng["generator"] = torch.zeros(3, dtype=torch.uint8)
    save_file(rng, str(folder / "rng.safetensors"))
    _rehash(folder)


def _set_group(key, value):
    return lambda o: o["param_groups"][0].__setitem__(key, value)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda c: _edit_state(c, numpy_rng={"junk": 1}), r"state\.json: field 'numpy_rng'"),
        (lambda c: _edit_state(c, numpy_rng="junk"), r"state\.json: field 'numpy_rng'"),
        (lambda c: _edit_state(c, iteration="3"), r"state\.json: field 'iteration'"),
        (lambda c: _edit_state(c, episodes=-1), r"state\.json: field 'episodes'"),
        (lambda c: _edit_state(c, kl_coef=None), r"state\.json: field 'kl_coef'"),
        (lambda c: _edit_state(c, extra=[]), r"state\.json: field 'extra'"),
        (_both_tied_names, r"model\.safetensors: holds tied weights under several names"),
        (_junk_rng, r"rng\.safetensors: 'generator' is not a torch RNG state"),
        (
            lambda c: _edit_optimizer(c, lambda o: o.__setitem__("param_groups", [{"lr": 1}])),
            r"optimizer\.pt: optimizer state does not fit",
        ),
        (
            lambda c: _edit_optimizer(c, lambda o: o.__setitem__("param_groups", "abc")),
            r"optimizer\.pt: optimizer state does not fit",
        ),
        (
            lambda c: _edit_optimizer(c, lambda o: o["state"].__setitem__(999, o["state"][0])),
            r"optimizer\.pt: state of parameter 999",
        ),
        (
            lambda c: _edit_optimizer(
                c, lambda o: o["param_groups"][0]["params"].__setitem__(0, 1)
            ),
            r"optimizer\.pt: param_groups' 'params' must be distinct int ids",
        ),
        (
            lambda c: _edit_optimizer(c, _set_group("lr", "abc")),
            r"optimizer\.pt: param_groups\[0\]\['lr'\]",
        ),
        (
            lambda c: _edit_optimizer(c, _set_group("betas", (0.9,))),
            r"optimizer\.pt: param_groups\[0\]\['betas'\]",
        ),
        (
            lambda c: _edit_optimizer(c, lambda o: o["state"][0].__setitem__("exp_avg", 3)),
            r"optimizer\.pt: exp_avg of parameter 0 is 3, not a tensor",
        ),
        (
            lambda c: _edit_optimizer(c, lambda o: o["state"][0].__setitem__("step", "x")),
            r"optimizer\.pt: step of parameter 0",
        ),
    ],
    ids=[
        "junk-numpy-rng",
        "string-numpy-rng",
        "string-iteration",
        "negative-episodes",
        "null-kl-coef",
        "list-extra",
        "both-tied-names",
        "junk-generator-state",
        "wrong-group-shape",
        "groups-not-a-list",
        "state-index-out-of-range",
        "duplicate-param-ids",
        "string-lr",
        "short-betas",
        "moment-not-a-tensor",
        "string-step",
    ],
)
def test_crafted_checkpoint_is_refused_before_anything_changes(checkpoint, damage, message):
    damage(checkpoint)
    agent = _agent()
    agent.learn(iterations=1)  # a learner with optimizer state and counters of its own
    before = _learner_state(agent)
    with pytest.raises(CheckpointError, match=message):
        agent.resume(checkpoint)
    assert _same(before, _learner_state(agent))


def test_a_learners_extra_state_is_checked_before_anything_changes(tmp_path):
    from agents import REINFORCE, REINFORCEConfig

    config = dict(lr=3e-3, seed=0, progress=False)
    run = REINFORCE(
        make_policy(), make_envs(), REINFORCEConfig(**config, checkpoint_dir=str(tmp_path))
    )
    run.learn(iterations=1)
    folder = resolve_checkpoint(tmp_path)
    _edit_state(folder, extra={"baseline": "abc"})
    agent = REINFORCE(make_policy(), make_envs(), REINFORCEConfig(**config))
    before = _learner_state(agent)
    with pytest.raises(CheckpointError, match=r"state\.json: field 'extra': baseline is 'abc'"):
        agent.resume(tmp_path)
    assert _same(before, _learner_state(agent)) and agent.baseline is None


def test_an_untouched_checkpoint_still_resumes(checkpoint):
    agent = _agent()
    agent.resume(checkpoint)
    assert agent.iteration == 1


# -- weights-only checkpoints ---------------------------------------------------------------------


def test_weights_only_checkpoint_is_smaller_evaluable_and_refuses_resume(tmp_path):
    full = _agent(checkpoint_dir=str(tmp_path / "full"))
    full.learn(iterations=1)
    light = _agent(checkpoint_dir=str(tmp_path / "light"), save_optimizer=False)
    light.learn(iterations=1)
    folder = resolve_checkpoint(tmp_path / "light")
    assert not (folder / "optimizer.pt").exists()
    assert (resolve_checkpoint(tmp_path / "full") / "optimizer.pt").exists()
    # the same weights as the full run's
    from safetensors.torch import load_file

    ours = load_file(str(folder / "model.safetensors"))
    theirs = load_file(str(resolve_checkpoint(tmp_path / "full") / "model.safetensors"))
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    fresh = _agent()
    before = _learner_state(fresh)
    with pytest.raises(CheckpointError, match="weights-only checkpoint .* cannot be resumed"):
        fresh.resume(tmp_path / "light")
    assert _same(before, _learner_state(fresh))


def test_save_optimizer_must_be_a_bool():
    with pytest.raises(ValueError, match="save_optimizer"):
        _agent(save_optimizer="no")


# -- checkpoints that cannot be written ------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of 2.5 MiB mounted at tmp_path/disk (root only): room for one tiny checkpoint with
    its optimizer state (about 1.7 MB), not for two."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a size-capped tmpfs needs root and mount(8)")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2560k", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _checkpoint_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.iterdir())


def test_a_full_disk_keeps_the_last_good_checkpoint(small_disk):
    agent = _agent(checkpoint_dir=str(small_disk / "c"), checkpoint_every=1)
    agent.learn(iterations=1)
    assert 1_300_000 < _checkpoint_bytes(small_disk / "c" / "iter-000001") < 2_600_000
    with pytest.raises(CheckpointWriteError, match="No space left on device") as raised:
        agent.learn(iterations=1)
    assert str(small_disk / "c" / "iter-000002") in str(raised.value)
    assert isinstance(raised.value, OSError) and raised.value.errno == 28
    assert (small_disk / "c" / "latest").read_text() == "iter-000001"
    assert sorted(p.name for p in (small_disk / "c").iterdir()) == ["iter-000001", "latest"]
    resumed = _agent()
    resumed.resume(small_disk / "c")  # the last good checkpoint is complete and checked
    assert resumed.iteration == 1


def test_a_full_disk_during_the_write_keeps_the_last_good_checkpoint(small_disk, monkeypatch):
    """The free-space estimate can be wrong (another process fills the disk meanwhile): the
    write itself fails, and is reported the same way."""
    from agents import base

    monkeypatch.setattr(base.Learner, "_checkpoint_size", lambda self: 0)
    agent = _agent(checkpoint_dir=str(small_disk / "c"), checkpoint_every=1)
    agent.learn(iterations=1)
    with pytest.raises(CheckpointWriteError, match="No space left on device"):
        agent.learn(iterations=1)
    assert (small_disk / "c" / "latest").read_text() == "iter-000001"
    assert sorted(p.name for p in (small_disk / "c").iterdir()) == ["iter-000001", "latest"]


def test_a_read_only_folder_keeps_the_last_good_checkpoint(small_disk):
    agent = _agent(checkpoint_dir=str(small_disk / "c"), checkpoint_every=1, keep_checkpoints=1)
    agent.learn(iterations=1)
    remounted = subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], capture_output=True)
    if remounted.returncode != 0:
        pytest.skip(f"cannot remount read-only: {remounted.stderr.decode().strip()}")
    with pytest.raises(CheckpointWriteError, match="Read-only file system"):
        agent.save_checkpoint()
    assert (small_disk / "c" / "latest").read_text() == "iter-000001"
    from agents.cli import run_command  # a run folder it cannot even make: one line too

    args = ["--env", "TextGen-Copy-v0", "--model", "tiny", "--out", str(small_disk / "run")]
    with pytest.raises(SystemExit, match="textgym train: error: .*Read-only file system"):
        run_command("train", [*args, "--episodes", "8", "--no-progress", "--threads", "1"])


def test_train_on_a_full_disk_exits_with_one_line(small_disk, capsys):
    from agents.cli import run_command

    out = small_disk / "run"
    args = ["--env", "TextGen-Copy-v0", "--model", "tiny", "--out", str(out), "--num-envs", "4"]
    args += ["--episodes", "400", "--checkpoint-every", "1", "--no-progress", "--threads", "1"]
    args += ["--config", '{"episodes_per_update": 4, "tensorboard": false}']
    with pytest.raises(SystemExit) as raised:
        run_command("train", args)
    message = str(raised.value.code)
    assert message.startswith("textgym train: error: cannot write checkpoint ")
    assert "No space left on device" in message and str(out / "checkpoints") in message
    assert "\n" not in message and "Traceback" not in capsys.readouterr().err
    latest = (out / "checkpoints" / "latest").read_text()
    assert (out / "checkpoints" / latest / "state.json").is_file()


def test_train_no_save_optimizer_writes_weights_only_that_eval_reads(tmp_path, capsys):
    from agents.cli import run_command

    out = tmp_path / "run"
    args = ["--env", "TextGen-Copy-v0", "--model", "tiny", "--out", str(out), "--num-envs", "4"]
    args += ["--episodes", "8", "--no-progress", "--threads", "1", "--no-save-optimizer"]
    args += ["--config", '{"episodes_per_update": 4, "tensorboard": false}']
    assert run_command("train", args) == 0
    folder = resolve_checkpoint(out / "checkpoints")
    assert sorted(f.name for f in folder.iterdir()) == [
        "model.safetensors",
        "rng.safetensors",
        "state.json",
    ]
    assert json.loads((out / "run.json").read_text())["config"]["save_optimizer"] is False
    assert run_command("eval", [str(out), "--episodes", "4", "--num-envs", "4"]) == 0
    with pytest.raises(SystemExit) as raised:
        run_command("train", ["--out", str(out), "--resume", "--episodes", "16"])
    assert "weights-only checkpoint" in str(raised.value.code)
    assert "\n" not in str(raised.value.code)
    assert (out / "checkpoints" / "latest").read_text() == folder.name  # nothing new written
