"""Scorers on hand-made examples with known scores, and bad input."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from textgym.char_tokenizer import CharTokenizer
from textgym.models import tiny_lm
from textgym.rewards import (
    BLEU,
    TER,
    ChrF,
    ConceptCoverage,
    ExactMatch,
    Fluency,
    LengthPenalty,
    LMJudge,
    LMScore,
    NumericMatch,
    PositionAccuracy,
    RepetitionPenalty,
    Rouge,
    TokenF1,
    VaderSentiment,
    WeightedSum,
    normalize_answer,
    run_scorer,
    word_forms,
)


def one(scorer, completion, reference=None, prompt=""):
    return float(scorer([prompt], [completion], [reference])[0])


def test_exact_match_normalisation():
    assert normalize_answer("  The Eiffel   Tower! ") == "eiffel tower"
    em = ExactMatch()
    assert one(em, "  the CAT. ", "A cat") == 1.0
    assert one(em, "cat", "dog") == 0.0
    assert one(em, "dog", ("cat", "dog")) == 1.0  # multi-reference: the best counts
    assert one(ExactMatch("whitespace"), " Hello   World ", "hello world") == 1.0
    assert one(ExactMatch("whitespace"), "hello world!", "hello world") == 0.0
    assert one(ExactMatch("none"), "Hello", "hello") == 0.0
    assert one(em, "anything", None) == 0.0
    with pytest.raises(ValueError, match="normalize"):
        ExactMatch("nope")


def test_token_f1():
    f1 = TokenF1()
    assert one(f1, "the big cat", "a cat") == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert one(f1, "cat", "cat") == 1.0
    assert one(f1, "dog", "cat") == 0.0
    assert one(f1, "", "cat") == 0.0
    assert one(f1, "", "") == 1.0


def test_numeric_match():
    nm = NumericMatch()
    assert one(nm, " 82", "82") == 1.0
    assert one(nm, "82.0 apples", "82") == 1.0
    assert one(nm, "1,234", "1234") == 1.0
    assert one(nm, "-5", "-5") == 1.0
    assert one(nm, "37 + 45 = 82", "82") == 0.0  # the first number is 37
    assert one(NumericMatch(which="last"), "37 + 45 = 82", "82") == 1.0
    assert one(nm, "eighty-two", "82") == 0.0
    assert one(nm, "80", "82") == 0.0
    assert one(NumericMatch(partial_credit=True), "80", "82") == pytest.approx(0.5 * (1 - 2 / 82))
    assert one(NumericMatch(partial_credit=True), "5000", "82") == 0.0


def test_bleu_chrf_ter():
    s = "the cat sat on the mat"
    assert one(BLEU(), s, s) == pytest.approx(100.0)
    assert one(BLEU(scale=0.01), s, s) == pytest.approx(1.0)
    assert one(BLEU(), "dog", s) == 0.0
    assert one(BLEU(), "", s) == 0.0
    assert 0.0 < one(BLEU(), "the cat sat", s) < 100.0
    assert one(ChrF(), s, s) == pytest.approx(100.0)
    assert one(ChrF(), "", s) == 0.0
    assert one(ChrF(), "le chat", ("x y z", "le chat")) == pytest.approx(100.0)
    assert one(TER(), s, s) == 0.0
    assert one(TER(), "", "a b") == 100.0  # two insertions for two words
    assert one(BLEU(), s, None) == 0.0


def test_rouge():
    assert one(Rouge(), "a b c", "a b c") == pytest.approx(1.0)
    assert one(Rouge(), "x y z", "a b c") == 0.0  # disjoint
    assert one(Rouge(), "", "a b c") == 0.0
    assert one(Rouge("rouge1"), "a b c d", "a b c e") == pytest.approx(0.75)
    assert one(Rouge("rouge2"), "a b c d", "a b c e") == pytest.approx(2 / 3)
    assert one(Rouge(("rouge1", "rouge2")), "a b c d", "a b c e") == pytest.approx(
        (0.75 + 2 / 3) / 2
    )
    assert one(Rouge("rouge1"), "the cats ran", "the cat runs") > 0.6  # stemming


def test_position_accuracy():
    pa = PositionAccuracy()
    assert one(pa, "abc", "abc") == 1.0
    assert one(pa, "ab", "abc") == pytest.approx(2 / 3)
    assert one(pa, "abcd", "abc") == pytest.approx(3 / 4)
    assert one(pa, "cba", "abc") == pytest.approx(1 / 3)
    assert one(pa, "", "abc") == 0.0
    assert one(pa, "", "") == 1.0


def test_concept_coverage_is_inflection_tolerant():
    assert {"run", "runs", "ran", "running"} <= word_forms("run")
    assert {"leaf", "leaves"} <= word_forms("leaf")
    assert {"stop", "stopped", "stopping"} <= word_forms("stop")
    cc = ConceptCoverage()
    concepts = ("dog", "chase", "ball", "park")
    assert one(cc, "The dogs chased balls in the park.", concepts) == 1.0
    assert one(cc, "Children ran and caught the leaves.", ("child", "run", "catch", "leaf")) == 1.0
    assert one(cc, "The dog sleeps.", concepts) == 0.25
    assert one(cc, "We laughed at my friend's joke.", ("friend", "joke")) == 1.0
    assert one(cc, "", concepts) == 0.0
    assert one(cc, "dog", None) == 0.0


def test_fluency_length_repetition():
    assert one(Fluency(), "The dog chased the ball.") == pytest.approx(1.0)
    assert one(Fluency(), "") == 0.0
    assert one(Fluency(), "%%$@ 1234 ^^") < 0.4
    assert one(RepetitionPenalty(n=2), "the cat the cat the cat") == pytest.approx(-0.6)
    assert one(RepetitionPenalty(n=2), "a b c d") == 0.0
    assert one(RepetitionPenalty(n=3), "a b") == 0.0
    assert one(LengthPenalty(target=5), "a b c") == pytest.approx(-0.4)
    assert one(LengthPenalty(target=5), "a b c d e") == 0.0
    assert one(LengthPenalty(max_length=2), "a b c d") == -2.0
    assert one(LengthPenalty(min_length=3, unit="chars"), "ab") == -1.0
    assert one(
        LengthPenalty(target=3, unit="tokens", tokenizer=CharTokenizer()), "abcd"
    ) == pytest.approx(-1 / 3)


def test_weighted_sum_composes():
    scorer = WeightedSum({"em": (ExactMatch(), 0.5), "f1": TokenF1()})
    assert one(scorer, "a cat", "cat") == pytest.approx(1.5)
    assert set(scorer.last_terms) == {"em", "f1"}
    neg = WeightedSum([(TER(), -1.0), (ChrF(scale=0.01), 2.0)])
    assert one(neg, "a b", "a b") == pytest.approx(2.0)
    assert scorer.reward_range == (0.0, 1.5)
    with pytest.raises(ValueError):
        WeightedSum([])


ALL_CHEAP = [
    ExactMatch(),
    TokenF1(),
    NumericMatch(),
    PositionAccuracy(),
    ConceptCoverage(),
    Fluency(),
    BLEU(),
    ChrF(),
    TER(),
    Rouge(),
    VaderSentiment(),
    LengthPenalty(target=3),
    RepetitionPenalty(),
    WeightedSum([ExactMatch(), Rouge()]),
]


@pytest.mark.parametrize("scorer", ALL_CHEAP, ids=lambda s: type(s).__name__)
def test_bad_input_gives_defined_scores(scorer):
    completions = [None, "", b"caf\xc3\xa9 \xff\xfe", "\ufffd\ufffd", "ok 1", "  "]
    references = ["ref", None, "café", ("a", "b"), ["ok 1"], ""]
    scores = run_scorer(scorer, "t", ["p"] * 6, completions, references)
    assert scores.dtype == np.float32 and scores.shape == (6,)
    assert np.isfinite(scores).all()
    assert len(scorer(None, [], None)) == 0  # an empty batch
    # pickling keeps it usable (environments are pickled)
    again = pickle.loads(pickle.dumps(scorer))
    np.testing.assert_array_equal(again(["p"] * 6, completions, references), scores)


def test_mismatched_batch_is_a_clear_error():
    with pytest.raises(ValueError, match="as many prompts and references"):
        ExactMatch()(["a"], ["a", "b"], ["a", "b"])
    with pytest.raises(TypeError, match="sequence of strings"):
        ExactMatch()(["a"], "a", ["a"])


@pytest.fixture(scope="module")
def tiny():
    return tiny_lm(vocab_size=CharTokenizer().vocab_size, seed=0), CharTokenizer()


def test_lm_score_matches_a_manual_forward(tiny):
    import torch

    model, tok = tiny
    scorer = LMScore(model, tok, batch_size=2)
    prompts, completions = ["ab", "hello", "x"], ["cd", "", "yz!"]
    scores = scorer(prompts, completions, None)
    assert scores.shape == (3,) and np.isfinite(scores).all()
    assert scores[1] == pytest.approx(-np.log(model.config.vocab_size))  # empty: uniform guess
    ids = tok("ab", add_special_tokens=True)["input_ids"] + tok("cd")["input_ids"]
    with torch.no_grad():
        lp = torch.log_softmax(model(torch.tensor([ids])).logits[0], -1)
    manual = np.mean([lp[i - 1, ids[i]].item() for i in (len(ids) - 2, len(ids) - 1)])
    assert scores[0] == pytest.approx(manual, abs=1e-5)
    # batching and order do not change the scores; deterministic
    np.testing.assert_allclose(
        LMScore(model, tok, batch_size=1)(prompts, completions), scores, atol=1e-5
    )
    ppl = LMScore(model, tok, reduction="perplexity")(prompts, completions)
    assert ppl[0] == pytest.approx(np.exp(-scores[0]), rel=1e-4)
    total = LMScore(model, tok, reduction="sum_logprob")(prompts, completions)
    assert total[2] == pytest.approx(scores[2] * 3, rel=1e-4)
    alone = LMScore(model, tok, condition_on_prompt=False)(prompts, completions)
    assert np.isfinite(alone).all()


def test_lm_judge_is_log_odds(tiny):
    import torch

    model, tok = tiny
    judge = LMJudge(model, tok, template="{prompt}{completion}?", choices=("y", "n"))
    scores = judge(["ab", "a longer prompt"], ["c", None], None)
    ids = tok("abc?", add_special_tokens=True)["input_ids"]
    with torch.no_grad():
        lp = torch.log_softmax(model(torch.tensor([ids])).logits[0, -1], -1)
    y, n = tok("y")["input_ids"][0], tok("n")["input_ids"][0]
    assert scores[0] == pytest.approx((lp[y] - lp[n]).item(), abs=1e-4)  # left padding is exact
    squashed = LMJudge(
        model, tok, template="{prompt}{completion}?", choices=("y", "n"), squash=True
    )
    assert squashed(["ab"], ["c"])[0] == pytest.approx(1 / (1 + np.exp(-scores[0])), abs=1e-5)
    with pytest.raises(ValueError, match="same token"):
        LMJudge(model, tok, choices=("yes", "yy"))(["a"], ["b"])


@pytest.mark.smollm2
def test_lm_judge_on_smollm2_prefers_positive_text():
    judge = LMJudge("smollm2-135m", device="cpu")
    scores = judge(
        ["The hotel"] * 2, [" was wonderful, I loved every minute.", " was dirty and awful."]
    )
    assert scores[0] > scores[1]
