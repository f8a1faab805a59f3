"""Wrappers for the TextGen environments: dense potential-based shaping, a per-token
reference-LM reward, text observations, and a curriculum over a task's difficulty.

* :class:`PotentialShaping` / :class:`VectorPotentialShaping`: add
  ``gamma * phi(s') - phi(s)`` each step, where ``phi`` is a potential of the completion so far
  (by default the task's own scorer). With ``gamma=1`` an episode's rewards sum to the sparse
  score, and for any ``gamma`` the optimal policy is unchanged (Ng et al., 1999).
* :class:`LMTokenReward` / :class:`VectorLMTokenReward`: add ``beta * log p_ref(token |
  prefix)`` each step from a reference causal LM, one batched forward pass per vector step,
  so any RL algorithm gets a fluency signal.
* :class:`TextObservation`: the observation is the decoded text (prompt + completion so far).
* :class:`Curriculum` / :class:`VectorCurriculum`: move through a task's levels (``"easy"``,
  ``"medium"``, ``"hard"``) by the success rate of recent episodes, with ``set_task``.

All wrappers work on ``gym.make``/``gym.make_vec`` environments of any textgym id (they reach
the :class:`~textgym.envs.TextGenEnv` through ``env.unwrapped``), and pass on what Gymnasium 1.x
wrappers do not: ``action_masks()`` (so MaskablePPO and the learners keep the token mask through
any stack of them) and a curriculum's ``state_dict()`` / ``load_state_dict()`` (so a learner's
checkpoint records the curriculum below them).

Over 600 lines because one concept needs them: a wrapper that reaches the TextGen env below it
(``_text_env``) and passes its mask and state on (``_Forwards``); the wrappers share both.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorWrapper

from textgym.envs import TextGenEnv, TextGenVectorEnv
from textgym.envs.checks import check_int
from textgym.errors import InvalidArgumentError
from textgym.procedural.base import CORRECT, DIFFICULTIES
from textgym.rewards import run_scorer
from textgym.task_suite import make_task
from textgym.tasks import Task


def _text_env(env: Any, vector: bool) -> Any:
    base = env.unwrapped
    expected = TextGenVectorEnv if vector else TextGenEnv
    if not isinstance(base, expected):
        raise TypeError(
            f"{'a vector' if vector else 'a single'} textgym environment ({expected.__name__}) "
            f"is needed, got {type(base).__name__}"
        )
    return base


def _below(env: Any, name: str) -> Any:
    """``env``'s attribute ``name``, else that of the first env below it that has one (through
    Gymnasium's own wrappers, such as ``gym.make``'s ``OrderEnforcing``, which forward nothing);
    AttributeError when none has it."""
    while not hasattr(env, name):
        if not hasattr(env, "env"):
            raise AttributeError(f"{type(env).__name__} has no attribute {name!r}")
        env = env.env
    return getattr(env, name)


class _Forwards:
    """What every wrapper here passes on from the env it wraps (Gymnasium 1.x wrappers forward
    no attributes): the action mask, and the state of a curriculum below the wrapper."""

    def action_masks(self) -> np.ndarray:
        """The wrapped env's action mask (``(V,)``; ``(num_envs, V)`` for a vector env): under
        the wrapper, MaskablePPO and the learners still mask the special tokens."""
        return _below(self.env, "action_masks")()

    @property
    def state_dict(self) -> Any:
        """The wrapped env's ``state_dict`` (a curriculum's below this wrapper); absent
        (``hasattr`` is False) when no env below has one."""
        return _below(self.env, "state_dict")

    @property
    def load_state_dict(self) -> Any:
        """The wrapped env's ``load_state_dict``; absent when no env below has one."""
        return _below(self.env, "load_state_dict")


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


class PotentialShaping(_Forwards, gym.Wrapper):
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
        self._phi_fn = _Potential(_text_env(env, vector=False), potential)
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


