"""The command line never shows a traceback for a user error, and never loads bad data silently.

Truncated or NaN-poisoned run files and checkpoints, unknown env arguments, bad counts and bad
``--config`` values each give a one-line error naming the file or the argument, and a non-zero
exit status, on every command that reads them (``train --resume`` and ``eval``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from textgym.cli import main

TRAIN = [
    "train",
    "--env",
    "TextGen-Copy-v0",
    "--agent",
    "reinforce",
    "--model",
    "tiny",
    "--episodes",
    "8",
    "--num-envs",
    "4",
    "--threads",
    "1",
    "--no-progress",
    "--checkpoint-every",
    "1",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main([*TRAIN, "--out", str(out)]) == 0
    return out


@pytest.fixture
def run_dir(trained, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    return copy


def _ckpt(run: Path) -> Path:
    root = run / "checkpoints"
    return root / (root / "latest").read_text()


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _poison(path: Path) -> None:
    tensors = load_file(str(path))
    name = next(k for k, v in tensors.items() if v.is_floating_point())
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] = float("nan")
    save_file(tensors, str(path))


def _error(argv: list[str]) -> str:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code not in (0, None)
    message = str(caught.value.code)
    assert "\n" not in message.strip() and "Traceback" not in message
    return message


def _eval(run: Path) -> list[str]:
    return ["eval", str(run), "--episodes", "4", "--num-envs", "4", "--threads", "1"]


def _resume(run: Path) -> list[str]:
    return [
        "train",
        "--out",
        str(run),
        "--resume",
        "--episodes",
        "12",
        "--threads",
        "1",
        "--no-progress",
    ]


DAMAGE = {
    "run.json": (lambda r: _truncate(r / "run.json"), r"run\.json: not valid JSON"),
    "state.json": (lambda r: _truncate(_ckpt(r) / "state.json"), r"state\.json: not valid JSON"),
    "model": (lambda r: _truncate(_ckpt(r) / "model.safetensors"), r"model\.safetensors"),
    "nan-model": (lambda r: _poison(_ckpt(r) / "model.safetensors"), "NaN/inf"),
    "latest": (lambda r: (r / "checkpoints" / "latest").write_text("iter-9"), "latest"),
}


@pytest.mark.parametrize("command", [_eval, _resume], ids=["eval", "resume"])
@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_bad_run_files_give_one_line_errors(run_dir, damage, command):
    hurt, message = DAMAGE[damage]
    hurt(run_dir)
    before = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert re.search(message, _error(command(run_dir)))
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == before  # nothing saved


def test_bit_flip_in_a_checkpoint_is_caught(run_dir):
    model = _ckpt(run_dir) / "model.safetensors"
    data = bytearray(model.read_bytes())
    data[-3] ^= 0x10  # one bit of one weight: still a valid, finite-looking file
    model.write_bytes(bytes(data))
    for argv in (_eval(run_dir), _resume(run_dir)):
        assert "checksum mismatch" in _error(argv)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--env-kwargs", '{"max_new_tokenz": 4}'], "max_new_tokenz.*textgym info"),
        (["--env-kwargs", '{"max_new_tokens": -1}'], "max_new_tokens must be between"),
        (["--env-kwargs", '{"stop_strings": "x"}'], "stop_strings must be a list"),
        (["--env-kwargs", "[1]"], "must be a JSON object"),
        (["--config", '{"lr": "fast"}'], "lr must be float"),
        (["--config", '{"learning_rate": 0.1}'], "no setting 'learning_rate'"),
        (["--config", "{lr: 1}"], "--config is not valid JSON"),
        (["--env", "TextGen-Nope-v0"], "unknown environment id"),
    ],
)
def test_bad_train_arguments(tmp_path, argv, message):
    base = list(TRAIN)
    if "--env" in argv:
        del base[1:3]
    assert re.search(message, _error([*base, *argv, "--out", str(tmp_path / "r")]))


@pytest.mark.parametrize("flag", ["--episodes", "--num-envs", "--threads"])
def test_negative_counts_are_refused_by_the_parser(tmp_path, flag, capsys):
    with pytest.raises(SystemExit) as caught:
        main(["eval", "--env", "TextGen-Copy-v0", "--model", "tiny", flag, "-1"])
    assert caught.value.code == 2 and "must be >= " in capsys.readouterr().err


def test_no_traceback_through_the_console_script(run_dir):
    _poison(_ckpt(run_dir) / "model.safetensors")
    result = subprocess.run(
        [sys.executable, "-m", "textgym.cli", *_eval(run_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "NaN/inf" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_nan_weights_are_refused_by_resume_even_without_hashes(run_dir):
    """A checkpoint written before hashes were recorded: the finiteness check still holds."""
    import json

    from agents.checkpoint import check_model_file
    from textgym.errors import CheckpointError

    state_file = _ckpt(run_dir) / "state.json"
    state = json.loads(state_file.read_text())
    state.pop("files", None), state.pop("checksum", None)
    state_file.write_text(json.dumps(state))
    _poison(_ckpt(run_dir) / "model.safetensors")
    assert "NaN/inf" in _error(_resume(run_dir))
    with pytest.raises(CheckpointError, match="holds NaN/inf"):
        from agents.cli import build_policy, make_envs

        check_model_file(
            _ckpt(run_dir) / "model.safetensors",
            build_policy("tiny", make_envs("TextGen-Copy-v0", 2)),
        )
