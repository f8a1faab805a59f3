"""Making an env is cheap: tasks are generated on demand, the catalogue (list, describe, info)
builds nothing, id task arguments merge with the caller's, and the environments' fast
tokenizer gives the Hugging Face tokenizer's ids. No test here measures a duration."""

from __future__ import annotations

import io
import pickle
import random
import subprocess
import sys

import gymnasium as gym
import pytest

import textgym
from textgym import cli
from textgym.envs.core import TextGenCore
from textgym.errors import InvalidArgumentError
from textgym.procedural import PROCEDURAL_TASKS
from textgym.procedural.base import MAX_SPLIT, in_test_split
from textgym.registry import FAMILIES, family
from textgym.tasks import LazyExamples

OWN_TASKS = sorted(set(PROCEDURAL_TASKS) - {"reasoning_gym"})


@pytest.fixture
def no_envs(monkeypatch):
    """Building any environment (they all build a TextGenCore) fails the test."""

    def refuse(self, *args, **kwargs):
        raise AssertionError(f"{type(self).__name__} was built")

    monkeypatch.setattr(TextGenCore, "__init__", refuse)


def test_the_catalogue_builds_no_environment(no_envs):
    ids = textgym.registered_ids()
    assert all(textgym.summary(i) for i in ids)
    for env_id in ids:
        if not env_id.startswith("RG-"):  # RG pages generate one example, no env either
            assert textgym.describe(env_id).startswith(f"# {env_id}")
    out = io.StringIO()
    cli.cmd_list(cli.build_parser().parse_args(["list"]), out)
    assert [line.split()[0] for line in out.getvalue().splitlines()] == ids
    out = io.StringIO()
    cli.cmd_info(cli.build_parser().parse_args(["info", "TextGen-Copy-v0"]), out)
    assert "## Action Space" in out.getvalue()
    with pytest.raises(SystemExit, match="textgym list"):
        cli.cmd_info(cli.build_parser().parse_args(["info", "TextGen-Nope-v0"]), out)


def test_ids_are_grouped_by_family_own_ids_first():
    ids = textgym.registered_ids()
    ranks = [FAMILIES.index(family(i)) for i in ids]
    assert ranks == sorted(ranks) and family(ids[0]) == "tasks"
    for name in FAMILIES:
        members = textgym.registered_ids(name)
        assert members == [i for i in ids if family(i) == name]
    assert textgym.registered_ids("tools") == [
        "TextTools-Arithmetic-v0",
        "TextTools-DataQuestion-v0",
    ]
    assert all(i.startswith("RG-") for i in textgym.registered_ids("reasoning-gym"))
    with pytest.raises(ValueError, match="families"):
        textgym.registered_ids("nope")
    out = io.StringIO()
    cli.cmd_list(cli.build_parser().parse_args(["list", "--family", "dialogue"]), out)
    assert [line.split()[0] for line in out.getvalue().splitlines()] == textgym.registered_ids(
        "dialogue"
    )


@pytest.mark.parametrize("name", OWN_TASKS)
def test_procedural_tasks_generate_on_demand(name):
    task = PROCEDURAL_TASKS[name](difficulty="hard", n_train=MAX_SPLIT, n_test=MAX_SPLIT)
    for split in ("train", "test"):
        examples = task.prompts[split]
        assert len(examples) <= MAX_SPLIT
        if isinstance(examples, LazyExamples):
            assert len(examples._made) == 0  # nothing generated yet
            last = examples[len(examples) - 1]
            assert in_test_split(name, last.prompt) == (split == "test")
            assert PROCEDURAL_TASKS[name](difficulty="hard").prompts[split][7] == examples[7]
    with pytest.raises(InvalidArgumentError, match="n_train"):
        PROCEDURAL_TASKS[name](n_train=MAX_SPLIT + 1)


def test_spell_backward_of_a_billion_returns_its_word_pool():
    task = PROCEDURAL_TASKS["spell_backward"](n_train=10**9)
    train, test = task.prompts["train"], task.prompts["test"]
    assert 0 < len(train) < 1000 and len({e.prompt for e in train}) == len(train)
    assert not {e.prompt for e in train} & {e.prompt for e in test}


def test_a_lazy_split_reads_like_a_list():
    made = []
    examples = LazyExamples(5, lambda k: made.append(k) or textgym.Example(f"p{k}"))
    assert len(examples) == 5 and examples[-1].prompt == "p4" and made == [4]
    assert [e.prompt for e in examples[1:3]] == ["p1", "p2"]
    assert examples == [textgym.Example(f"p{k}") for k in range(5)]
    assert len(examples + [textgym.Example("x")]) == 6
    with pytest.raises(IndexError):
        examples[5]


