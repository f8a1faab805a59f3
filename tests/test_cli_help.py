"""Every argument of `textgym info|play` has a help line; `eval --help` prints as written."""

from __future__ import annotations

import argparse
import subprocess
import sys

from textgym.cli import build_parser


def test_eval_help_prints_a_plain_percent_sign():
    done = subprocess.run(
        [sys.executable, "-m", "textgym.cli", "eval", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "95% CI" in " ".join(done.stdout.split()) and "%%" not in done.stdout


def test_info_and_play_arguments_have_help_lines():
    (commands,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    for name in ("info", "play"):
        parser = commands.choices[name]
        arguments = [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]
        assert arguments and all(a.help for a in arguments), [
            a.dest for a in arguments if not a.help
        ]
        text = parser.format_help()
        assert all(a.help.split("(")[0].strip() in " ".join(text.split()) for a in arguments)
