"""Supervised warm start: behaviour cloning on a task's references before RL.

"Imitation learning first, RL second" (as in InstructGPT's SFT step): teacher-forced
cross-entropy of the reference completions, with the prompts encoded exactly as the environment
encodes them (the same left-padded rows in ``[0, P)``) and the completion ``reference + EOS`` from
``P`` on, so the warmed-up policy starts RL on the very inputs it was trained on. Only completion
tokens carry loss; on a tool-use env the completion is a worked solution (calls, results, answer
line) and only the agent's tokens carry loss, not the results the env writes. Then any learner
continues from the same :class:`~agents.policy.LMPolicy`::

    policy = LMPolicy(model, tokenizer)
    warm_start(policy, "TextGen-Copy-v0", WarmStartConfig(epochs=3))
    agent = PPO(policy, gym.make_vec("TextGen-Copy-v0", num_envs=16), PPOConfig())
    agent.learn(total_episodes=2_000)

Build the learner *after* the warm start: its KL reference is then the warmed-up model (the
SFT model, as in RLHF). :meth:`SupervisedWarmStart.train` also refreshes a reference copy that
already exists (``refresh_reference=True``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from agents.advantages import masked_mean
from agents.policy import LMPolicy
from agents.update import select


@dataclass
class WarmStartConfig:
    """Settings of the supervised warm start.

    Attributes:
        epochs: passes over the references.
        batch_size: sequences per gradient step.
        lr, weight_decay: AdamW settings.
        max_grad_norm: clip the global gradient norm (None: no clipping).
        split: the split whose examples (prompt, reference) are used.
        max_examples: use at most this many examples (a seeded random subset; None: all).
        seed: seeds the subset and the minibatch order.
        refresh_reference: after training, re-copy the policy's frozen KL reference if it has
            one (non-LoRA), so that RL's KL penalty is measured against the warmed-up model.
    """

    epochs: int = 3
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.0
    max_grad_norm: float | None = 1.0
    split: str = "train"
    max_examples: int | None = None
    seed: int = 0
    refresh_reference: bool = True


def _text_env(source: Any) -> Any:
    """The textgym environment of an env id, a (vector) env or a wrapped one."""
    if isinstance(source, str):
        source = gym.make(source)
    env = getattr(source, "unwrapped", source)
    if not hasattr(env, "encode_prompts") or not hasattr(env, "encode_completions"):
        raise TypeError(f"need a textgym env or env id, got {type(source).__name__}")
    return env


def reference_batch(source: Any, split: str = "train") -> tuple[dict[str, torch.Tensor], int]:
    """The task's (prompt, reference) pairs as teacher-forcing sequences, in the env's layout.

    Returns ``({"input_ids", "attention_mask"}: (N, P + T), "mask": (N, T) bool}, P)``: the
    prompt rows exactly as the env puts them in ``[0, P)`` (``env.encode_prompts``), then the
    reference's tokens plus EOS, cut to ``T = max_new_tokens`` (``env.encode_completions``). An
    example with several references uses the first. A tool-use env (``TextTools-*``) gives
    worked solutions instead (``env.encode_demonstrations``: the example's tool calls, each
    result as the env appends it, then ``Answer: <reference>``); ``mask`` is then 1 on the
    agent's tokens only, so the results are context and carry no loss.
    """
    env = _text_env(source)
    examples = env.prompts[split]
    refs = [e.reference for e in examples]
    if any(r is None for r in refs):
        raise ValueError(
            f"prompt set {env.prompts.name!r} has examples without a reference in split "
            f"{split!r}: a supervised warm start needs references"
        )
    prompt = env.encode_prompts(examples)
    if hasattr(env, "encode_demonstrations"):  # tool use: calls, results, answer line
        completion = env.encode_demonstrations(examples)
        mask = completion["agent_mask"]  # the results are the env's tokens: context, no loss
    else:
        completion = env.encode_completions([r if isinstance(r, str) else r[0] for r in refs])
        mask = completion["attention_mask"]
    batch = {
        key: torch.from_numpy(np.concatenate([prompt[key], completion[key]], axis=1))
        for key in ("input_ids", "attention_mask")
    }
    batch["mask"] = torch.from_numpy(mask.astype(bool))
    return batch, prompt["input_ids"].shape[1]


class SupervisedWarmStart:
    """Behaviour cloning of a task's references into ``policy`` (see the module docstring).

    Args:
        policy: the :class:`~agents.policy.LMPolicy` to train (its LM; the value head is
            untouched).
        source: an env id (``"TextGen-Copy-v0"``), or a textgym env / vector env: its task,
            tokenizer and budgets define the data.
        config: a :class:`WarmStartConfig`.
    """

    def __init__(self, policy: LMPolicy, source: Any, config: WarmStartConfig | None = None):
        self.policy, self.config = policy, config if config is not None else WarmStartConfig()
        c = self.config
        self.batch, self.prompt_len = reference_batch(source, c.split)
        n = self.batch["input_ids"].shape[0]
        self.rng = np.random.default_rng(c.seed)
        if c.max_examples is not None and c.max_examples < n:
            keep = torch.from_numpy(np.sort(self.rng.choice(n, c.max_examples, replace=False)))
            self.batch = {k: v[keep] for k, v in self.batch.items()}
        # The LM and its step/position embeddings, if any; not the value head.
        params = [
            p
            for name, p in policy.named_parameters()
            if p.requires_grad and not name.startswith("value_head.")
        ]
        self.params = params
        self.optimizer = torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay)
        self.history: list[dict[str, float]] = []

    @property
    def num_examples(self) -> int:
        return int(self.batch["input_ids"].shape[0])

    def loss(self, index: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Mean negative log-likelihood of the completion tokens of rows ``index``."""
        mb, prompt_len = select(self.batch, index, self.prompt_len)
        stats = self.policy.token_stats(
            mb["input_ids"],
            mb["attention_mask"],
            prompt_len,
            with_entropy=False,
            with_values=False,
            mask=mb["mask"],
        )
        mask = stats.mask
        return -masked_mean(stats.logprobs, mask), int(mask.sum())

    def train(self, epochs: int | None = None) -> list[dict[str, float]]:
        """``epochs`` (default ``config.epochs``) passes of shuffled minibatches; returns one row
        per epoch (``epoch``, ``loss``: mean token NLL, ``perplexity``)."""
        c = self.config
        n, size = self.num_examples, min(c.batch_size, self.num_examples)
        device = self.policy.device
        for _ in range(c.epochs if epochs is None else epochs):
            order = torch.from_numpy(self.rng.permutation(n)).to(device)
            total, tokens = 0.0, 0
            for start in range(0, n, size):
                loss, count = self.loss(order[start : start + size])
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if c.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(self.params, c.max_grad_norm)
                self.optimizer.step()
                total += loss.item() * count
                tokens += count
            nll = total / max(tokens, 1)
            row = {"epoch": len(self.history) + 1, "loss": nll, "perplexity": math.exp(nll)}
            self.history.append(row)
        if not self.policy.is_peft and (c.refresh_reference or self.policy.ref_model is None):
            # The reference (re-copied now, or copied when a learner is built) is the SFT model.
            self.policy.reference_origin = "a frozen copy of the policy after a warm start"
        if c.refresh_reference and self.policy.ref_model is not None:
            # Re-copied from the new weights: the LM and its position embeddings, if any.
            object.__setattr__(self.policy, "ref_model", None)
            object.__setattr__(self.policy, "ref_positions", None)
            self.policy.ensure_reference()
        return self.history


def warm_start(
    policy: LMPolicy, source: Any, config: WarmStartConfig | None = None
) -> SupervisedWarmStart:
    """Run a :class:`SupervisedWarmStart` for ``config.epochs``; returns it (``.history``)."""
    trainer = SupervisedWarmStart(policy, source, config)
    trainer.train()
    return trainer
