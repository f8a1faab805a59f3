"""The task suite: registered ids, data, splits, task kwargs, user data, documentation."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

import textgym
from textgym.task_suite import TASKS, make_task

SUITE = {
    "TextGen-Sentiment-v0": "sentiment",
    "TextGen-Arithmetic-v0": "arithmetic",
    "TextGen-Copy-v0": "copy",
    "TextGen-Reverse-v0": "reverse",
    "TextGen-Sort-v0": "sort",
    "TextGen-Keywords-v0": "keywords",
    "TextGen-Translate-v0": "translate",
    "TextGen-Summarize-v0": "summarize",
    "TextGen-QA-v0": "qa",
}


def test_every_suite_id_is_registered():
    ids = textgym.registered_ids()
    for env_id, task in SUITE.items():
        assert env_id in ids and env_id in gym.registry
        assert gym.spec(env_id).kwargs["task"] == task
        assert gym.spec(env_id).vector_entry_point.endswith("TextGenVectorEnv")
    assert set(SUITE.values()) <= set(TASKS)


@pytest.mark.parametrize("name", sorted(set(SUITE.values())))
def test_data_splits_are_disjoint_and_varied(name):
    task = make_task(name)
    train, test = task.prompts["train"], task.prompts["test"]
    assert len(test) >= 20 and len(train) >= 3 * len(test)
    train_prompts = {e.prompt for e in train}
    assert not train_prompts & {e.prompt for e in test}
    assert len(train_prompts) == len(train)  # no duplicates
    if name == "sentiment":
        return
    assert all(e.reference for e in train + test)
    # the reference scores top marks, the empty completion does not
    refs = [e.reference for e in test[:10]]
    best = [r if isinstance(r, str) else " ".join(r) for r in refs]
    top = task.scorer([e.prompt for e in test[:10]], best, refs)
    empty = task.scorer([e.prompt for e in test[:10]], [""] * 10, refs)
    assert (top > empty).all(), (name, top, empty)


def test_handwritten_data_sizes():
    sizes = {
        n: (len(make_task(n).prompts["train"]), len(make_task(n).prompts["test"]))
        for n in ("translate", "summarize", "qa", "keywords")
    }
    assert sum(sizes["translate"]) >= 200
    assert sum(sizes["summarize"]) >= 100
    assert sum(sizes["qa"]) >= 150
    assert sum(sizes["keywords"]) >= 200
    qa = make_task("qa")
    for e in qa.prompts["train"] + qa.prompts["test"]:  # SQuAD-style: answers are spans
        assert e.reference in e.prompt.split("\nQuestion:")[0]


def test_qa_test_passages_are_unseen():
    qa = make_task("qa")
    context = lambda e: e.prompt.split("\nQuestion:")[0]  # noqa: E731
    assert not {context(e) for e in qa.prompts["train"]} & {context(e) for e in qa.prompts["test"]}


def test_arithmetic_difficulty_kwargs_through_gym_make():
    env = gym.make(
        "TextGen-Arithmetic-v0",
        task_kwargs={"digits": 3, "operators": "*", "steps": 2, "n_train": 50, "n_test": 10},
    )
    _, info = env.reset(seed=0)
    question = info["prompt"].removeprefix("Q: What is ").removesuffix("?\nA:")
    assert question.count("*") == 2
    example = env.unwrapped.core.prompts["train"][0]
    a, _, b, _, c = example.meta["question"].split()
    assert example.reference == str(int(a) * int(b) * int(c))
    tiny = make_task("arithmetic", digits=1, operators="+")  # only 100 questions exist
    assert len(tiny.prompts["train"]) + len(tiny.prompts["test"]) == 100
    with pytest.raises(ValueError, match="operators"):
        make_task("arithmetic", operators="/")
    with pytest.raises(TypeError, match="arguments are"):
        make_task("arithmetic", nope=1)
    partial = make_task("arithmetic", partial_credit=True)
    assert 0 < partial.scorer(["q"], ["80"], ["82"])[0] < 1


def test_arithmetic_episode_scores_the_exact_number():
    env = gym.make("TextGen-Arithmetic-v0")
    _, info = env.reset(seed=3)
    tok = env.unwrapped.tokenizer
    answer = env.unwrapped.current_completions()[0][0].reference
    for t in tok(f" {answer}\n", add_special_tokens=False)["input_ids"]:
        _, reward, terminated, truncated, info = env.step(t)
        if terminated or truncated:
            break
    assert terminated and reward == 1.0 and info["completion"].strip() == answer


@pytest.mark.parametrize(
    "kind,fn",
    [("copy", lambda s: s), ("reverse", lambda s: s[::-1]), ("sort", lambda s: "".join(sorted(s)))],
)
def test_algorithmic_tasks_reward_the_target(kind, fn):
    env = gym.make(f"TextGen-{kind.capitalize()}-v0")
    _, info = env.reset(seed=1)
    source = info["prompt"][:-1]
    tok = env.unwrapped.tokenizer
    assert len(tok) == 99 and env.action_space.n == 99
    for t in tok(fn(source))["input_ids"] + [tok.eos_token_id]:
        _, reward, terminated, truncated, info = env.step(t)
    assert terminated and reward == 1.0
    _, info = env.reset(seed=2)
    for t in tok("a")["input_ids"] + [tok.eos_token_id]:
        _, reward, terminated, _, info = env.step(t)
    assert terminated and 0.0 <= reward < 1.0


def test_algorithmic_kwargs_and_disjoint_splits():
    task = make_task("reverse", alphabet="01", min_len=2, max_len=4, n_train=10, n_test=5, seed=3)
    train, test = task.prompts["train"], task.prompts["test"]
    assert set("".join(e.prompt for e in train + test)) <= set("01=")
    assert not {e.prompt for e in train} & {e.prompt for e in test}
    assert (
        make_task("reverse", seed=3).prompts["test"] != make_task("reverse", seed=4).prompts["test"]
    )


def test_sentiment_scorer_is_selectable():
    from textgym.rewards import LMJudge, VaderSentiment

    assert isinstance(make_task("sentiment").scorer, VaderSentiment)
    assert isinstance(make_task("sentiment", scorer="lm_judge").scorer, LMJudge)  # loads lazily
    with pytest.raises(ValueError, match="vader"):
        make_task("sentiment", scorer="nope")


def test_user_data_list_jsonl_and_datasets(tmp_path):
    rows = [
        {"source": "Hello.", "target": "Bonjour.", "split": "train"},
        {"source": "Thanks.", "target": ["Merci.", "Merci bien."], "split": "test"},
    ]
    task = make_task("translate", data=rows)
    assert task.prompts["test"][0].reference == ("Merci.", "Merci bien.")
    path = tmp_path / "qa.jsonl"
    path.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {"context": "Bob is 7.", "question": "How old is Bob?", "answer": "7"},
                {"context": "Ann is 9.", "question": "How old is Ann?", "answer": "9"},
            ]
        )
    )
    qa = make_task("qa", data=str(path), metric="em")
    assert len(qa.prompts["train"]) == 2 and qa.prompts["test"] == qa.prompts["train"]
    datasets = pytest.importorskip("datasets")
    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list([{"concepts": ["sun", "sea"]}]),
            "test": datasets.Dataset.from_list([{"concepts": ["cat", "hat"]}]),
        }
    )
    kw = make_task("keywords", data=dd, fluency="none")
    assert kw.prompts["test"][0].reference == ("cat", "hat")
    env = gym.make("TextGen-Keywords-v0", task_kwargs={"data": dd}, split="test")
    _, info = env.reset(seed=0)
    assert "cat, hat" in info["prompt"]
    with pytest.raises(KeyError, match="target"):
        make_task("translate", data=[{"source": "x"}])


def test_make_task_rejects_kwargs_with_a_task_object():
    task = make_task("copy")
    assert make_task(task) is task
    with pytest.raises(ValueError, match="named tasks"):
        make_task(task, seed=1)


@pytest.mark.parametrize("env_id", sorted(SUITE) + ["TextGen-v0"])
def test_describe_has_gymnasium_sections(env_id):
    doc = textgym.describe(env_id)
    assert doc.startswith(f"# {env_id}")
    for section in (
        "Description",
        "Action Space",
        "Observation Space",
        "Rewards",
        "Starting State",
        "Episode End",
        "Environment arguments",
    ):
        assert f"## {section}" in doc, section
    if env_id != "TextGen-v0":
        assert "## Task arguments" in doc
    with pytest.raises(ValueError, match="unknown id"):
        textgym.describe("TextGen-Nope-v0")


def test_vector_env_scores_test_split_in_one_batch():
    envs = gym.make_vec("TextGen-Reverse-v0", num_envs=8, split="test")
    obs, infos = envs.reset(seed=0)
    assert set(infos["split"]) == {"test"}
    tok = envs.unwrapped.tokenizer
    targets = [p[:-1][::-1] for p in infos["prompt"]]
    total = np.zeros(8)
    for t in range(7):
        actions = np.array(
            [tok(s)["input_ids"][t] if t < len(s) else tok.eos_token_id for s in targets]
        )
        obs, rewards, term, trunc, infos = envs.step(actions)
        total += rewards
        if (term | trunc).all():
            break
    np.testing.assert_allclose(total, 1.0)