class VectorPotentialShaping(_Forwards, VectorWrapper):
    """:class:`PotentialShaping` for :class:`~textgym.envs.TextGenVectorEnv`: one batched
    potential call per step for every running slot, honouring the autoreset mode (a slot that
    restarts gets no shaping on its reset step). ``infos["shaping"]`` is the per-slot term."""

    def __init__(self, env: Any, potential: Any = None, gamma: float = 1.0):
        super().__init__(env)
        base = _text_env(env, vector=True)
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


class LMTokenReward(_Forwards, gym.Wrapper):
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
        self._ref = _RefLM(_text_env(env, vector=False), model, device, dtype)
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


class VectorLMTokenReward(_Forwards, VectorWrapper):
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
        base = _text_env(env, vector=True)
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


# ---------------------------------------------------------------------------------------------
# Text observations
# ---------------------------------------------------------------------------------------------


class TextObservation(_Forwards, gym.ObservationWrapper):
    """The observation is the text: ``prompt + completion so far`` (decoded, cut at a stop
    string), for agents that work on strings (e.g. prompting an API model).

    ``observation_space`` is a ``gymnasium.spaces.Text`` whose charset holds every character
    the tokenizer can produce; the token arrays stay available in ``env.unwrapped``.
    """

    def __init__(self, env: gym.Env, separator: str = ""):
        super().__init__(env)
        base = _text_env(env, vector=False)
        self._base = base
        self.separator = separator
        tok = base.core.tokenizer
        pieces = tok.batch_decode([[i] for i in range(len(tok))], skip_special_tokens=True)
        charset = set("".join(pieces)) | set(separator)
        for split in ("train", "test"):
            charset |= set("".join(e.prompt for e in base.core.prompts.splits[split]))
        longest = max(len(p) for p in pieces) if pieces else 1
        self.observation_space = spaces.Text(
            max_length=10 * base.core.max_prompt_tokens + longest * base.core.max_new_tokens,
            min_length=0,
            charset=frozenset(charset),
        )

    def observation(self, observation: Any) -> str:
        examples, texts = self._base.current_completions()
        return examples[0].prompt + self.separator + texts[0]


# ---------------------------------------------------------------------------------------------
# Curriculum
# ---------------------------------------------------------------------------------------------


def _ints(values: Any, top: int) -> bool:
    """``values`` is a list of integers in ``[0, top]`` (not booleans)."""
    return isinstance(values, list) and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) and 0 <= v <= top
        for v in values
    )


def _bools(values: Any) -> bool:
    return isinstance(values, list) and all(isinstance(v, (bool, np.bool_)) for v in values)


