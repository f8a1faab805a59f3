"""Prompt sources, splits and scorer checks."""

from __future__ import annotations

import numpy as np
import pytest

from textgym.errors import EmptyPromptSetError, ScorerError
from textgym.rewards import VaderSentiment, run_scorer
from textgym.task_suite import make_task
from textgym.tasks import Example, PromptSet


def test_builtin_reviews_are_varied_and_split():
    reviews = PromptSet.builtin("reviews")
    train, test = reviews["train"], reviews["test"]
    assert len(train) >= 300 and len(test) >= 60
    assert len({e.prompt for e in train + test}) == len(train) + len(test)
    assert not {e.prompt for e in train} & {e.prompt for e in test}
    assert len({e.meta["domain"] for e in train}) >= 12


def test_unknown_builtin_lists_the_available_ones():
    with pytest.raises(ValueError, match="available: .*'reviews'"):
        PromptSet.builtin("nope")


def test_from_list_split_rules():
    same = PromptSet.from_list(["a", "b"])
    assert same["train"] == same["test"] == [Example("a"), Example("b")]
    explicit = PromptSet.from_list(["a"], test=[{"prompt": "q", "reference": ["x", "y"]}])
    assert explicit["test"] == [Example("q", ("x", "y"))]
    fields = PromptSet.from_list([{"prompt": "a", "split": "test"}, {"prompt": "b"}])
    assert [e.prompt for e in fields["test"]] == ["a"]
    held_out = PromptSet.from_list([str(i) for i in range(10)], test_fraction=0.3, seed=1)
    assert len(held_out["test"]) == 3 and len(held_out["train"]) == 7
    again = PromptSet.from_list([str(i) for i in range(10)], test_fraction=0.3, seed=1)
    assert held_out["test"] == again["test"]


def test_bad_prompt_inputs():
    with pytest.raises(EmptyPromptSetError):
        PromptSet.from_list([])
    with pytest.raises(KeyError, match="prompt_field"):
        PromptSet.from_list([{"text": "a"}])
    with pytest.raises(ValueError, match="split 'dev'"):
        PromptSet.from_list([{"prompt": "a", "split": "dev"}])
    with pytest.raises(ValueError, match="unknown split"):
        PromptSet.from_list(["a"])["validation"]
    with pytest.raises(TypeError, match="cannot use int"):
        PromptSet.coerce(3)


def test_from_jsonl_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        PromptSet.from_jsonl(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a"}\n{oops\n')
    with pytest.raises(ValueError, match="bad.jsonl:2: not valid JSON"):
        PromptSet.from_jsonl(bad)


def test_from_dataset_single_and_dict():
    datasets = pytest.importorskip("datasets")
    single = datasets.Dataset.from_dict({"q": [f"q{i}" for i in range(10)], "a": ["x"] * 10})
    prompts = PromptSet.from_dataset(single, "q", "a", test_fraction=0.2)
    assert len(prompts["test"]) == 2 and prompts["test"][0].reference == "x"
    with pytest.raises(KeyError, match="train_split"):
        PromptSet.from_dataset(datasets.DatasetDict(validation=single), "q")


def test_vader_scores_sentiment():
    scores = VaderSentiment()(
        ["", "", ""], ["I love it, wonderful!", "terrible and awful", ""], [None] * 3
    )
    assert scores.dtype == np.float32
    assert scores[0] > 0.5 and scores[1] < -0.5 and scores[2] == 0.0


def test_run_scorer_checks_output():
    ok = run_scorer(lambda p, c, r: [1, 2], "t", ["a", "b"], ["x", "y"], [None, None])
    assert ok.dtype == np.float32 and ok.tolist() == [1.0, 2.0]
    with pytest.raises(ScorerError, match="inf for prompt 'b' with completion 'y'"):
        run_scorer(lambda p, c, r: [1, np.inf], "t", ["a", "b"], ["x", "y"], [None, None])
    with pytest.raises(ScorerError, match="not an array of numbers"):
        run_scorer(lambda p, c, r: ["high", "low"], "t", ["a", "b"], ["x", "y"], [None, None])


def test_make_task():
    assert make_task("reviews").name == "sentiment"  # TextGen-v0 is the sentiment task
    with pytest.raises(ValueError, match="built-in tasks"):
        make_task("nope")
