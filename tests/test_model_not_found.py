"""A model name that is nowhere (offline, not cached, no folder) is one line saying what to pass,
not a traceback through transformers."""

from __future__ import annotations

import os
import subprocess
import sys

OFFLINE = {**os.environ, "HF_HUB_OFFLINE": "1"}  # as on a machine without the hub


def test_train_with_a_missing_model_says_what_to_do_in_one_line(tmp_path):
    args = ["train", "--env", "TextGen-v0", "--model", "no/such-model", "--out", str(tmp_path)]
    done = subprocess.run(
        [sys.executable, "-m", "textgym.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=OFFLINE,
    )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith("textgym train: error: model or tokenizer 'no/such-model'")
    assert "'smollm2-135m'" in lines[0] and "hf download no/such-model" in lines[0]


def test_load_lm_raises_a_textgym_error_naming_the_model():
    code = (
        "from textgym.errors import ModelNotFoundError\n"
        "from textgym.models import load_lm\n"
        "try:\n"
        "    load_lm('no/such-model')\n"
        "except ModelNotFoundError as e:\n"
        "    assert isinstance(e, OSError)\n"
        "    print('ModelNotFoundError:', e)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=OFFLINE
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ModelNotFoundError: model or tokenizer 'no/such-model'")
