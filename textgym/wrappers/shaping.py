"""Dense rewards for the TextGen environments, single and vector.

* :class:`PotentialShaping` / :class:`VectorPotentialShaping`: add
  ``gamma * phi(s') - phi(s)`` each step, where ``phi`` is a potential of the completion so far
  (by default the task's own scorer). With ``gamma=1`` an episode's rewards sum to the sparse
  score, and for any ``gamma`` the optimal policy is unchanged (Ng et al., 1999).
* :class:`LMTokenReward` / :class:`VectorLMTokenReward`: add ``beta * log p_ref(token |
  prefix)`` each step from a reference causal LM, one batched forward pass per vector step,
  so any RL algorithm gets a fluency signal.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorWrapper

from textgym.rewards import run_scorer
from textgym.wrappers.base import Forwards, text_env

# ---------------------------------------------------------------------------------------------
# Potential-based shaping
# ---------------------------------------------------------------------------------------------


class _Potential:
    """``phi(completion) = potential(prompt, completion, ref) - potential(prompt, "", ref)``,
    so ``phi`` is 0 at the start of every episode; terminal states have ``phi = 0``."""

    def __init__(self, base: Any, potential: Any):
        if base.core.reward_mode != "sparse":
            raise ValueError(
                "potential shaping wraps a sparse-reward environment; create it with "
                "reward_mode='sparse' (reward_mode='dense' already shapes with the task scorer)"
            )
        self.base = base
        self.potential = potential  # None: the current task's scorer

    def __call__(
        self, examples: list, completions: list[str], empty: list[bool]
    ) -> tuple[np.ndarray, dict[int, float]]:
        """Potentials of ``completions``, and ``{k: potential of ""}`` for rows with
        ``empty[k]``; one scorer call."""
        n = len(examples)
        extra = [k for k in range(n) if empty[k]]
        prompts = [e.prompt for e in examples] + [examples[k].prompt for k in extra]
        texts = list(completions) + [""] * len(extra)
        refs = [e.reference for e in examples] + [examples[k].reference for k in extra]
        potential = self.potential if self.potential is not None else self.base.scorer
        scores = run_scorer(potential, self.base.core.task_name, prompts, texts, refs)
        return scores[:n].astype(np.float64), dict(zip(extra, scores[n:].astype(np.float64)))


class PotentialShaping(Forwards, gym.Wrapper):
    """Dense rewards for a single TextGen environment by potential-based shaping.

    Each step adds ``F = gamma * phi(s') - phi(s)`` to the environment's (sparse) reward, with
    ``phi(s) = potential(prompt, completion so far) - potential(prompt, "")`` and ``phi = 0`` in
    the terminal state. With ``gamma=1`` (default) the shaping terms of an episode telescope
    to ``-phi(s_0) = 0``, so the rewards sum to exactly the sparse score; for any ``gamma`` the
    optimal policy is the same as without shaping (Ng, Harada and Russell, 1999).

    Args:
        env: a textgym environment created with ``reward_mode="sparse"`` (the default).
        potential: a scorer ``(prompts, completions, references) -> array`` applied to partial
            completions; default the task's scorer (then the per-step reward is the change in
            score, e.g. per-position accuracy gained by the last character). It is called once
            per step (twice on the first step of an episode), so it should be cheap.
        gamma: the discount of the learner (1.0).

    ``info["shaping"]`` holds the shaping term of each step.
    """

    def __init__(self, env: gym.Env, potential: Any = None, gamma: float = 1.0):
        super().__init__(env)
        self._phi_fn = _Potential(text_env(env, vector=False), potential)
        self.gamma = float(gamma)
        self._phi = 0.0
        self._phi0: float | None = None

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        self._phi, self._phi0 = 0.0, None
        return obs, info

    def step(self, action: Any):
        base = self._phi_fn.base
        saved = base.save_state()
        obs, reward, terminated, truncated, info = self.env.step(action)
        if terminated or truncated:
            phi = 0.0
        else:
            examples, texts = base.current_completions()
            try:  # a failing potential puts the env back: the step changed nothing
                scores, empty = self._phi_fn(examples, texts, [self._phi0 is None])
            except BaseException:
                base.restore_state(saved)
                raise
            if self._phi0 is None:
                self._phi0 = empty[0]
            phi = float(scores[0]) - self._phi0
        shaping = self.gamma * phi - self._phi
        self._phi = phi
        info = {**info, "shaping": shaping}
        return obs, float(reward) + shaping, terminated, truncated, info


class VectorPotentialShaping(Forwards, VectorWrapper):
    """:class:`PotentialShaping` for :class:`~textgym.envs.TextGenVectorEnv`: one batched
    potential call per step for every running slot, honouring the autoreset mode (a slot that
    restarts gets no shaping on its reset step). ``infos["shaping"]`` is the per-slot term."""

    def __init__(self, env: Any, potential: Any = None, gamma: float = 1.0):
        super().__init__(env)
        base = text_env(env, vector=True)
        self._phi_fn = _Potential(base, potential)
        self.gamma = float(gamma)
        n = base.num_envs
        self._phi = np.zeros(n)
        self._phi0 = np.full(n, np.nan)
        self._done = np.zeros(n, dtype=bool)

    def reset(self, **kwargs: Any):
        obs, infos = self.env.reset(**kwargs)
        mask = (kwargs.get("options") or {}).get("reset_mask")
        slots = slice(None) if mask is None else np.asarray(mask)
        self._phi[slots], self._phi0[slots], self._done[slots] = 0.0, np.nan, False
        return obs, infos

    def step(self, actions: Any):
        base = self._phi_fn.base
        saved = base.save_state()
        obs, rewards, terminated, truncated, infos = self.env.step(actions)
        done = terminated | truncated
        restarted = (
            self._done if base.autoreset_mode == AutoresetMode.NEXT_STEP else np.zeros_like(done)
        )
        running = np.flatnonzero(~done & ~restarted)
        phi = np.zeros_like(self._phi)
        if running.size:
            examples, texts = base.current_completions()
            new = np.isnan(self._phi0[running])
            try:  # a failing potential puts the env back: the step changed nothing
                scores, empty = self._phi_fn(
                    [examples[s] for s in running], [texts[s] for s in running], new.tolist()
                )
            except BaseException:
                base.restore_state(saved)
                raise
            for k, value in empty.items():
                self._phi0[running[k]] = value
            phi[running] = scores - self._phi0[running]
        shaping = self.gamma * phi - self._phi
        shaping[restarted] = 0.0
        self._phi = phi
        self._phi0[done | restarted] = np.nan
        self._done = done.copy()
        infos = {**infos, "shaping": shaping.copy(), "_shaping": np.ones(len(done), dtype=bool)}
        return obs, rewards + shaping, terminated, truncated, infos


# ---------------------------------------------------------------------------------------------
# Per-token reference-LM reward
# ---------------------------------------------------------------------------------------------


class _RefLM:
    """``log p_ref(token | prefix)`` for rows of TextGen observations, batched, no grad."""

    def __init__(self, base: Any, model: Any, device: Any, dtype: Any):
        import torch

        from textgym.models import load_lm, position_ids, resolve_device

        if isinstance(model, str):
            model, _ = load_lm(model, device=device, dtype=dtype)
        elif device is not None:
            model = model.to(resolve_device(device))
        model.eval()
        vocab = model.get_output_embeddings().weight.shape[0]
        if vocab < base.core.vocab_size:
            raise ValueError(
                f"the reference LM has {vocab} output tokens but the environment's action space "
                f"has {base.core.vocab_size}: it must use the environment's tokenizer"
            )
        self.model = model
        self.device = next(model.parameters()).device
        self.prompt_len = base.core.max_prompt_tokens
        self._torch = torch
        self._position_ids = position_ids

    def __call__(
        self,
        input_ids: np.ndarray,
        attention_mask: np.ndarray,
        num_generated: np.ndarray,
        tokens: np.ndarray,
    ) -> np.ndarray:
        torch = self._torch
        if not len(tokens):
            return np.zeros(0)
        ends = self.prompt_len + num_generated  # the new token goes to index `end`
        width = int(ends.max())
        ids = torch.as_tensor(input_ids[:, :width], device=self.device)
        mask = torch.as_tensor(attention_mask[:, :width], device=self.device)
        with torch.no_grad():
            logits = self.model(
                input_ids=ids, attention_mask=mask, position_ids=self._position_ids(mask)
            ).logits
            rows = torch.arange(len(tokens), device=self.device)
            last = logits[rows, torch.as_tensor(ends - 1, device=self.device)].float()
            lp = torch.log_softmax(last, dim=-1)[rows, torch.as_tensor(tokens, device=self.device)]
        return lp.cpu().numpy().astype(np.float64)


class LMTokenReward(Forwards, gym.Wrapper):
    """Add ``beta * log p_ref(token | prompt + completion so far)`` to every step's reward.

    A per-token fluency (or KL-like) signal from a frozen reference causal LM that shares the
    environment's tokenizer, so any RL algorithm gets it, not only textgym's agents.

    Args:
        env: a textgym environment.
        model: a name for :func:`~textgym.models.load_lm` (default ``"smollm2-135m"``) or a
            causal LM object whose vocabulary covers the action space.
        beta: the weight of the log-probability (0.05). ``log p <= 0``, so this is a penalty
            that is smallest for tokens the reference LM expects.
        device, dtype: where the reference LM runs (default CUDA when available).

    Cost: the prefix is re-encoded at every step (no KV cache), ``O(P + t)`` tokens for step
    ``t``, i.e. ``O(T * (P + T))`` per episode of ``T`` tokens with a ``P``-token prompt. On the
    vector env this is one batched forward pass per step for all slots. ``info["ref_logprob"]``
    holds the raw log-probability.
    """

    def __init__(
        self,
        env: gym.Env,
        model: Any = "smollm2-135m",
        beta: float = 0.05,
        device: Any = None,
        dtype: Any = None,
    ):
        super().__init__(env)
        self._ref = _RefLM(text_env(env, vector=False), model, device, dtype)
        self.beta = float(beta)
        self._obs: dict[str, np.ndarray] | None = None

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        self._obs = obs
        return obs, info

    def step(self, action: Any):
        prev = self._obs
        obs, reward, terminated, truncated, info = self.env.step(action)
        lp = float(
            self._ref(
                prev["input_ids"][None],
                prev["attention_mask"][None],
                prev["num_generated"],
                np.array([int(action)]),
            )[0]
        )
        self._obs = obs
        info = {**info, "ref_logprob": lp}
        return obs, float(reward) + self.beta * lp, terminated, truncated, info


class VectorLMTokenReward(Forwards, VectorWrapper):
    """:class:`LMTokenReward` for :class:`~textgym.envs.TextGenVectorEnv`: one batched
    forward pass per step over the slots whose action was used (a slot restarting under
    ``NEXT_STEP`` autoreset ignores its action and gets no bonus)."""

    def __init__(
        self,
        env: Any,
        model: Any = "smollm2-135m",
        beta: float = 0.05,
        device: Any = None,
        dtype: Any = None,
    ):
        super().__init__(env)
        base = text_env(env, vector=True)
        self._ref = _RefLM(base, model, device, dtype)
        self.beta = float(beta)
        self._obs: dict[str, np.ndarray] | None = None
        self._done = np.zeros(base.num_envs, dtype=bool)

    def reset(self, **kwargs: Any):
        obs, infos = self.env.reset(**kwargs)
        self._obs = {k: np.array(v, copy=True) for k, v in obs.items()}
        mask = (kwargs.get("options") or {}).get("reset_mask")
        self._done[slice(None) if mask is None else np.asarray(mask)] = False
        return obs, infos

    def step(self, actions: Any):
        prev = self._obs
        base = self.env.unwrapped
        obs, rewards, terminated, truncated, infos = self.env.step(actions)
        used = (
            ~self._done
            if base.autoreset_mode == AutoresetMode.NEXT_STEP
            else np.ones_like(self._done)
        )
        rows = np.flatnonzero(used)
        lp = np.zeros(len(used))
        if rows.size:
            lp[rows] = self._ref(
                prev["input_ids"][rows],
                prev["attention_mask"][rows],
                prev["num_generated"][rows, 0],
                np.asarray(actions)[rows],
            )
        self._obs = {k: np.array(v, copy=True) for k, v in obs.items()}
        self._done = terminated | truncated
        infos = {**infos, "ref_logprob": lp, "_ref_logprob": used.copy()}
        return obs, rewards + self.beta * lp, terminated, truncated, infos
