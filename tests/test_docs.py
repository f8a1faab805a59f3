"""Every code block of README.md and docs/*.md runs as written, on a CPU.

Each file's ```python blocks run in order in one fresh subprocess (one namespace, as a reader
who pastes them one after the other), with a temporary folder as the working directory; its
```bash blocks run line by line after them, in the same folder. A block that trains gets a
short budget through the substitutions in ``SUBSTITUTIONS`` (each with its reason, nothing
else is changed); what cannot run on a CPU in a test (four processes, interactive input, a
benchmark of minutes) is in ``SKIPPED`` with the reason. A snippet that fails here is fixed in
the docs, not here.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ["README.md", *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```(python|bash)\n(.*?)^```", re.S | re.M)

# (file, regular expression found in the block or bash line) -> why it does not run here.
SKIPPED = {
    ("*", "make setup"): "sets up the venv the tests run in",
    ("*", "make test"): "runs this test suite",
    ("*", "make lint"): "lint, not a doc example (CI runs it)",
    ("*", r"\.venv/bin/pytest"): "runs this test suite",
    ("*", "make demo"): "trains for minutes; tests/test_verdict.py runs the demo briefly",
    ("*", "python -m agents.demo"): "trains for minutes; tests/test_verdict.py runs it briefly",
    ("*", "torchrun"): "needs 4 processes; tests/test_distributed.py runs 2",
    ("*", "accelerate launch"): "needs 4 processes; tests/test_distributed.py runs 2",
    ("*", "pip install"): "installs packages (make setup has)",
    ("*", "textgym play"): "interactive; tests/test_cli.py plays scripted input",
    ("*", "^textgym serve "): "a server runs until stopped; docs/serving.md's blocks start one "
    "in a thread, tests/test_server.py runs the command",
    ("*", "python -m benchmarks"): "a benchmark of minutes to hours; tests/test_benchmarks.py",
    ("*", "textgym bench --preset quick(?! --list)"): "a benchmark of hours; test_benchmarks.py",
    ("docs/cli.md", "-m agents.train --env TextGen-v0 --agent grpo --minutes 10"): "10 minutes of "
    "SmolLM2; `textgym train` (the same code) runs above",
    ("README.md", "^textgym (train|eval) "): "the same commands as docs/cli.md's, run there",
    ("docs/human-feedback.md", r"PreferenceCollector\("): "waits for a person to click",
    ("docs/agents.md", "LMActorCriticPolicy, env"): "minutes on a CPU (as it says); test_sb3.py "
    "runs LMActorCriticPolicy on a tiny LM",
    ("docs/agents.md", r"VLLMEngine\(policy\)"): "needs vLLM, which lives in a venv of its own "
    "(make vllm-venv); tests/test_engines_vllm.py runs VLLMEngine there",
    ("docs/serving.md", "GenericEnvClient"): "needs openenv-core, which lives in a venv of its "
    "own (about 60 packages); `make openenv-check` runs this client against a server",
    ("docs/serving.md", "openenv_client_checks.py"): "needs the openenv-core venv the line "
    "above builds (minutes, about 60 packages); `make openenv-check` runs it",
}

# file -> [(old, new, why)]: the budget cuts, applied to the file's text before it runs.
TRAINS = "trains for minutes as written"
TINY = "SmolLM2 trains for minutes on a CPU; a tiny LM runs the same code"
SUBSTITUTIONS = {
    "README.md": [
        ('LMPolicy.from_pretrained("smollm2-135m")', "LMPolicy.tiny(envs)", TINY),
        ("agent.learn(total_episodes=2_000)", "agent.learn(total_episodes=4)", TRAINS),
        ('make_vec("TextGen-v0", num_envs=16)', 'make_vec("TextGen-v0", num_envs=4)', TRAINS),
        ("n_episodes=200", "n_episodes=4", TRAINS),
        ('"TextGen-Copy-v0", n_envs=16', '"TextGen-Copy-v0", n_envs=4', TRAINS),
        ("model.learn(100_000)", "model.learn(256)", TRAINS),
        ("--total-timesteps 100000", "--total-timesteps 2000", TRAINS),
        ("max_steps=200", "max_steps=1", TRAINS),
    ],
    "docs/agents.md": [
        (
            'policy = LMPolicy.from_pretrained("smollm2-135m")\n',
            "policy = LMPolicy.tiny(envs)\n",
            TINY,
        ),
        ("agent.learn(total_episodes=2_000)", "agent.learn(total_episodes=4)", TRAINS),
        ('make_vec("TextGen-v0", num_envs=16)', 'make_vec("TextGen-v0", num_envs=4)', TRAINS),
        ("n_episodes=200", "n_episodes=4", TRAINS),
        ("agent.learn(total_episodes=8_000)", "agent.learn(total_episodes=64)", TRAINS),
        ("agent.learn(total_episodes=2_400)", "agent.learn(total_episodes=16)", TRAINS),
        ("epochs=3, lr=3e-3, max_examples=512", "epochs=1, lr=3e-3, max_examples=32", TRAINS),
        ("model.learn(100_000)", "model.learn(1_000)", TRAINS),
        ("n_eval_episodes=200", "n_eval_episodes=20", TRAINS),
        ("model.learn(2_000)", "model.learn(1_000)", TRAINS),
        ("--total-timesteps 100000", "--total-timesteps 2000", TRAINS),
    ],
    "docs/cli.md": [
        ("--model smollm2-135m", "--model tiny", TINY),
        (
            "--episodes 800",
            "--episodes 4 --num-envs 4 --env-kwargs '{\"max_new_tokens\": 8}' "
            "--config '{\"episodes_per_update\": 4}'",
            TRAINS,
        ),
        ("--resume --episodes 1600", "--resume --episodes 8", TRAINS),
        ("textgym eval runs/ppo ", "textgym eval runs/ppo --episodes 4 --num-envs 4 ", TRAINS),
        ("--model tiny  ", "--model tiny --episodes 4 --num-envs 4 ", TRAINS),
    ],
    "docs/trl.md": [("max_steps=200", "max_steps=1", TRAINS)],
    "docs/tools.md": [],
    "docs/export.md": [("--episodes 5", "--episodes 2", TRAINS)],
}

# file -> files a reader would have made before (a data file the example names).
FIXTURES = {
    "docs/tasks-and-rewards.md": {
        "my_pairs.jsonl": "".join(
            json.dumps({"source": f"hello {i}", "target": f"bonjour {i}"}) + "\n" for i in range(6)
        )
    },
    "docs/human-feedback.md": {  # what the skipped PreferenceCollector block writes
        "runs/prefs.jsonl": "".join(
            json.dumps({"prompt": "The movie was", "chosen": c, "rejected": r, "tie": False}) + "\n"
            for c, r in ((" great.", " bad."), (" fine.", " awful."), (" good.", " dull."))
        )
    },
}

RUNNER = """
import json, sys, time
blocks = json.load(open(sys.argv[1]))
namespace = {"__name__": "__main__"}
for name, source in blocks:
    start = time.perf_counter()
    exec(compile(source, name, "exec"), namespace)
    print(f"--- {name} ran in {time.perf_counter() - start:.1f} s", flush=True)
