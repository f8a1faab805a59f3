"""The agents on tool-use envs: the results the env appends are context, never trained on.

A tiny LM on a character-tokenizer TextTools variant (one token per character): the warm start
clones worked solutions (call, result, answer line) with the loss on the agent's tokens only;
the warmed-up model then writes calls, and GRPO's rollout and update score its tokens only.
"""

from __future__ import annotations

import re

import torch
from test_agents_helpers import one_thread  # noqa: F401

from agents import GRPO, PPO, LMPolicy, SupervisedWarmStart, WarmStartConfig, collect_rollout
from agents.warm_start import reference_batch
from textgym.char_tokenizer import DEFAULT_ALPHABET, CharTokenizer
from textgym.envs.tool_use import ToolUseVectorEnv

CHAR = CharTokenizer(DEFAULT_ALPHABET + "\n")  # the built-in alphabet has no newline
RESULT = re.compile(r"<result>[^<]*</result>\n")


def tool_envs(num_envs: int = 4) -> ToolUseVectorEnv:
    return ToolUseVectorEnv(
        num_envs=num_envs,
        tokenizer=CHAR,
        tools=["calc"],
        max_new_tokens=80,
        max_result_tokens=32,
        task_kwargs={"difficulty": "easy", "n_train": 8, "n_test": 4},
    )


def env_and_agent_text(ids: torch.Tensor, attention: torch.Tensor, mask: torch.Tensor):
    """(the agent's tokens, the other real tokens) of one completion row, decoded."""
    ids, real, mask = ids.tolist(), attention.bool().tolist(), mask.bool().tolist()
    agent = CHAR.decode([i for i, r, m in zip(ids, real, mask) if r and m])
    env = CHAR.decode([i for i, r, m in zip(ids, real, mask) if r and not m])
    return agent, env


def test_warm_start_on_a_tool_env_clones_calls_and_skips_the_results():
    envs = tool_envs()
    batch, P = reference_batch(envs, "train")
    for k, example in enumerate(envs.prompts["train"]):
        a, b = re.search(r"What is (\d+) \* (\d+)", example.prompt).groups()
        agent, env = env_and_agent_text(
            batch["input_ids"][k, P:], batch["attention_mask"][k, P:], batch["mask"][k]
        )
        # The demonstration: the agent's call and answer line; the env's result in between.
        assert agent == f"<calc>{a} * {b}</calc>Answer: {example.reference}\n"
        assert env == f"<result>{int(a) * int(b)}</result>\n"
    trainer = SupervisedWarmStart(LMPolicy.tiny(envs, precision="fp32"), envs)
    _, tokens = trainer.loss(torch.arange(trainer.num_examples))
    assert tokens == int(batch["mask"].sum()) < int(batch["attention_mask"][:, P:].sum())


def test_grpo_rollout_and_update_score_the_agents_tokens_only():
    envs = tool_envs()
    policy = LMPolicy.tiny(envs, precision="fp32")
    SupervisedWarmStart(policy, envs, WarmStartConfig(epochs=40, lr=3e-3, batch_size=8)).train()
    rollout = collect_rollout(policy, envs, seeds=[0, 0, 1, 1], deterministic=True)
    P = rollout.prompt_len
    results = 0
    for k in range(rollout.num_envs):
        agent, env = env_and_agent_text(
            rollout.input_ids[k, P:], rollout.attention_mask[k, P:], rollout.mask[k]
        )
        # The env's tokens are whole results, none of them in the agent's text.
        assert RESULT.sub("", env) == "" and "<result>" not in agent
        results += len(RESULT.findall(env))
        # The acting log-probs and the rewards sit on the agent's tokens.
        assert (rollout.acting_logprobs[k][~rollout.mask[k]] == 0).all()
        assert (rollout.rewards[k][~rollout.mask[k]] == 0).all()
    assert results > 0  # the warmed-up model calls the calculator

    scored = []
    token_stats = policy.token_stats

    def spy(input_ids, attention_mask, prompt_len, **kwargs):
        scored.append((input_ids, attention_mask, prompt_len, kwargs.get("mask")))
        return token_stats(input_ids, attention_mask, prompt_len, **kwargs)

    policy.token_stats = spy
    config = GRPO.Config.for_policy(
        policy, group_size=2, drop_flat_groups=False, seed=0, progress=False
    )
    # GRPO's update, then PPO's (values and GAE too) on the same rollout: both score exactly
    # the agent's tokens.
    for agent in (GRPO(policy, envs, config), PPO(policy, envs, PPO.Config.for_policy(policy))):
        scored.clear()
        agent.update(rollout)
        assert scored
        seen = 0  # results among the scored rows: the check below has something to check
        for input_ids, attention_mask, prompt_len, mask in scored:
            assert mask is not None  # else every real token after P would be scored
            width = mask.shape[1]
            for k in range(len(input_ids)):
                ids = input_ids[k, prompt_len : prompt_len + width]
                attention = attention_mask[k, prompt_len : prompt_len + width]
                agent_text, env_text = env_and_agent_text(ids, attention, mask[k])
                assert "<result>" not in agent_text and RESULT.sub("", env_text) == ""
                seen += len(RESULT.findall(env_text))
        assert seen > 0, type(agent).__name__
