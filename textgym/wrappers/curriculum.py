"""A curriculum over a task's difficulty: :class:`Curriculum` / :class:`VectorCurriculum` move
through a task's levels (``"easy"``, ``"medium"``, ``"hard"``) by the success rate of recent
episodes, with ``set_task``; their state goes into a learner's checkpoint (``state_dict()``)."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorWrapper

from textgym.envs.checks import check_int
from textgym.errors import InvalidArgumentError
from textgym.procedural.base import CORRECT, DIFFICULTIES
from textgym.task_suite import make_task
from textgym.tasks import Task
from textgym.wrappers.base import Forwards, text_env


def _ints(values: Any, top: int) -> bool:
    """``values`` is a list of integers in ``[0, top]`` (not booleans)."""
    return isinstance(values, list) and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) and 0 <= v <= top
        for v in values
    )


def _bools(values: Any) -> bool:
    return isinstance(values, list) and all(isinstance(v, (bool, np.bool_)) for v in values)


class _CurriculumBase(Forwards):
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
        base = self._base = text_env(env, vector=isinstance(self, VectorWrapper))
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
        if (
            isinstance(success_score, (bool, np.bool_))
            or not isinstance(success_score, (int, float, np.number))
            or not np.isfinite(success_score)
        ):
            raise InvalidArgumentError(
                f"success_score must be a finite number (the score that counts as a success), "
                f"got {type(success_score).__name__} {success_score!r:.20}; pass e.g. "
                f"success_score=1.0"
            )
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
        # Every level is checked, so that one whose prompts cannot be played fails now, not in
        # the middle of training, and before the env changes; then the start level is set.
        for k in range(len(self._tasks)):
            if k != self._level:
                base.check_task(self._tasks[k])
        base.set_task(self._tasks[self._level])
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
        self._base.set_task(self._tasks[state["level"]])  # each level was checked: it fits
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

    def _record(self, outcome: Any, score: float, level: int) -> dict[str, Any] | None:
        """Count an episode played at ``level`` (one of an earlier level does not count), then
        move the level when the rule says so. Returns the info as it stood once the episode was
        counted, before any move (None when it was not counted)."""
        if level != self._level:
            return None
        success = outcome == CORRECT if outcome is not None else score >= self._success_score
        self._results.append(bool(success))
        self._episodes += 1
        counted = self._info()
        if self._episodes < self._min_episodes:
            return counted
        rate = self.success_rate
        if rate >= self._promote_at and self._level + 1 < len(self._tasks):
            move = 1
        elif rate < self._demote_at and self._level > 0:
            move = -1
        else:
            return counted
        self._base.set_task(self._tasks[self._level + move])
        self._level += move
        self._results.clear()
        self._episodes = 0
        return counted


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
    name) and ``success_rate`` (:attr:`success_rate`: the window's, 0.0 while it is empty). On
    the step an episode ends they describe the level it played, its result counted, also when
    that result moves the level (:class:`Curriculum`; the next ``reset`` shows the new level).

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
        schedule = None
        if terminated or truncated:  # the level the episode played and the rate counting it
            schedule = self._record(info.get("outcome"), info["score"], self._episode_level)
        return obs, reward, terminated, truncated, {**info, **(schedule or self._info())}


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