class _CurriculumBase(_Forwards):
    """What the single and the vector curriculum share: the levels (one Task each), the current
    level, the results of recent episodes at it and the rule that moves it."""

    def __init__(
        self,
        env: Any,
        levels: Sequence[str | dict | Task] = DIFFICULTIES,
        window: int = 32,
        promote_at: float = 0.8,
        demote_at: float = 0.2,
        min_episodes: int | None = None,
        success_score: float = 1.0,
        start_level: int = 0,
    ):
        super().__init__(env)  # gym.Wrapper or VectorWrapper
        base = self._base = _text_env(env, vector=isinstance(self, VectorWrapper))
        if isinstance(levels, (str, dict, Task)) or not isinstance(levels, Sequence) or not levels:
            raise InvalidArgumentError(
                f"levels must be a non-empty list of difficulty names, task kwargs (dicts) or "
                f"Tasks, got {levels!r:.60}; pass e.g. levels=('easy', 'medium', 'hard')"
            )
        window = check_int("window", window, 1, 1 << 20, 32)
        min_episodes = window if min_episodes is None else min_episodes
        self._min_episodes = check_int("min_episodes", min_episodes, 1, 1 << 30, 32)
        self._level = check_int("start_level", start_level, 0, len(levels) - 1, 0)
        numbers = all(isinstance(x, (int, float, np.number)) for x in (promote_at, demote_at))
        if not numbers or not 0.0 <= demote_at <= promote_at <= 1.0:
            raise InvalidArgumentError(
                f"need 0 <= demote_at <= promote_at <= 1, got demote_at={demote_at!r:.20}, "
                f"promote_at={promote_at!r:.20}; pass e.g. promote_at=0.8, demote_at=0.2"
            )
        self._promote_at, self._demote_at = float(promote_at), float(demote_at)
        self._success_score = float(success_score)
        self._tasks: list[Task] = []
        self._names: list[str] = []
        name, kwargs = base.core.task_spec  # the env's task as it was made
        for k, level in enumerate(levels):
            if isinstance(level, Task):
                self._tasks.append(level)
                self._names.append(level.name)
                continue
            if not isinstance(level, (str, dict)) or not isinstance(name, str):
                raise InvalidArgumentError(
                    f"levels[{k}]={level!r:.40}: a level is a difficulty name or a dict of task "
                    f"kwargs (for an env made with a task name, e.g. task='countdown'), or a Task"
                )
            changes = {"difficulty": level} if isinstance(level, str) else level
            self._tasks.append(make_task(name, **{**kwargs, **changes}))
            self._names.append(
                level if isinstance(level, str) else ", ".join(f"{k}={v}" for k, v in level.items())
            )
        # Every level is set once, so that one whose prompts cannot be played fails now, not in
        # the middle of training; the start level last.
        for k in [k for k in range(len(self._tasks)) if k != self._level] + [self._level]:
            base.set_task(self._tasks[k])
        self._results: deque[bool] = deque(maxlen=window)
        self._episodes = 0  # finished at this level since it was reached

    @property
    def level(self) -> int:
        """The index of the current level in ``levels``."""
        return self._level

    @property
    def success_rate(self) -> float:
        """The success rate of the recent episodes at this level (0.0 before the first: a real
        number, so that infos stay comparable, as Gymnasium's checker compares them)."""
        return sum(self._results) / len(self._results) if self._results else 0.0

    def state_dict(self) -> dict[str, Any]:
        """The schedule's state, as plain JSON-able values, for :meth:`load_state_dict`: the
        levels' names and the window (what a state must fit), the current level, the window's
        results, the episodes finished at the level and the level each running episode plays."""
        return {
            "levels": list(self._names),
            "window": self._results.maxlen,
            "level": self._level,
            "results": [bool(r) for r in self._results],
            "episodes": self._episodes,
            **self._slot_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state`` (a :meth:`state_dict` of a curriculum made with the same levels
        and window): the level's task is set on the env, so the next episode plays it. A state
        that does not fit raises :class:`~textgym.errors.InvalidArgumentError` and changes
        nothing."""
        problem = self._state_problem(state)
        if problem:
            raise InvalidArgumentError(
                f"state: {problem}; pass a state_dict() of a curriculum made like this one "
                f"(levels={self._names}, window={self._results.maxlen}{self._slots_text()}), "
                f"or make this curriculum like the one that saved it"
            )
        self._base.set_task(self._tasks[state["level"]])  # each level was set once: it fits
        self._level, self._episodes = int(state["level"]), int(state["episodes"])
        self._results.clear()
        self._results.extend(bool(r) for r in state["results"])
        self._load_slot_state(state)

    def _state_problem(self, state: Any) -> str | None:
        """What keeps ``state`` from being loaded (None: it fits)."""
        own = self.state_dict()
        if not isinstance(state, dict) or set(state) != set(own):
            keys = sorted(state) if isinstance(state, dict) else type(state).__name__
            return f"expected a dict with keys {sorted(own)}, got {keys}"
        levels = state["levels"]
        if not isinstance(levels, (list, tuple)) or list(levels) != own["levels"]:
            return f"it was saved by a curriculum with levels={levels!r:.200}"
        if state["window"] != own["window"]:
            return f"it was saved by a curriculum with window={state['window']!r:.20}"
        top = len(self._tasks) - 1
        if not _ints([state["level"]], top):
            return f"level={state['level']!r:.20} is not a level index in [0, {top}]"
        if not _ints([state["episodes"]], 1 << 62):
            return f"episodes={state['episodes']!r:.20} is not a count"
        results, expected = state["results"], min(state["episodes"], own["window"])
        if not _bools(results) or len(results) != expected:
            return (
                f"results={results!r:.60} are not {expected} booleans (one per episode of the "
                f"window, episodes={state['episodes']})"
            )
        return self._slot_problem(state, top)

    def _info(self) -> dict[str, Any]:
        return {
            "curriculum_level": self._level,
            "curriculum_name": self._names[self._level],
            "success_rate": self.success_rate,
        }

    def _record(self, outcome: Any, score: float, level: int) -> None:
        """Count an episode played at ``level`` (one of an earlier level does not count), then
        move the level when the rule says so."""
        if level != self._level:
            return
        success = outcome == CORRECT if outcome is not None else score >= self._success_score
        self._results.append(bool(success))
        self._episodes += 1
        if self._episodes < self._min_episodes:
            return
        rate = self.success_rate
        if rate >= self._promote_at and self._level + 1 < len(self._tasks):
            move = 1
        elif rate < self._demote_at and self._level > 0:
            move = -1
        else:
            return
        self._base.set_task(self._tasks[self._level + move])
        self._level += move
        self._results.clear()
        self._episodes = 0


class Curriculum(_CurriculumBase, gym.Wrapper):
    """Move a task through its levels of difficulty by the success rate of recent episodes.

    ## Description

    The environment plays ``levels[start_level]`` first. A finished episode is a success when
    its ``info["outcome"]`` is ``"correct"`` (the verifiable tasks' checkers label each answer)
    or, for tasks without outcomes, when ``info["score"] >= success_score``. Once ``min_episodes``
    episodes have finished at the current level, the success rate of the last ``window`` of
    them moves it: one level up when the rate reaches ``promote_at``, one down when it falls
    below ``demote_at``; the count then starts afresh. The level changes through
    :meth:`~textgym.envs.TextGenEnv.set_task`, so the next episode plays it; an episode
    finishes under the level it started with and counts for that level only. The schedule has
    no randomness of its own: under a seed, the same actions give the same levels.

    ## Levels

    * a difficulty name (``"easy"``, ``"medium"``, ``"hard"``): the env's task with
      ``difficulty=name``;
    * a dict: the env's task with its task kwargs updated by the dict;
    * a :class:`~textgym.tasks.Task`: that task.

    Names and dicts need an environment made with a task name (``task="countdown"``, or a
    registered id such as ``TextGen-Countdown-Hard-v0``). Every level is set once when the
    wrapper is made, so a level whose prompts cannot be played fails then. Make the environment
    with the token budgets of the hardest level (its ``-Hard-v0`` id), else the prompts of the
    harder levels are cut (with a warning).

    ## Info

    ``reset`` and every ``step`` add ``curriculum_level`` (the level's index in ``levels``),
    ``curriculum_name`` (the difficulty name, the dict as ``key=value`` pairs, or the Task's
    name) and ``success_rate`` (:attr:`success_rate`: the window's, 0.0 while it is empty).

    ## State

    :meth:`state_dict` returns the schedule's state as plain JSON-able values: the levels'
    names and the window, the current level, the window's results, the episodes finished at the
    level and the level of the running episode(s). :meth:`load_state_dict` puts it back into a
    curriculum made with the same levels and window (and, for :class:`VectorCurriculum`, as many
    slots) and sets the level's task on the env, so the next episode plays it; a state that does
    not fit raises :class:`~textgym.errors.InvalidArgumentError` and changes nothing. The
    thresholds (``promote_at``, ``demote_at``, ``min_episodes``, ``success_score``) are the
    wrapper's arguments, not part of the state, and neither are the env's running episodes: load
    a state between episodes. Every wrapper of :mod:`textgym.wrappers` stacked on the curriculum
    passes both methods on. The learners of ``agents`` save the state in their checkpoints and
    load it on resume, so a resumed run continues at the saved level with the saved window.

    ## Arguments

    * ``env``: a textgym environment playing a task (not a dialogue game).
    * ``levels``: the levels, easiest first (``("easy", "medium", "hard")``).
    * ``window``: how many recent episodes the success rate covers (32).
    * ``promote_at``: the success rate that moves one level up (0.8).
    * ``demote_at``: a success rate below it moves one level down (0.2; 0 never demotes).
    * ``min_episodes``: episodes to finish at a level before it can move (None: ``window``).
    * ``success_score``: the score that counts as a success for tasks without outcomes (1.0).
    * ``start_level``: the index of the first level (0).
    """

    _episode_level = 0  # the level the running episode plays

    def _slot_state(self) -> dict[str, Any]:
        return {"episode_level": int(self._episode_level)}

    def _slot_problem(self, state: dict[str, Any], top: int) -> str | None:
        if not _ints([state["episode_level"]], top):
            return f"episode_level={state['episode_level']!r:.20} is not a level index"
        return None

    def _slots_text(self) -> str:
        return ""

    def _load_slot_state(self, state: dict[str, Any]) -> None:
        self._episode_level = int(state["episode_level"])

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        self._episode_level = self._level
        return obs, {**info, **self._info()}

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if terminated or truncated:
            self._record(info.get("outcome"), info["score"], self._episode_level)
        return obs, reward, terminated, truncated, {**info, **self._info()}


class VectorCurriculum(_CurriculumBase, VectorWrapper):
    """:class:`Curriculum` for :class:`~textgym.envs.TextGenVectorEnv`, with the same arguments:
    one schedule for all slots, fed by every episode that finishes (in slot order), honouring
    the autoreset mode. When the level moves, running episodes finish under their own level and
    do not count for the new one. The info keys are arrays over the slots, every slot marked."""

    def __init__(self, env: Any, *args: Any, **kwargs: Any):
        super().__init__(env, *args, **kwargs)
        n = self._base.num_envs
        self._episode_level = np.full(n, self._level)  # the level each slot's episode plays
        self._restarting = np.zeros(n, dtype=bool)  # NEXT_STEP: episodes that start next step

    def _slot_state(self) -> dict[str, Any]:
        return {
            "episode_levels": self._episode_level.tolist(),
            "restarting": self._restarting.tolist(),
        }

    def _slot_problem(self, state: dict[str, Any], top: int) -> str | None:
        n, levels, restarting = self._base.num_envs, state["episode_levels"], state["restarting"]
        if not (_ints(levels, top) and _bools(restarting) and len(levels) == n == len(restarting)):
            return (
                f"episode_levels={levels!r:.60} and restarting={restarting!r:.60} are not "
                f"{n} level indices and {n} booleans (one per slot)"
            )
        return None

    def _slots_text(self) -> str:
        return f", num_envs={self._base.num_envs}"

    def _load_slot_state(self, state: dict[str, Any]) -> None:
        self._episode_level[:] = state["episode_levels"]
        self._restarting[:] = state["restarting"]

    def reset(self, **kwargs: Any):
        obs, infos = self.env.reset(**kwargs)
        mask = (kwargs.get("options") or {}).get("reset_mask")
        slots = slice(None) if mask is None else np.asarray(mask)
        self._episode_level[slots] = self._level
        self._restarting[slots] = False
        return obs, self._vector_info(infos)

    def step(self, actions: Any):
        level = self._level  # the task the episodes that start in this step play
        obs, rewards, terminated, truncated, infos = self.env.step(actions)
        self._episode_level[self._restarting] = level
        done = terminated | truncated
        mode = self._base.autoreset_mode
        final = infos.get("final_info", {}) if mode == AutoresetMode.SAME_STEP else infos
        for s in np.flatnonzero(done).tolist():
            outcome = final["outcome"][s] if "outcome" in final and final["_outcome"][s] else None
            self._record(outcome, float(final["score"][s]), self._episode_level[s])
        if mode == AutoresetMode.SAME_STEP:  # the finished slots restarted inside env.step
            self._episode_level[done] = level
        self._restarting = done & (mode == AutoresetMode.NEXT_STEP)
        return obs, rewards, terminated, truncated, self._vector_info(infos)

    def _vector_info(self, infos: dict[str, Any]) -> dict[str, Any]:
        n = self._base.num_envs
        infos = dict(infos)
        for key, value in self._info().items():
            infos[key] = np.full(n, value, dtype=object if isinstance(value, str) else None)
            infos["_" + key] = np.ones(n, dtype=bool)
        return infos