"""


def skip_reason(doc: str, text: str) -> str | None:
    for (where, needle), reason in SKIPPED.items():
        if where in ("*", doc) and re.search(needle, text):
            return reason
    return None


def blocks(doc: str) -> list[tuple[str, str, str]]:
    """(kind, "file:line", source) of each block, after the file's substitutions."""
    text = (ROOT / doc).read_text()
    for old, new, _ in SUBSTITUTIONS.get(doc, []):
        assert old in text, f"{doc}: substitution {old!r} matches nothing; update the table"
        text = text.replace(old, new)
    return [
        (m[1], f"{doc}:{text[: m.start()].count(chr(10)) + 2}", m[2]) for m in BLOCK.finditer(text)
    ]


def bash_commands(source: str) -> list[str]:
    """The commands of a bash block: continuation lines joined, comments dropped."""
    joined = source.replace("\\\n", " ")
    commands = []
    for line in joined.splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        if line and not line.startswith("#"):
            commands.append(line)
    return commands


def test_every_block_is_run_or_skipped_with_a_reason():
    """Every skip names something in the docs, and every python block compiles."""
    assert set(SUBSTITUTIONS) <= set(DOCS)
    texts = []
    for doc in DOCS:
        for kind, _, source in blocks(doc):
            texts += (
                [(doc, source)] if kind == "python" else [(doc, c) for c in bash_commands(source)]
            )
            if kind == "python" and not skip_reason(doc, source):
                compile(source, doc, "exec")  # a python block is python
    for where, needle in SKIPPED:
        assert any(where in ("*", d) and re.search(needle, t) for d, t in texts), needle


def test_the_readme_stays_a_short_front_door():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 250
    assert any(line.startswith("```python") for line in lines[:40])  # the first example


@pytest.mark.smollm2
@pytest.mark.parametrize("doc", DOCS)
def test_doc_blocks_run(doc, tmp_path):
    for name, content in FIXTURES.get(doc, {}).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(content)
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(ROOT),
        "TOKENIZERS_PARALLELISM": "false",
        "TQDM_DISABLE": "1",
    }
    python, bash = [], []
    for kind, name, source in blocks(doc):
        if kind == "python":
            if not skip_reason(doc, source):
                python.append((name, source))
        else:
            bash += [c for c in bash_commands(source) if not skip_reason(doc, c)]
    if python:
        (tmp_path / "_blocks.json").write_text(json.dumps(python))
        result = subprocess.run(
            [sys.executable, "-c", RUNNER, "_blocks.json"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        print(result.stdout)
        assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    for command in bash:
        argv = shlex.split(command)
        if argv[0] == "python":
            argv[0] = sys.executable
        result = subprocess.run(
            argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
        )
        assert result.returncode == 0, (
            f"{doc}: {command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
