"""The ``textgym`` command line, end to end through subprocesses."""

from __future__ import annotations

import subprocess
import sys

import textgym


def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "textgym.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_list_shows_every_id_with_a_summary():
    result = run("list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == textgym.registered_ids()
    assert all(len(line.split()) > 2 for line in lines)  # every id has a description


def test_info_documents_spaces_rewards_and_arguments():
    result = run("info", "TextGen-Copy-v0")
    assert result.returncode == 0, result.stderr
    for section in ("Action Space", "Observation Space", "Rewards", "Episode End", "arguments"):
        assert section in result.stdout
    unknown = run("info", "TextGen-Nope-v0")
    assert unknown.returncode != 0 and "textgym list" in unknown.stderr


def test_play_with_scripted_input():
    script = "\n".join(
        [
            "",  # empty input: error, retry
            ":ids 5 999",  # out of range: error, retry
            ":ids x",  # not a number
            ":bogus",  # unknown command
            "ab",  # text -> two tokens
            ":show",
            ":ids 14 15 16 17 18 19 20",  # more than the budget: the rest is dropped
        ]
    )
    result = run("play", "TextGen-Copy-v0", "--seed", "0", stdin=script + "\n")
    out = result.stdout
    assert result.returncode == 0, result.stderr
    assert "prompt:" in out
    assert "error: empty input" in out
    assert "error: token id 999 is outside the vocabulary 0..98" in out
    assert "error: 'x' is not an integer token id" in out
    assert "error: unknown command ':bogus'" in out
    assert "token     14 'a'" in out
    assert "truncated: token budget reached" in out and "not used" in out
    assert "reward:" in out


def test_play_eos_ends_the_episode_and_quit_stops():
    result = run("play", "TextGen-Copy-v0", "--episodes", "2", stdin="a\n:eos\n:quit\n")
    assert result.returncode == 0, result.stderr
    assert "episode terminated" in result.stdout and "completion: 'a'" in result.stdout
    assert "episode 2/2" in result.stdout and "bye" in result.stdout