def test_id_task_arguments_merge_with_the_callers():
    env = gym.make("TextGen-Countdown-Hard-v0", task_kwargs={"n_train": 16, "n_test": 4})
    assert env.unwrapped.core.task_spec[1] == {"difficulty": "hard", "n_train": 16, "n_test": 4}
    assert len(env.unwrapped.core.prompts["train"]) == 16
    env.reset(seed=0)
    envs = gym.make_vec("TextGen-SpellBackward-Medium-v0", num_envs=2, task_kwargs={"seed": 3})
    assert envs.core.task_spec[1] == {"difficulty": "medium", "seed": 3}
    pickle.loads(pickle.dumps(gym.spec("TextGen-Countdown-Hard-v0")))


def test_reasoning_gym_ids_merge_and_leave_out_code_executing_datasets():
    pytest.importorskip("reasoning_gym")
    from textgym.procedural.reasoning_gym import EXECUTES_CODE, reasoning_gym

    assert "RG-codeio-v0" not in textgym.registered_ids()
    with pytest.raises(InvalidArgumentError, match="not built"):
        reasoning_gym("codeio")
    assert set(EXECUTES_CODE) == {"codeio"}
    env = gym.make("RG-letter_counting-v0", task_kwargs={"n_train": 16, "n_test": 4})
    assert env.unwrapped.core.task_spec[1]["dataset"] == "letter_counting"
    _, info = env.reset(seed=0)
    assert info["prompt"].endswith('Write your final answer after "Answer:".')


def test_making_a_reasoning_gym_id_imports_nothing_of_it():
    pytest.importorskip("reasoning_gym")
    code = (
        "import sys, gymnasium as gym, textgym; "
        "env = gym.make('RG-futoshiki-v0', tokenizer='char'); "
        "assert 'reasoning_gym' not in sys.modules; "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.smollm2
def test_fast_tokenizer_gives_the_hugging_face_ids_and_texts():
    from textgym.fast_tokenizer import FastTokenizer, load_fast_tokenizer
    from textgym.models import load_tokenizer

    fast, hf = load_fast_tokenizer("smollm2-135m"), load_tokenizer("smollm2-135m")
    # The same tokenizer files (not always the same object: caches may be cleared between tests)
    assert isinstance(fast, FastTokenizer) and fast.hf.get_vocab() == hf.get_vocab()
    assert len(fast) == len(hf) and fast.all_special_ids == hf.all_special_ids
    for kind in ("bos", "eos", "unk", "pad"):
        assert getattr(fast, f"{kind}_token") == getattr(hf, f"{kind}_token")
        assert getattr(fast, f"{kind}_token_id") == getattr(hf, f"{kind}_token_id")
    rng = random.Random(0)
    texts = ["Hello world!", " two  spaces\n\ttab", "<|im_end|> x <|im_start|>", "", "é 🙂"]
    texts += ["".join(chr(rng.randrange(32, 0x2FFF)) for _ in range(40)) for _ in range(100)]
    for special in (True, False):
        assert (
            fast(texts, add_special_tokens=special)["input_ids"]
            == (hf(texts, add_special_tokens=special)["input_ids"])
        )
        one = fast(texts[2], add_special_tokens=False, split_special_tokens=special)
        assert (
            one["input_ids"]
            == hf(texts[2], add_special_tokens=False, split_special_tokens=special)["input_ids"]
        )
    seqs = [[i] for i in range(len(hf))] + [
        [rng.randrange(len(hf)) for _ in range(12)] for _ in range(200)
    ]
    for skip in (True, False):
        assert fast.batch_decode(seqs, skip_special_tokens=skip) == hf.batch_decode(
            seqs, skip_special_tokens=skip
        )
    env = gym.make("TextGen-v0").unwrapped
    assert isinstance(env.core.codec, FastTokenizer)  # the env encodes with the fast one
    assert env.tokenizer.get_vocab() == hf.get_vocab()
    assert pickle.loads(pickle.dumps(fast)).encode("abc") == fast.encode("abc")


def test_every_spec_saves_as_json():
    """Gymnasium's spec serialisation (what Minari and others save) works for every id, those
    whose task arguments merge included: their entry points are named by string."""
    import gymnasium as gym

    for env_id in textgym.registered_ids():
        spec = gym.spec(env_id)
        assert gym.envs.registration.EnvSpec.from_json(spec.to_json()).id == env_id
