"""Text turns over the token core: the agent acts a whole turn (a string) on any textgym env.

* :class:`TextTurns`: a wrapper whose action is one turn of text. It tokenizes the turn once,
  steps the token environment with those ids one by one, and returns the text so far, the turn's
  reward, and in ``info`` the exact token trajectory (the token environment's own ids), a mask of
  the agent's tokens and the per-turn rewards.
* :class:`VectorTextTurns`: ``N`` such environments stepped together, one batched tokenizer call
  per step. A textgym vector environment steps every slot at every step and has no way to leave
  a slot alone, so a slot whose turn is shorter could not wait for the others; the vector twin
  therefore drives ``N`` single token environments, which also makes it equal ``N`` wrapped
  single environments by construction.

Both play each token environment through :class:`_TurnPlayer`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from textgym.envs import DialogueEnv, TextGenEnv, TextGenVectorEnv
from textgym.envs.checks import check_text, vector_seeds
from textgym.errors import InvalidArgumentError, ResetNeeded
from textgym.wrappers import TextObservation


def _turn_ids(k: int, turn: Any, vocab_size: int | None) -> list[int] | None:
    """A turn given as token ids (a list, tuple or 1-D array of ints) as a list, checked; None
    for a turn that is not a sequence (text, or something else, judged by the caller)."""
    if isinstance(turn, str) or not isinstance(turn, (list, tuple, np.ndarray)):
        return None
    ids = np.asarray(turn)
    if (
        ids.ndim != 1
        or ids.size == 0
        or not (np.issubdtype(ids.dtype, np.integer) and not np.issubdtype(ids.dtype, np.bool_))
    ):
        raise InvalidArgumentError(
            f"turn {k}: token ids must be a non-empty 1-D sequence of ints, got {turn!r:.60}"
        )
    if vocab_size is not None and not ((ids >= 0) & (ids < vocab_size)).all():
        raise InvalidArgumentError(
            f"turn {k}: token ids must lie in [0, {vocab_size}) (the env's vocabulary), got "
            f"{ids.tolist()!r:.60}"
        )
    return ids.tolist()


def _encode_turns(
    tokenizer: Any, turns: Sequence[Any], vocab_size: int | None = None
) -> list[list[int]]:
    """The token ids of each turn (one tokenizer call for the text turns,
    ``add_special_tokens=False``; a turn given as token ids is taken as it is, checked against
    ``vocab_size``). A turn that is neither, holds text UTF-8 cannot encode (a lone surrogate),
    encodes to no tokens, or holds text the tokenizer maps to its unknown token (beyond the
    unknown token's own text) raises :class:`~textgym.errors.InvalidArgumentError`."""
    given = {k: _turn_ids(k, turn, vocab_size) for k, turn in enumerate(turns)}
    given = {k: ids for k, ids in given.items() if ids is not None}
    texts = [turn for k, turn in enumerate(turns) if k not in given]
    for k, turn in enumerate(turns):
        if k in given:
            continue
        if not isinstance(turn, str):
            raise InvalidArgumentError(
                f"turn {k} must be a str (the turn's text) or a list of token ids, got "
                f"{type(turn).__name__} {turn!r:.60}"
            )
        check_text(f"turn {k}", turn)
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    text_ids = iter([list(seq) for seq in encoded])
    ids = [given[k] if k in given else next(text_ids) for k in range(len(turns))]
    unk = getattr(tokenizer, "unk_token_id", None)
    unk_text = getattr(tokenizer, "unk_token", None) or "\0"
    for k, (turn, seq) in enumerate(zip(turns, ids)):
        if k in given:
            continue
        if not seq:
            raise InvalidArgumentError(
                f"turn {k} encodes to no tokens: {turn!r:.60}; a turn must hold text (to end the "
                f"episode, send the tokenizer's EOS text, env.eos_text)"
            )
        if unk is not None and seq.count(unk) > turn.count(unk_text):  # not all literal text
            raise InvalidArgumentError(
                f"turn {k} holds text the tokenizer cannot encode (it maps to {unk_text!r}): "
                f"{turn[:80]!r}; remove those characters"
            )
    return ids


def _token_env(env: Any) -> TextGenEnv:
    """The textgym token environment under ``env``, which must still return token observations."""
    base = getattr(env, "unwrapped", None)
    if isinstance(base, TextGenVectorEnv):
        raise InvalidArgumentError(
            "TextTurns wraps a single textgym environment; for N environments pass a list of "
            "single ones to VectorTextTurns (a textgym vector env steps every slot at every step)"
        )
    if not isinstance(base, TextGenEnv):
        raise InvalidArgumentError(
            f"a single textgym environment (TextGenEnv, DialogueEnv) is needed, got "
            f"{type(base).__name__}"
        )
    obs_space = env.observation_space
    if not isinstance(obs_space, spaces.Dict) or "input_ids" not in obs_space.spaces:
        raise InvalidArgumentError(
            f"the environment must return token observations (input_ids, attention_mask, ...), "
            f"got observation_space {obs_space}; wrap the token environment, not a text one"
        )
    return base


def _text_spaces(env: gym.Env) -> tuple[spaces.Text, spaces.Text]:
    """(action space, observation space): TextObservation's text space, and turns over its
    characters (the tokenizer's tokens' and the prompts'), at least one character long."""
    observation_space = TextObservation(env).observation_space
    action_space = spaces.Text(
        observation_space.max_length, min_length=1, charset=observation_space.character_set
    )
    return action_space, observation_space


def _check_discount(discount: Any) -> float:
    ok = isinstance(discount, (int, float, np.integer, np.floating))
    if isinstance(discount, (bool, np.bool_)) or not ok or not 0.0 <= discount <= 1.0:
        raise InvalidArgumentError(f"discount must be a number in [0, 1], got {discount!r:.60}")
    return float(discount)


class _TurnPlayer:
    """One token environment played a turn at a time: the per-episode turn state, the stepping
    loop and the trajectory. :class:`TextTurns` has one, :class:`VectorTextTurns` one per slot."""

    def __init__(self, env: gym.Env, discount: float):
        self.env = env
        self.base = _token_env(env)
        self.discount = discount
        # A dialogue's turn ends where the env ends it (DialogueEnv's rule: an end-of-turn token
        # or max_turn_tokens agent tokens, never EOS, which ends the episode). The rule is read
        # here, not from the observation, because a partner's reply may be empty; the tests
        # check it against the env.
        self.dialogue = isinstance(self.base, DialogueEnv)
        self.obs: dict[str, np.ndarray] | None = None
        self.turn_rewards: list[float] = []
        self.turn_length = 0  # agent tokens of the dialogue turn still open

    def reset(self, **kwargs: Any) -> tuple[str, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self.obs, self.turn_rewards, self.turn_length = obs, [], 0
        return self.text(), {**info, **self.trajectory(), "turn_rewards": []}

    def save(self) -> Any:
        return self.base.save_state(), self.obs, list(self.turn_rewards), self.turn_length

    def restore(self, saved: Any) -> None:
        state, self.obs, self.turn_rewards, self.turn_length = saved
        self.base.restore_state(state)

    def play(self, ids: list[int]) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Step ``ids`` until they run out, the episode ends or (dialogue) the turn ends."""
        core = self.base.core
        reward, used, turn_length = 0.0, 0, self.turn_length
        terminated = truncated = False
        obs, info = self.obs, {}
        for token in ids:
            obs, r, terminated, truncated, info = self.env.step(token)
            used += 1
            reward += float(r)
            if terminated or truncated:
                break
            if self.dialogue:
                turn_length += 1
                if token != core.eos_id and (
                    core.ends_turn[token] or turn_length >= core.max_turn_tokens
                ):
                    turn_length = 0  # the partner has answered; the next turn is a new one
                    break
        self.obs, self.turn_length = obs, turn_length
        self.turn_rewards.append(reward)
        info = {
            **info,
            "turn_ids": list(ids),
            "unused_tokens": len(ids) - used,
            **self.trajectory(),
            "turn_rewards": list(self.turn_rewards),
        }
        if terminated or truncated:
            info["turn_returns"] = self.returns()
        return self.text(), reward, bool(terminated), bool(truncated), info

    def text(self) -> str:
        """The prompt (or opening) and everything after it, decoded (as TextObservation)."""
        examples, texts = self.base.current_completions()
        return examples[0].prompt + texts[0]

    def trajectory(self) -> dict[str, list[int]]:
        """The token environment's real ids (no padding) and which of them the agent wrote."""
        real = self.obs["attention_mask"] == 1
        token_ids = self.obs["input_ids"][real]
        if "agent_mask" in self.obs:
            agent = self.obs["agent_mask"][real]
        else:  # TextGen: every token after the prompt is the agent's
            agent = np.zeros(len(token_ids), dtype=np.int64)
            agent[len(token_ids) - int(self.obs["num_generated"][0]) :] = 1
        return {"token_ids": token_ids.tolist(), "agent_mask": agent.tolist()}

    def returns(self) -> list[float]:
        """The discounted return from each turn on: ``G_k = r_k + discount * G_{k+1}``."""
        out, g = [], 0.0
        for r in reversed(self.turn_rewards):
            g = r + self.discount * g
            out.append(g)
        return out[::-1]


def _play_all(
    players: list[_TurnPlayer], turns: list[list[int]]
) -> list[tuple[str, float, bool, bool, dict[str, Any]]]:
    """Each player plays its turn; if one fails (a scorer or partner error), every player is put
    back as it was before the call, and the error is raised."""
    saved = [p.save() for p in players]
    try:
        return [p.play(ids) for p, ids in zip(players, turns)]
    except BaseException:
        for p, state in zip(players, saved):
            p.restore(state)
        raise


class TextTurns(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Act a whole turn of text at a time on a textgym token environment, with exact token ids.

    ## Description

    The action is a string: one turn. The wrapper tokenizes it once with the environment's
    tokenizer (``add_special_tokens=False``) and steps the token environment with those ids one
    by one. It stops early when the episode ends (EOS, a stop string, the token budget, a
    dialogue's goal or turn limit) or, in a dialogue (:class:`~textgym.envs.DialogueEnv`), when
    the agent's turn ends (an end-of-turn token or ``max_turn_tokens``) and the partner has
    answered. The token environment is the single source of truth: the trajectory in ``info`` is
    its own ``input_ids``, never a re-tokenization of the concatenated text, so turns keep their
    own tokens even where a BPE tokenizer would merge across the boundary (SmolLM2 encodes
    ``"hel"`` + ``"lo"`` as two tokens, ``"hello"`` as one).

    A turn may also be token ids (a list or 1-D array of ints in the env's vocabulary): they are
    stepped as they are, with no tokenizer in between. Text is tokenized per turn, so text that
    came from decoding ids may not re-encode to those ids (a token that ends inside a UTF-8
    character decodes to U+FFFD; the tokenizer may merge differently): an LM agent that has the
    ids it sampled should pass them (or use the token env itself, or TRL's ``rollout_func``).

    In a TextGen environment a turn is a piece of the completion: turns append to it until the
    episode ends. In a dialogue, a turn that does not end the dialogue turn (no end-of-turn
    text, under ``max_turn_tokens``) leaves it open, and the next action continues it.

    ## Action Space

    ``gymnasium.spaces.Text`` cannot express arbitrary strings (its charset is a finite set and
    its length bounded). The action space is ``Text(min_length=1, max_length=M,
    charset=C)`` with ``C`` the characters the tokenizer's tokens decode to plus those of the
    prompts, and ``M`` the observation's ``max_length``: what ``sample()`` draws and
    ``contains()`` accepts. ``step`` accepts any ``str`` the tokenizer can encode, also outside
    the space (other Unicode characters a byte-level BPE encodes, longer turns). These raise
    :class:`~textgym.errors.InvalidArgumentError` before any state changes: a non-string, an
    empty turn (or one that encodes to no tokens: an empty turn is an error, not an end of
    turn), and text the tokenizer maps to its unknown token (e.g. ``"é"`` for the character
    tokenizer).

    **Ending the episode.** There is no separate "end" flag: a turn ends the episode by
    containing the tokenizer's EOS text, ``env.eos_text`` (``"<|im_end|>"`` for SmolLM2,
    ``"<eos>"`` for the character tokenizer), which tokenizes to the EOS id like any special
    token's text. The EOS token then does what it does in the token environment (with
    ``stop_on_eos``, the default: the episode ends, terminated; in a dialogue the agent gives
    up), and the turn's tokens after it are unused.

    ## Observation Space

    The text so far, ``prompt + completion`` (in a dialogue, the opening and the dialogue after
    it, decoded with special tokens skipped, cut at a stop string), the same string and the same
    ``Text`` space as :class:`~textgym.wrappers.TextObservation`. The token arrays stay in
    ``info`` and in ``env.unwrapped``.

    ## Rewards

    The turn's reward: the sum of the token environment's rewards over the steps of the turn
    (sparse: the score on the last turn, 0 before; dense: the change of the score over the
    turn; a dialogue: the game's reward on the last turn).

    ## Episode End

    The token environment's: ``terminated``/``truncated`` as its last step in the turn returned
    them. A turn with more tokens than the budget left is cut where the environment truncates
    (``max_new_tokens``; in a dialogue, the turn ends after ``max_turn_tokens`` and the partner
    answers), and ``info["unused_tokens"]`` says how many of the turn's tokens were not used.
    Stepping after the end raises ``gymnasium.error.ResetNeeded``. If a step fails (a scorer or
    partner error), the token environment (``env.unwrapped``) and this wrapper are put back to
    where they were before the turn (not the state of wrappers in between, such as
    :class:`~textgym.wrappers.PotentialShaping`): call ``step`` again with the same turn to
    retry.

    ## Info

    ``reset`` returns the token environment's reset info plus ``token_ids``, ``agent_mask`` and
    ``turn_rewards`` (empty). Every ``step`` returns the token environment's info of the turn's
    last step (at the end: ``completion``, ``score``, ...) plus:

    * ``turn_ids``: the turn's token ids, as tokenized (all of them, used or not);
    * ``unused_tokens``: how many of ``turn_ids`` were not stepped (the episode or the dialogue
      turn ended first);
    * ``token_ids``: the whole trajectory, the token environment's ``input_ids`` without
      padding: the prompt's tokens, then every token after it (agent and partner);
    * ``agent_mask``: aligned with ``token_ids``, 1 for the tokens the agent's turns
      contributed, 0 for the prompt's and the partner's;
    * ``turn_rewards``: the reward of every turn of the episode so far;
    * ``turn_returns`` (last step only): the discounted return from each turn on,
      ``G_k = r_k + discount * G_{k+1}``, one discount step per turn.

    ## Arguments

    * ``env``: a single textgym environment (any ``TextGen-*`` or ``TextDialogue-*`` id, or a
      :class:`~textgym.envs.TextGenEnv` / :class:`~textgym.envs.DialogueEnv`), possibly under
      wrappers that keep its token observations.
    * ``discount``: the per-turn discount of ``turn_returns``, in ``[0, 1]`` (1.0).
    """

    def __init__(self, env: gym.Env, discount: float = 1.0):
        discount = _check_discount(discount)
        self._player = _TurnPlayer(env, discount)
        gym.utils.RecordConstructorArgs.__init__(self, discount=discount)  # gym.make can rebuild it
        gym.Wrapper.__init__(self, env)
        self.action_space, self.observation_space = _text_spaces(env)

    @property
    def eos_text(self) -> str | None:
        """The tokenizer's EOS text: a turn that contains it ends the episode there."""
        return self._player.base.tokenizer.eos_token

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        return self._player.reset(seed=seed, options=options)

    def step(self, action: str | Sequence[int]) -> tuple[str, float, bool, bool, dict[str, Any]]:
        base = self._player.base
        (ids,) = _encode_turns(base.tokenizer, [action], int(base.action_space.n))
        (out,) = _play_all([self._player], [ids])
        return out


class VectorTextTurns(VectorEnv):
    """``N`` :class:`TextTurns` environments stepped together: one turn (a string) per slot.

    ``VectorTextTurns(envs)`` takes a list of ``N`` distinct single textgym environments of the
    same kind, budgets and tokenizer object (e.g. ``[gym.make(id) for _ in range(N)]``), not a
    textgym vector environment: that one steps every slot at every step, so a slot whose turn
    ends first could not wait for the others. Each step tokenizes all turns in one tokenizer
    call and checks them before any slot changes; if a slot's scorer or partner fails, every
    slot is put back. The data equal those of ``N`` single :class:`TextTurns` environments
    (``reset(seed=s)`` seeds slot ``i`` with ``s + i``).

    Observations are a tuple of ``N`` strings (``batch_space`` of the ``Text`` space), actions a
    sequence of ``N`` strings. Infos follow Gymnasium's vector layout (``infos[key]`` over the
    slots, ``infos["_" + key]`` marks the slots that have it; lists such as ``token_ids`` are
    object arrays). ``autoreset_mode``: ``NEXT_STEP`` (default: a finished slot resets at the
    next step and ignores its turn, which may then be anything), ``SAME_STEP`` (the last
    observation and info are in ``infos["final_obs"]`` and ``infos["final_info"]``) or
    ``DISABLED`` (reset finished slots with ``reset(options={"reset_mask": mask})``). Other
    reset options are passed to every reset slot's environment. ``discount`` as in
    :class:`TextTurns`.
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        envs: Sequence[gym.Env],
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        discount: float = 1.0,
    ):
        if isinstance(envs, gym.Env) or not isinstance(envs, Sequence) or not envs:
            raise InvalidArgumentError(
                f"envs must be a non-empty list of single textgym environments, got "
                f"{type(envs).__name__}; pass e.g. [gym.make(env_id) for _ in range(4)]"
            )
        if len({id(e) for e in envs}) != len(envs):
            raise InvalidArgumentError("envs must be distinct environments, not one env repeated")
        try:
            autoreset_mode = AutoresetMode(autoreset_mode)
        except ValueError:
            raise InvalidArgumentError(
                f"autoreset_mode must be one of {[m.value for m in AutoresetMode]}, got "
                f"{autoreset_mode!r:.60}"
            ) from None
        discount = _check_discount(discount)
        self._players = [_TurnPlayer(env, discount) for env in envs]
        first = self._players[0]
        for k, p in enumerate(self._players[1:], start=1):
            same = type(p.base) is type(first.base) and p.base.tokenizer is first.base.tokenizer
            if not same or p.env.observation_space != first.env.observation_space:
                raise InvalidArgumentError(
                    f"envs[{k}] differs from envs[0] in its kind, tokenizer or budgets; the slots "
                    f"of a vector environment must be alike"
                )
        self._tokenizer = first.base.tokenizer
        self.num_envs = len(envs)
        self.autoreset_mode = autoreset_mode
        self.metadata = {**self.metadata, "autoreset_mode": autoreset_mode}
        self.single_action_space, self.single_observation_space = _text_spaces(first.env)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self._texts = [""] * self.num_envs
        self._autoreset = np.zeros(self.num_envs, dtype=bool)  # finished at the last step
        self._was_reset = False

    @property
    def envs(self) -> list[gym.Env]:
        """The slots' token environments."""
        return [p.env for p in self._players]

    def reset(
        self,
        *,
        seed: int | Sequence[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[tuple[str, ...], dict[str, Any]]:
        if options is not None and not isinstance(options, dict):
            raise InvalidArgumentError(f"options must be a dict or None, got {options!r:.60}")
        options = dict(options or {})
        mask = options.pop("reset_mask", None)
        if mask is None:
            slots = list(range(self.num_envs))
        else:
            mask = np.asarray(mask)
            if mask.shape != (self.num_envs,) or mask.dtype != np.bool_ or not mask.any():
                raise InvalidArgumentError(
                    f"options['reset_mask'] must be a bool array of shape ({self.num_envs},) "
                    f"selecting at least one env, got {mask.dtype} of shape {mask.shape}"
                )
            slots = np.flatnonzero(mask).tolist()
        seeds = vector_seeds(seed, self.num_envs)
        infos: dict[str, Any] = {}
        for i in slots:
            self._texts[i], info = self._players[i].reset(seed=seeds[i], options=options or None)
            infos = self._add_info(infos, info, i)
        self._autoreset[slots] = False
        self._was_reset = True
        return tuple(self._texts), infos

    def step(
        self, actions: Sequence[str]
    ) -> tuple[tuple[str, ...], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if not self._was_reset:
            raise ResetNeeded("call envs.reset() before envs.step()")
        if not isinstance(actions, (list, tuple, np.ndarray)) or len(actions) != self.num_envs:
            raise InvalidArgumentError(
                f"actions must be a list of {self.num_envs} turns (str), got {actions!r:.60}"
            )
        restarting = self._autoreset.copy()
        if restarting.any() and self.autoreset_mode == AutoresetMode.DISABLED:
            raise ResetNeeded(
                f"env {int(np.flatnonzero(restarting)[0])}'s episode has ended and autoreset is "
                f"disabled; call envs.reset(options={{'reset_mask': mask}}) first"
            )
        playing = np.flatnonzero(~restarting).tolist()  # NEXT_STEP: the others ignore their turn
        vocab = int(self._players[0].base.action_space.n)
        turns = _encode_turns(self._tokenizer, [actions[i] for i in playing], vocab)
        results = _play_all([self._players[i] for i in playing], turns)

        rewards = np.zeros(self.num_envs, dtype=np.float64)
        terminated = np.zeros(self.num_envs, dtype=bool)
        truncated = np.zeros(self.num_envs, dtype=bool)
        infos: dict[str, Any] = {}
        for i in np.flatnonzero(restarting).tolist():
            self._texts[i], info = self._players[i].reset()
            infos = self._add_info(infos, info, i)
        for i, (text, reward, term, trunc, info) in zip(playing, results):
            rewards[i], terminated[i], truncated[i] = reward, term, trunc
            self._texts[i] = text
            if (term or trunc) and self.autoreset_mode == AutoresetMode.SAME_STEP:
                infos = self._add_info(infos, {"final_obs": text, "final_info": info}, i)
                self._texts[i], info = self._players[i].reset()
            infos = self._add_info(infos, info, i)
        self._autoreset = (terminated | truncated) & (
            self.autoreset_mode != AutoresetMode.SAME_STEP
        )
        return tuple(self._texts), rewards, terminated, truncated, infos

    def render(self) -> tuple[Any, ...]:
        return tuple(p.env.render() for p in self._players)

    def close_extras(self, **kwargs: Any) -> None:
        for p in self._players:
            p.env.close()


__all__ = ["TextTurns", "VectorTextTurns"]
