"""TextGen: token-level text generation as a Gymnasium environment, single and natively vectorised.

:class:`TextGenEnv` runs one episode at a time, :class:`TextGenVectorEnv` steps ``num_envs``
episodes with numpy arrays. Both are thin layers over the same machinery
(:mod:`textgym.envs.core`: the shared core and the episode arrays), so their data are identical.
Over 600 lines because one concept needs them: the TextGen environment, whose two forms share
one documentation, one set of checks and one way to change the task (``set_task``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from textgym.envs.checks import (
    MAX_EPISODE_BYTES,
    MAX_NUM_ENVS,
    check_bool,
    check_int,
    check_render_mode,
    check_seed,
)
from textgym.envs.control_points import ControlPoints, slot_points, text_gen_points
from textgym.envs.core import TextGenCore
from textgym.envs.episodes import Episodes
from textgym.errors import InvalidArgumentError, ResetNeeded
from textgym.retry import FaultCounts, RetryPolicy
from textgym.tasks import Example, PromptSet, Scorer, Task


class TextGenEnv(gym.Env[dict[str, np.ndarray], int]):
    """Generate a completion of a prompt one token at a time; the text's score is the reward.

    ## Description

    Each episode is one completion of one prompt. The prompt is sampled from the task's prompt
    set (seeded by ``reset(seed=...)``); the agent chooses the next token id at every step, as a
    language model does when it generates. When the completion ends, the task's scorer rates the
    decoded text. ``TextGen-v0`` continues short review openings (400 ship with the package) and
    rewards positive sentiment: VADER's compound score of the completion, with the tokenizer of
    SmolLM2-135M-Instruct (vocabulary 49,152) and 32 new tokens.

    ## Action Space

    ``Discrete(V)``: the id of the next token, ``V = len(tokenizer)`` unless ``vocab_size`` is
    given. Python ints and numpy integer scalars are accepted; anything else, or an id outside
    ``[0, V)``, raises :class:`~textgym.errors.InvalidTokenError`. ``action_masks()`` returns a
    boolean ``(V,)`` array that is ``False`` for special tokens other than EOS (when
    ``mask_special_tokens``) and for ids past the tokenizer; masked ids are still legal actions,
    the mask is for algorithms that support masking (e.g. sb3-contrib's MaskablePPO).

    ## Observation Space

    A ``Dict`` of fixed-shape ``int64`` arrays, ``L = max_prompt_tokens + max_new_tokens``:

    | key              | shape  | content                                                          |
    |------------------|--------|------------------------------------------------------------------|
    | ``input_ids``      | (L,)   | prompt ids left-padded in ``[0, P)``; generated ids from ``P`` on, then padding |
    | ``attention_mask`` | (L,)   | 1 for real tokens, 0 for padding                                  |
    | ``num_generated``  | (1,)   | tokens generated so far (0 right after reset)                     |

    ``P = max_prompt_tokens``, so token ``t`` of the completion always sits at index ``P + t``
    and the arrays can be fed to a causal LM as they are. Padding uses the tokenizer's pad id
    (its EOS id if it has none). ``encode_prompts(prompts)`` and ``encode_completions(texts)``
    return these arrays for given text (e.g. supervised data in the same layout).

    ## Rewards

    ``reward_mode="sparse"`` (default): 0 at every step and the task's score of the completion at
    the last step. ``reward_mode="dense"``: the change of the potential
    ``phi_t = score(completion after t tokens)`` with ``phi_0 = 0``; the rewards of an episode
    sum to the same final score (potential-based shaping), at the price of one scorer call per
    step. Scores are checked: a scorer that raises, returns NaN/inf, the wrong shape or anything
    but real numbers (complex values, tensors that track gradients, strings) raises
    :class:`~textgym.errors.ScorerError` naming the task, the value and the text; with a
    timeout a scorer that does not return in time raises
    :class:`~textgym.errors.ScorerTimeoutError`. Either way the step changed nothing (the token
    is not appended): call ``step`` again with the same action to retry a transient failure.

    ## Failing calls

    ``retry=RetryPolicy(retries=2, backoff=0.5, backoff_factor=2.0, timeout=None)`` retries a
    scorer call that raises or runs past ``timeout`` s, after ``backoff * backoff_factor ** k``
    s (default: no retry). A call that still fails raises, as above (``on_failure="raise"``).
    With ``on_failure="end_episode"`` its episodes end ``truncated`` instead, with a reward of
    0.0 that is a placeholder, never a score, and final infos ``failed=True``, ``failure=
    "<error class>: <message>"``, ``score=nan``; learners must leave them out. The other
    episodes of a vector step are scored as usual. ``env.fault_counts`` counts retries,
    timeouts, failed calls and episodes (:mod:`textgym.retry`, docs/environments.md).

    ## Starting State

    A prompt drawn uniformly at random (with the environment's seeded RNG) from the current
    split, encoded with the tokenizer (with its special tokens, or the chat template when
    ``chat_template=True``) and left-truncated to ``max_prompt_tokens`` with a warning, or
    rejected with :class:`~textgym.errors.PromptTooLongError` (``prompt_overflow="error"``).
    ``reset(options=...)`` accepts ``{"split": "train" | "test"}`` (kept for later resets) and
    ``{"prompt": str | Example}`` (this episode only).

    ## Episode End

    * Termination: the agent emits EOS (``stop_on_eos``) or the decoded completion contains one
      of ``stop_strings`` (the completion is scored up to the stop string).
    * Truncation: ``max_new_tokens`` tokens were generated.

    Stepping after the end, or before the first reset, raises ``gymnasium.error.ResetNeeded``.

    ## Info

    ``reset`` returns ``prompt``, ``prompt_index`` (``-1`` for a prompt passed in ``options``)
    and ``split``. The last step returns ``prompt``, ``completion`` (decoded text), ``score``
    and ``num_tokens``; other steps return an empty dict.

    ## Arguments

    * ``task``: a built-in task name (``"reviews"``, ``"arithmetic"``, ... see
      ``textgym.TASKS``) or a :class:`~textgym.tasks.Task`.
    * ``task_kwargs``: keyword arguments for the named task's factory, e.g.
      ``{"digits": 3, "operators": "+-*"}`` for ``"arithmetic"`` (see
      ``textgym.describe(env_id)``); not allowed with a ``Task`` object.
    * ``prompts``: replaces the task's prompts: a list of strings/dicts, a JSONL path, a
      ``datasets`` dataset or a :class:`~textgym.tasks.PromptSet`.
    * ``scorer``: replaces the task's scorer, ``scorer(prompts, completions, references)``.
    * ``tokenizer``: a name for :func:`textgym.models.load_tokenizer` (``"smollm2-135m"``,
      ``"char"``, an HF id or folder) or a tokenizer object. Default ``"smollm2-135m"``.
    * ``max_new_tokens``: token budget of a completion (32).
    * ``max_prompt_tokens``: prompt budget ``P`` (64).
    * ``reward_mode``: ``"sparse"`` or ``"dense"``.
    * ``stop_on_eos``: end the episode at the EOS token (True).
    * ``stop_strings``: strings that end the episode when they appear in the completion (none).
    * ``prompt_overflow``: ``"truncate"`` (warn and keep the last ``P`` tokens) or ``"error"``.
    * ``split``: the split prompts are drawn from until an ``options["split"]`` changes it.
    * ``chat_template``: wrap prompts in the tokenizer's chat template as a user turn (False).
    * ``mask_special_tokens``: exclude special tokens but EOS from ``action_masks()`` (True).
    * ``vocab_size``: size of the action space when the model's vocabulary is larger than the
      tokenizer's (default ``len(tokenizer)``).
    * ``render_mode``: ``"ansi"`` (``render()`` returns the text) or ``"human"`` (prints the
      prompt at reset and the completion at the end). Another mode (SB3's ``make_vec_env``
      passes ``"rgb_array"``) is accepted with a warning, as Gymnasium's environments do, and
      ``render()`` returns None.
    * ``scorer_timeout``: ``retry``'s ``timeout`` (None: no limit): the scorer runs in a worker
      thread; past the limit ``step`` raises :class:`~textgym.errors.ScorerTimeoutError` and
      leaves the episode as it was (retry with the same action); the late result is discarded.
    * ``retry``, ``on_failure``: see "Failing calls".

    Bad arguments raise :class:`~textgym.errors.InvalidArgumentError` (a ``ValueError`` and a
    ``TypeError``) naming the argument, before anything is loaded or allocated.

    ## Changing the task

    ``env.set_task(task, **task_kwargs)`` (a name of ``textgym.TASKS`` with its kwargs, or a
    :class:`~textgym.tasks.Task`) plays that task from the next episode on: its prompts and scorer
    replace the current ones (``prompts``/``scorer`` arguments too); tokenizer, budgets and stop
    rules stay. The new task's prompts are all encoded first: a rejected call changes nothing. A
    running episode finishes under the task it started with, scored by that task's scorer.
    ``env.scorer`` is the scorer of the current task. :class:`textgym.wrappers.Curriculum` moves
    a task's difficulty this way.

    ## Control points

    ``control_points()``: how far an engine (vLLM, a server) may write the next tokens before
    ``step`` must see them: EOS, stop strings, tokens left (:mod:`textgym.envs.control_points`).

    ## Vectorized environment

    ``gym.make_vec("TextGen-v0", num_envs=N)`` returns :class:`TextGenVectorEnv`, which steps all
    ``N`` episodes with numpy operations and scores all episodes that end in a step with one
    scorer call; it takes the same arguments plus ``autoreset_mode``.
    """

    metadata = {"render_modes": ["ansi", "human"], "render_fps": 4}
    _episode_core: TextGenCore | None = None  # the running episode's, after a set_task

    def __init__(
        self,
        task: str | Task = "reviews",
        prompts: Any = None,
        scorer: Scorer | None = None,
        tokenizer: Any = "smollm2-135m",
        max_new_tokens: int = 32,
        max_prompt_tokens: int = 64,
        reward_mode: str = "sparse",
        stop_on_eos: bool = True,
        stop_strings: Sequence[str] = (),
        prompt_overflow: str = "truncate",
        split: str = "train",
        chat_template: bool = False,
        mask_special_tokens: bool = True,
        vocab_size: int | None = None,
        render_mode: str | None = None,
        task_kwargs: dict[str, Any] | None = None,
        scorer_timeout: float | None = None,
        retry: RetryPolicy | dict[str, Any] | None = None,
        on_failure: str = "raise",
    ):
        render_mode = check_render_mode(type(self), render_mode)
        self.core = TextGenCore(
            task,
            prompts,
            scorer,
            tokenizer,
            max_new_tokens,
            max_prompt_tokens,
            reward_mode,
            stop_on_eos,
            stop_strings,
            prompt_overflow,
            chat_template,
            mask_special_tokens,
            vocab_size,
            task_kwargs,
            scorer_timeout,
            retry,
            on_failure,
        )
        self.observation_space = self.core.observation_space
        self.action_space = self.core.action_space
        self.render_mode = render_mode
        # Fail now, not at the first reset, on an unknown or empty split or unencodable prompts.
        self.split = self.core.check_split(split)
        self._episode = Episodes(self.core, 1)
        self._slot = np.zeros(1, dtype=np.int64)
        self._needs_reset = True

    @property
    def tokenizer(self) -> Any:
        return self.core.tokenizer

    @property
    def prompts(self) -> PromptSet:
        """The prompts episodes are drawn from; ``info["prompt_index"]`` indexes
        ``prompts[split]``."""
        return self.core.prompts

    @property
    def scorer(self) -> Scorer:
        """The current task's scorer, ``scorer(prompts, completions, references)``."""
        return self.core.scorer

    def check_task(self, task: str | Task, **task_kwargs: Any) -> None:
        """Raise what :meth:`set_task` would raise for ``task``, changing nothing."""
        _task_core(self, task, task_kwargs, [self.split])

    def set_task(self, task: str | Task, **task_kwargs: Any) -> None:
        """Play ``task`` from the next episode on (see "Changing the task")."""
        core = _task_core(self, task, task_kwargs, [self.split])
        if not self._needs_reset and self._episode_core is None:
            self._episode_core = self.core  # the running episode finishes under its task
        self._episode.reports_outcomes |= core.reports_outcomes
        self.core = core

    def encode_prompts(self, prompts: Sequence[str | Example]) -> dict[str, np.ndarray]:
        """Encode ``prompts`` the way the environment does: ``{"input_ids", "attention_mask"}``,
        ``(len(prompts), P)`` int64 arrays equal to the first ``P`` columns of the observation
        ``reset`` returns for each prompt (same tokenizer, chat template, left padding and
        truncation). With :meth:`encode_completions`, supervised data in the env's layout."""
        return self.core.prompt_arrays(prompts)

    def score_texts(
        self, examples: Sequence[Example], texts: Sequence[str]
    ) -> tuple[np.ndarray, list[str] | None]:
        """Score finished completions ``texts`` of ``examples`` (prompt, reference) exactly as
        the end of an episode does, with the current task's scorer: float32 scores, and the
        checker's outcome labels (``"correct"``, ``"partial"``, ``"wrong"``, ``"format_error"``)
        or None for a scorer that gives none. ``texts`` are cut at stop strings already (as
        ``info["completion"]`` is). Retried as a step's scoring is; a scorer that still fails
        raises :class:`~textgym.errors.ScorerError`, or with ``on_failure="end_episode"`` gives
        that text a NaN score (never 0) and label None."""
        return self.core.score_texts(examples, texts, self._episode.fault_counts)[:2]

    @property
    def fault_counts(self) -> FaultCounts:
        """A copy of the counts of retried, timed-out and failed calls and failed episodes
        since the env was made (subtract an earlier copy for an iteration's)."""
        return self._episode.fault_counts.copy()

    def encode_completions(self, completions: Sequence[str]) -> dict[str, np.ndarray]:
        """Encode ``completions`` as the environment holds generated text: ``{"input_ids",
        "attention_mask"}``, ``(len(completions), T)`` int64 arrays, the columns from ``P`` on of
        the last observation of an episode that wrote each text's tokens, then EOS (when
        ``stop_on_eos``), cut to ``T = max_new_tokens``."""
        return self.core.completion_arrays(completions)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        # Validate before seeding, so a rejected reset leaves the environment as it was.
        seed = check_seed(seed)
        options = self.core.check_options(options, ("prompt", "split"))
        split = options.get("split", self.split)
        prompt = options.get("prompt")
        custom = self.core.resolve_prompt(prompt) if prompt is not None else None
        super().reset(seed=seed)
        if custom is not None:
            (example, row), index = custom, -1
        else:
            bank = self.core.bank(split)
            index = int(self.np_random.integers(len(bank.examples)))
            example, row = bank.draw(index)
        self.split = split
        self._episode_core = None
        ep = self._episode
        ep.prompt_index[0] = index
        ep.split[0] = split
        ep.start(self.core, self._slot, row[None], [example])
        self._needs_reset = False
        if self.render_mode == "human":
            print(f"prompt: {example.prompt}")
        info = {k: v[0] for k, v in ep.reset_info(self._slot).items()}
        return ep.observation(0), info

    def step(self, action: int) -> tuple[dict[str, np.ndarray], float, bool, bool, dict]:
        if self._needs_reset:
            raise ResetNeeded(
                "the episode has ended (or reset() was never called); call env.reset() "
                "before env.step()"
            )
        token = self.core.check_actions(action, None).reshape(1)
        ep = self._episode
        core = self.core if self._episode_core is None else self._episode_core
        reward, terminated, truncated = ep.step(core, self._slot, token)
        done = bool(terminated[0] or truncated[0])
        info: dict[str, Any] = {}
        if done:
            self._needs_reset = True
            info = {k: v[0] for k, v in ep.final_info(self._slot).items()}
            if self.render_mode == "human":
                print(ep.render(self.core, 0), end="")
        return ep.observation(0), float(reward[0]), bool(terminated[0]), bool(truncated[0]), info

    def save_state(self) -> Any:
        """The episode state, for :meth:`restore_state`: a wrapper whose own work after
        ``step`` fails (a shaping scorer) puts the environment back, so the call changed
        nothing."""
        return self._episode.snapshot(self._slot), self._needs_reset

    def restore_state(self, state: Any) -> None:
        snap, self._needs_reset = state
        self._episode.restore(snap)

    def current_completions(self) -> tuple[list[Example], list[str]]:
        """``([example], [completion so far])``: the episode's example and its decoded
        completion, cut at a stop string (what the scorer would see). For wrappers."""
        return [self._episode.examples[0]], self.core.completions(self._episode, self._slot)

    def action_masks(self) -> np.ndarray:
        """``(V,)`` bool: ``True`` for tokens worth choosing (see Action Space)."""
        return self.core.action_mask.copy()

    _control_rule = staticmethod(text_gen_points)  # see textgym.envs.control_points

    def control_points(self) -> ControlPoints:
        """See "Control points"; raises ``ResetNeeded`` when no episode is running."""
        if self._needs_reset:
            raise ResetNeeded("no episode is running; call env.reset() before control_points()")
        core = self.core if self._episode_core is None else self._episode_core
        return slot_points(self._control_rule, core, self._episode, np.ones(1, bool))[0]

    def render(self) -> str | None:
        if self.render_mode is not None and self.render_mode not in self.metadata["render_modes"]:
            return None  # a mode textgym does not draw (warned at construction)
        text = self._episode.render(self.core, 0)
        if self.render_mode == "human":
            print(text, end="")
            return None
        return text


def _task_core(env: Any, task: Any, task_kwargs: dict[str, Any], splits: list[str]) -> TextGenCore:
    """``env``'s core for ``task``, checked and encoded (the splits in use must have prompts);
    raises before ``env`` changes."""
    if type(env.core) is not TextGenCore:
        raise InvalidArgumentError(f"{type(env).__name__} has no task to set")
    if not isinstance(task, (str, Task)):
        raise InvalidArgumentError(
            f"task must be a task name (str) or a textgym.Task, got {type(task).__name__}"
        )
    core = env.core.with_task(task, task_kwargs)
    for split in set(splits):
        core.check_split(split)
    return core


class TextGenVectorEnv(VectorEnv):
    """``num_envs`` TextGen episodes stepped together with numpy arrays.

    Takes the arguments of :class:`TextGenEnv` plus ``num_envs``, ``autoreset_mode``
    (``NEXT_STEP``, the default, ``SAME_STEP`` or ``DISABLED``, as in Gymnasium's vector API) and
    ``copy`` (return copies of the observation arrays, default True). ``reset(seed=s)`` seeds slot
    ``i`` with ``s + i``, so the data equal that of ``num_envs`` single environments under
    ``SyncVectorEnv``. Options: ``{"split": ...}`` (kept for later autoresets), ``{"prompt": str
    or list of num_envs str}`` and ``{"reset_mask": bool array}`` (reset only those slots).

    Infos follow Gymnasium's vector convention: ``infos[key]`` is an array over slots and
    ``infos["_" + key]`` marks the slots that have it. With ``SAME_STEP`` the last observation and
    info of an episode are in ``infos["final_obs"]`` and ``infos["final_info"]``.
    ``action_masks()`` returns a read-only ``(num_envs, V)`` view of one ``(V,)`` mask.
    """

    metadata = {
        "render_modes": ["ansi", "human"],
        "autoreset_mode": AutoresetMode.NEXT_STEP,
    }
    # Subclasses (the dialogue envs) swap the single env whose core and episode state this
    # vectorises, and the per-episode reset option ("prompt" here).
    _env_class: type[TextGenEnv] = TextGenEnv
    _episode_option = "prompt"

    def __init__(
        self,
        num_envs: int = 1,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        copy: bool = True,
        render_mode: str | None = None,
        split: str = "train",
        **kwargs: Any,
    ):
        num_envs = check_int("num_envs", num_envs, 1, MAX_NUM_ENVS, 16)
        try:
            autoreset_mode = AutoresetMode(autoreset_mode)
        except ValueError:
            raise InvalidArgumentError(
                f"autoreset_mode must be one of {[m.value for m in AutoresetMode]} (or a "
                f"gymnasium.vector.AutoresetMode), got {autoreset_mode!r:.60}"
            ) from None
        copy = check_bool("copy", copy)
        render_mode = check_render_mode(type(self), render_mode)
        self.autoreset_mode = autoreset_mode
        self.metadata = {**self.metadata, "autoreset_mode": self.autoreset_mode}
        # The single environment validates and documents the arguments; reuse its core.
        single = self._env_class(split=split, **kwargs)
        self.core = single.core
        context = self.core.max_prompt_tokens + self.core.max_new_tokens
        needed = 3 * 8 * num_envs * context  # ids, mask and an observation copy, int64
        if needed > MAX_EPISODE_BYTES:
            raise InvalidArgumentError(
                f"num_envs={num_envs} episodes of {context} tokens would need "
                f"{needed / 2**30:.0f} GiB; lower num_envs, max_new_tokens or max_prompt_tokens"
            )
        self.num_envs = num_envs
        self.render_mode = render_mode
        self.copy = copy
        self.single_observation_space = self.core.observation_space
        self.single_action_space = self.core.action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._episodes = type(single._episode)(self.core, num_envs)
        self._splits = [split] * num_envs
        self._rngs: list[np.random.Generator | None] = [None] * num_envs
        self._needs_reset = np.ones(num_envs, dtype=bool)  # done last step (or never reset)
        self._was_reset = False
        self._all = np.arange(num_envs)
        # set_task: slot s's episode plays task self._slot_task[s], whose core is in _task_cores.
        self._task_id = 0
        self._task_cores = {0: self.core}
        self._slot_task = np.zeros(num_envs, dtype=np.int64)

    @property
    def tokenizer(self) -> Any:
        return self.core.tokenizer

    @property
    def prompts(self) -> PromptSet:
        """See :attr:`TextGenEnv.prompts`."""
        return self.core.prompts

    @property
    def scorer(self) -> Scorer:
        """See :attr:`TextGenEnv.scorer`."""
        return self.core.scorer

    def check_task(self, task: str | Task, **task_kwargs: Any) -> None:
        """See :meth:`TextGenEnv.check_task`."""
        _task_core(self, task, task_kwargs, self._splits)

    def set_task(self, task: str | Task, **task_kwargs: Any) -> None:
        """Play ``task`` in the episodes that start from now on (see :class:`TextGenEnv`,
        "Changing the task"); every running episode finishes under the task it started with."""
        core = _task_core(self, task, task_kwargs, self._splits)
        self._task_id += 1
        self._task_cores[self._task_id] = core
        self._episodes.reports_outcomes |= core.reports_outcomes
        self.core = core
        self._forget_unused_tasks()

    def encode_prompts(self, prompts: Sequence[str | Example]) -> dict[str, np.ndarray]:
        """See :meth:`TextGenEnv.encode_prompts`."""
        return self.core.prompt_arrays(prompts)

    def score_texts(
        self, examples: Sequence[Example], texts: Sequence[str]
    ) -> tuple[np.ndarray, list[str] | None]:
        """See :meth:`TextGenEnv.score_texts`."""
        return self.core.score_texts(examples, texts, self._episodes.fault_counts)[:2]

    @property
    def fault_counts(self) -> FaultCounts:
        """See :attr:`TextGenEnv.fault_counts` (all slots together)."""
        return self._episodes.fault_counts.copy()

    def encode_completions(self, completions: Sequence[str]) -> dict[str, np.ndarray]:
        """See :meth:`TextGenEnv.encode_completions`."""
        return self.core.completion_arrays(completions)

    def reset(
        self,
        *,
        seed: int | Sequence[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        # Everything is checked (and the new RNGs built) before any state changes: a rejected
        # reset leaves every slot, RNG and split as it was.
        options = self.core.check_options(options, (self._episode_option, "split", "reset_mask"))
        reset_mask = options.pop("reset_mask", None)
        if reset_mask is None:
            slots = self._all
        else:
            reset_mask = np.asarray(reset_mask)
            if reset_mask.shape != (self.num_envs,) or reset_mask.dtype != np.bool_:
                raise InvalidArgumentError(
                    f"options['reset_mask'] must be a bool array of shape ({self.num_envs},), "
                    f"got {reset_mask.dtype} of shape {reset_mask.shape}"
                )
            if not reset_mask.any():
                raise InvalidArgumentError("options['reset_mask'] must select at least one env")
            slots = np.flatnonzero(reset_mask)
        if seed is None or isinstance(seed, (int, np.integer)):
            seed = check_seed(seed)
            seeds = [None if seed is None else seed + i for i in range(self.num_envs)]
        elif isinstance(seed, (str, bytes)) or not isinstance(seed, (Sequence, np.ndarray)):
            raise InvalidArgumentError(
                f"seed must be None, an integer or a list of {self.num_envs} integers/None, got "
                f"{type(seed).__name__} {seed!r:.60}"
            )
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise InvalidArgumentError(
                    f"seed: got {len(seeds)} seeds for {self.num_envs} environments; pass one "
                    f"per environment (None keeps a slot's RNG)"
                )
            seeds = [check_seed(x, f"seed[{i}]") for i, x in enumerate(seeds)]
        prompt = self._check_episode_option(options.get(self._episode_option))
        rngs = list(self._rngs)
        for s in slots.tolist():
            if seeds[s] is not None or rngs[s] is None:
                rngs[s], _ = seeding.np_random(seeds[s])
        splits = list(self._splits)
        for s in slots.tolist():
            splits[s] = options.get("split", splits[s])
        self._rngs = rngs
        self._start(slots, prompt, splits)
        self._splits = splits
        self._needs_reset[slots] = False
        self._was_reset = True
        infos = self._batch_infos({}, slots, self._episodes.reset_info(slots))
        return self._episodes.observation(slice(None), self.copy), infos

    def step(
        self, actions: Any
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if not self._was_reset:
            raise ResetNeeded("call envs.reset() before envs.step()")
        actions = self.core.check_actions(actions, self.num_envs)
        ep = self._episodes
        rewards = np.zeros(self.num_envs, dtype=np.float64)
        terminated = np.zeros(self.num_envs, dtype=bool)
        truncated = np.zeros(self.num_envs, dtype=bool)
        infos: dict[str, Any] = {}

        resetting = self._needs_reset.copy()
        if resetting.any():
            if self.autoreset_mode == AutoresetMode.DISABLED:
                slot = int(np.flatnonzero(resetting)[0])
                raise ResetNeeded(
                    f"env {slot}'s episode has ended and autoreset is disabled; call "
                    f"envs.reset(options={{'reset_mask': mask}}) for the finished envs first"
                )
            active = np.flatnonzero(~resetting)
        else:
            active = self._all

        # The live slots step first: if the scorer (or a partner) fails, ep.step takes their
        # tokens back and nothing else has changed yet, so the same call can be retried.
        r, term, trunc = self._step_episodes(active, actions[active])
        if resetting.any():
            # NEXT_STEP: slots that finished last step start a new episode and ignore the action.
            slots = np.flatnonzero(resetting)
            self._start(slots, None)
            infos = self._batch_infos(infos, slots, ep.reset_info(slots))
        rewards[active], terminated[active], truncated[active] = r, term, trunc
        done = active[term | trunc]
        if done.size:
            final = ep.final_info(done)
            if self.autoreset_mode == AutoresetMode.SAME_STEP:
                final_obs = np.full(self.num_envs, None, dtype=object)
                obs = ep.observation(done)
                for k, s in enumerate(done.tolist()):
                    final_obs[s] = {key: value[k] for key, value in obs.items()}
                infos["final_obs"] = final_obs
                infos["_final_obs"] = np.isin(self._all, done)
                infos["final_info"] = self._batch_infos({}, done, final)
                infos["_final_info"] = infos["_final_obs"].copy()
                self._start(done, None)
                infos = self._batch_infos(infos, done, ep.reset_info(done))
            else:
                infos = self._batch_infos(infos, done, final)
        # Slots reset above are live again; slots done now restart on the next step (NEXT_STEP)
        # or wait for reset(options={"reset_mask": ...}) (DISABLED).
        self._needs_reset[resetting] = False
        if self.autoreset_mode != AutoresetMode.SAME_STEP:
            self._needs_reset[done] = True
        if self.render_mode == "human" and done.size:
            for s in done.tolist():
                print(f"[env {s}]\n{ep.render(self.core, s)}", end="")
        self._forget_unused_tasks()
        return ep.observation(slice(None), self.copy), rewards, terminated, truncated, infos

    def _step_episodes(
        self, slots: np.ndarray, tokens: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``Episodes.step`` of ``slots``, each scored by the task its episode started with
        (one scorer call per task); if one fails, every slot is put back."""
        tasks = self._slot_task[slots]
        if (tasks == self._task_id).all():
            return self._episodes.step(self.core, slots, tokens)
        out = (np.zeros(len(slots)), np.zeros(len(slots), bool), np.zeros(len(slots), bool))
        snap = self._episodes.snapshot(slots)
        try:
            for task in np.unique(tasks).tolist():
                k = tasks == task
                stepped = self._episodes.step(self._task_cores[task], slots[k], tokens[k])
                for array, values in zip(out, stepped):
                    array[k] = values
        except BaseException:
            self._episodes.restore(snap)
            raise
        return out

    def _forget_unused_tasks(self) -> None:
        if len(self._task_cores) > 1:
            used = {*self._slot_task.tolist(), self._task_id}
            self._task_cores = {t: c for t, c in self._task_cores.items() if t in used}

    def _check_episode_option(self, prompt: Any) -> list[tuple[Example, np.ndarray]] | None:
        """Validate and encode ``options["prompt"]`` (before any state changes); returns one
        ``(example, ids)`` per slot, or None."""
        if prompt is None:
            return None
        if isinstance(prompt, (str, Example)):
            return [self.core.resolve_prompt(prompt)] * self.num_envs
        if not isinstance(prompt, (list, tuple)) or len(prompt) != self.num_envs:
            raise InvalidArgumentError(
                f"options['prompt'] must be one prompt (str) or a list of {self.num_envs} "
                f"prompts, got {type(prompt).__name__} {prompt!r:.60}"
            )
        return [
            self.core.resolve_prompt(p, f"options['prompt'][{i}]") for i, p in enumerate(prompt)
        ]

    def _start(self, slots: np.ndarray, prompt: Any, splits: list[str] | None = None) -> None:
        """Start new episodes in ``slots``: each slot draws from its own RNG and split."""
        splits = self._splits if splits is None else splits
        if not slots.size:
            return
        rows = np.empty((len(slots), self.core.max_prompt_tokens), dtype=np.int64)
        indices = np.full(len(slots), -1, dtype=np.int64)
        examples = []
        for k, s in enumerate(slots.tolist()):
            if prompt is not None:
                example, rows[k] = prompt[s]  # checked and encoded by _check_episode_option
            else:
                bank = self.core.bank(splits[s])
                indices[k] = self._rngs[s].integers(len(bank.examples))
                example, rows[k] = bank.draw(int(indices[k]))
            examples.append(example)
        ep = self._episodes
        ep.prompt_index[slots] = indices
        for s in slots.tolist():
            ep.split[s] = splits[s]
        ep.start(self.core, slots, rows, examples)
        self._slot_task[slots] = self._task_id

    def _batch_infos(
        self, infos: dict[str, Any], slots: np.ndarray, values: dict[str, list[Any]]
    ) -> dict[str, Any]:
        """Merge per-slot values into Gymnasium's vector info layout (arrays + ``_key`` masks)."""
        for key, column in values.items():
            if key not in infos:
                sample = column[0]
                if isinstance(sample, (bool, int, float)):
                    infos[key] = np.zeros(self.num_envs, dtype=type(sample))
                else:
                    infos[key] = np.full(self.num_envs, None, dtype=object)
                infos["_" + key] = np.zeros(self.num_envs, dtype=bool)
            infos[key][slots] = column
            infos["_" + key][slots] = True
        return infos

    def save_state(self) -> Any:
        """Every slot's episode, RNG and split, for :meth:`restore_state` (see
        :meth:`TextGenEnv.save_state`)."""
        rngs = [None if r is None else r.bit_generator.state for r in self._rngs]
        return (
            self._episodes.snapshot(self._all),
            self._needs_reset.copy(),
            rngs,
            list(self._splits),
            self._was_reset,
            self._slot_task.copy(),
            dict(self._task_cores),
        )

    def restore_state(self, state: Any) -> None:
        snap, needs_reset, rngs, self._splits, self._was_reset, tasks, cores = state
        self._slot_task[:], self._task_cores = tasks, {**cores, self._task_id: self.core}
        self._episodes.restore(snap)
        self._needs_reset[:] = needs_reset
        for rng, saved in zip(self._rngs, rngs):
            if saved is not None:
                rng.bit_generator.state = saved

    def current_completions(self) -> tuple[list[Example | None], list[str]]:
        """Each slot's example and decoded completion so far (cut at a stop string); an
        example is None before the slot's first reset. For wrappers."""
        return list(self._episodes.examples), self.core.completions(self._episodes, self._all)

    def action_masks(self) -> np.ndarray:
        """``(num_envs, V)`` bool, a read-only broadcast of the single environment's mask."""
        return np.broadcast_to(self.core.action_mask, (self.num_envs, self.core.vocab_size))

    def control_points(self) -> list[ControlPoints]:
        """One :class:`~textgym.envs.control_points.ControlPoints` per slot; ``max_tokens=0``
        for a slot whose episode ended (its next step starts a new one)."""
        if not self._was_reset:
            raise ResetNeeded("call envs.reset() before envs.control_points()")
        rule = self._env_class._control_rule
        return slot_points(rule, self.core, self._episodes, ~self._needs_reset)

    def render(self) -> tuple[str, ...] | None:
        if self.render_mode is not None and self.render_mode not in self.metadata["render_modes"]:
            return None  # a mode textgym does not draw (warned at construction)
        texts = tuple(self._episodes.render(self.core, s) for s in range(self.num_envs))
        if self.render_mode == "human":
            for s, text in enumerate(texts):
                print(f"[env {s}]\n{text}", end="")
            return None
        return texts
