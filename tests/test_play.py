"""`textgym play`: newlines, the env's own replies echoed, a secret kept hidden, the outcome."""

from __future__ import annotations

import subprocess
import sys


def play(*args: str, stdin: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "textgym.cli", "play", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_dialogue_echoes_the_partner_hides_the_secret_and_ends_with_the_outcome():
    out = play("TextDialogue-GuessNumber-v0", "--seed", "0", stdin=":show\n4?\n:show\n7?\n")
    played, end = out.split("=== episode 1/1 ===")[1].split("episode terminated")
    assert "secret" not in played  # :show printed the text, not the render with the secret
    assert "Guess my number (1-8):\n" in played and "Guess my number (1-8):4?>\n" in played
    assert "env wrote: '>'" in played  # the partner's reply to 4?, echoed after the turn
    assert "env wrote: '='" in end or "env wrote: '='" in played
    assert "outcome: solved in 2 turn(s); the secret was 7" in end


def test_nl_and_an_escaped_newline_append_a_newline():
    episode = "TextGen-LetterCounting-Easy-v0"  # its answer ends at a newline
    escaped = play(episode, "--seed", "0", stdin="3\\n\n")
    assert "token    198 '\\n'" in escaped and "outcome: partial" in escaped
    command = play(episode, "--seed", "0", stdin="2\n:nl\n")
    assert "token    198 '\\n'" in command and "completion: '2'" in command
    assert "outcome: correct" in command  # "hill" has two l's
    no_newline = play("TextGen-Copy-v0", "--seed", "0", stdin=":nl\n:quit\n")
    assert "error: this env's tokenizer has no newline token" in no_newline
