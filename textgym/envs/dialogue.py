"""TextDialogue: goal-directed multi-turn dialogue as a Gymnasium environment, single and native
vector.

The agent writes one token per step; its turn ends at an end-of-turn token (or a per-turn token
budget), and then a simulated partner's reply (several tokens) is appended to the dialogue in the
same step. The observation keeps TextGen's layout (the opening left-padded in ``[0, P)``,
everything after it from ``P`` on) plus an ``agent_mask`` that marks the agent's own tokens, so
the same policies and learners work on both. The classes reuse TextGen's machinery: the core
(tokenizer, opening encoding, action checks) extends :class:`TextGenCore`, the episode state
extends :class:`Episodes`, and the environments subclass :class:`TextGenEnv` /
:class:`TextGenVectorEnv` (stepping, autoreset and infos come from there unchanged).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from textgym.envs.checks import MAX_TOKENS, check_int, check_render_mode, check_seed
from textgym.envs.control_points import dialogue_points
from textgym.envs.core import TextGenCore
from textgym.envs.episodes import MaskedEpisodes
from textgym.envs.text_gen import TextGenEnv, TextGenVectorEnv
from textgym.errors import InvalidArgumentError, ScorerError
from textgym.partners import Game, LMPartner, RulePartner, make_game
from textgym.retry import RetryPolicy, call_each
from textgym.tasks import Example, PromptSet, Task


def _no_scorer(prompts, completions, references):  # noqa: ARG001
    raise NotImplementedError("a dialogue's reward comes from its game, not from a text scorer")


class _DialogueCore(TextGenCore):
    """TextGen's core (tokenizer, opening encoding, action checks) plus the game and partner."""

    def __init__(
        self,
        game: str | Game,
        game_kwargs: dict[str, Any] | None,
        partner: Any,
        partner_kwargs: dict[str, Any] | None,
        tokenizer: Any,
        max_turns: int,
        max_turn_tokens: int | None,
        end_of_turn: str | None,
        max_reply_tokens: int | None,
        max_prompt_tokens: int | None,
        max_new_tokens: int | None,
        turn_cost: float,
        goal_reward: float,
        stop_on_eos: bool,
        chat_template: bool,
        mask_special_tokens: bool,
        vocab_size: int | None,
        retry: RetryPolicy | dict[str, Any] | None,
        on_failure: str,
    ):
        max_turns = check_int("max_turns", max_turns, 1, MAX_TOKENS, 8)
        for name, value, example in (
            ("max_turn_tokens", max_turn_tokens, 4),
            ("max_reply_tokens", max_reply_tokens, 8),
            ("max_prompt_tokens", max_prompt_tokens, 64),
            ("max_new_tokens", max_new_tokens, 64),
        ):
            if value is not None:
                check_int(name, value, 1, MAX_TOKENS, example)
        for name, value in (("turn_cost", turn_cost), ("goal_reward", goal_reward)):
            if (
                isinstance(value, (bool, np.bool_))
                or not isinstance(value, (int, float, np.integer, np.floating))
                or not np.isfinite(value)
            ):
                raise InvalidArgumentError(f"{name} must be a finite number, got {value!r:.60}")
        for name, value in (("game_kwargs", game_kwargs), ("partner_kwargs", partner_kwargs)):
            if value is not None and not isinstance(value, dict):
                raise InvalidArgumentError(f"{name} must be a dict, got {type(value).__name__}")
        if end_of_turn is not None and (not isinstance(end_of_turn, str) or not end_of_turn):
            raise InvalidArgumentError(
                f"end_of_turn must be a non-empty string or None, got {end_of_turn!r:.60}"
            )
        self.game = make_game(game, **(game_kwargs or {}))
        opening = Example(self.game.opening())
        prompts = PromptSet([opening], [opening], name=self.game.name)
        task = Task(self.game.name, prompts, _no_scorer, description=self.game.rules)
        # Budgets are known only once the tokenizer is: start with placeholders, set them below.
        super().__init__(
            task,
            None,
            None,
            tokenizer,
            1,
            max_prompt_tokens or 8192,
            "sparse",
            stop_on_eos,
            (),
            "error",
            chat_template,
            mask_special_tokens,
            vocab_size,
            retry=retry,
            on_failure=on_failure,
        )
        if partner_kwargs and partner != "lm":
            raise InvalidArgumentError("partner_kwargs apply to partner='lm' only")
        if partner == "rule":
            partner = RulePartner()
        elif partner == "lm":
            partner = LMPartner(**(partner_kwargs or {}))
        if not callable(partner):
            raise InvalidArgumentError(
                f"partner must be 'rule', 'lm' or a callable, got {partner!r}"
            )
        self.partner = partner
        if max_turns < 1:
            raise InvalidArgumentError(f"max_turns must be >= 1, got {max_turns}")
        self.max_turns = int(max_turns)
        self.turn_cost, self.goal_reward = float(turn_cost), float(goal_reward)

        tok = self.codec
        rows, lengths = self.encode_prompts([opening.prompt], "the game's opening")
        if max_prompt_tokens is None:
            self.max_prompt_tokens = int(lengths[0])
            rows = rows[:, -self.max_prompt_tokens :]
        self.opening_row = rows[0]

        # Tokens that end a turn: those whose text contains end_of_turn (special tokens never).
        self.end_of_turn = end_of_turn
        self.ends_turn = np.zeros(self.vocab_size, dtype=bool)
        if end_of_turn:
            pieces = tok.batch_decode([[i] for i in range(len(tok))])
            self.ends_turn[: len(tok)] = [end_of_turn in p for p in pieces]
            self.ends_turn[[i for i in tok.all_special_ids if i < self.vocab_size]] = False
            if not self.ends_turn.any():
                raise InvalidArgumentError(
                    f"no token of the tokenizer contains end_of_turn={end_of_turn!r}"
                )
        if max_turn_tokens is None:
            examples = self.game.example_turns()
            if not examples:
                raise InvalidArgumentError(
                    f"game {self.game.name!r} needs an explicit max_turn_tokens"
                )
            longest = max(len(self.encode_text(t)) for t in examples)
            max_turn_tokens = longest + (1 if end_of_turn else 0)
        if max_turn_tokens < 1:
            raise InvalidArgumentError(f"max_turn_tokens must be >= 1, got {max_turn_tokens}")
        self.max_turn_tokens = int(max_turn_tokens)

        budget = max_reply_tokens or getattr(partner, "max_reply_tokens", None)
        if budget is None:
            budget = max(len(self.encode_text(r)) for r in self.game.replies())
        self.max_reply_tokens = int(budget)
        self.replies: dict[str, np.ndarray] = {}
        self.turn_budget = self.max_turn_tokens + self.max_reply_tokens  # one exchange, at most
        if max_new_tokens is None:
            max_new_tokens = self.max_turns * self.turn_budget
        if max_new_tokens < self.turn_budget:
            raise InvalidArgumentError(
                f"max_new_tokens={max_new_tokens} cannot hold one turn and its reply "
                f"({self.max_turn_tokens} + {self.max_reply_tokens} tokens)"
            )
        self.max_new_tokens = int(max_new_tokens)

        self.observation_space = self.make_observation_space(self.max_new_tokens, agent_mask=True)

    def reply_ids(self, text: str) -> np.ndarray:
        """A reply's token ids (encoded once per distinct text), cut to the reply budget."""
        ids = self.replies.get(text)
        if ids is None:
            ids = np.asarray(self.encode_text(text), dtype=np.int64)[: self.max_reply_tokens]
            if len(self.replies) < 4096:  # rule replies repeat; an LM's need not
                self.replies[text] = ids
        return ids


class _DialogueEpisodes(MaskedEpisodes):
    """TextGen's episode arrays plus who wrote each token, the secret and the turn counters."""

    def __init__(self, core: _DialogueCore, n: int):
        super().__init__(core, n)
        self.secret = np.full(n, None, dtype=object)
        self.turns = np.zeros(n, dtype=np.int64)  # agent turns answered so far
        self.turn_start = np.zeros(n, dtype=np.int64)  # num_generated when this turn began
        self.solved = np.zeros(n, dtype=bool)

    def begin(self, core: _DialogueCore, slots: np.ndarray, secrets: list[Any]) -> None:
        """Start dialogues with ``secrets`` in ``slots``: the opening, nothing after it."""
        rows = np.broadcast_to(core.opening_row, (len(slots), core.max_prompt_tokens))
        self.start(core, slots, rows, [Example(core.game.opening())] * len(slots))
        self.secret[slots] = secrets
        self.turns[slots] = 0
        self.turn_start[slots] = 0
        self.solved[slots] = False

    def step(
        self, core: _DialogueCore, slots: np.ndarray, tokens: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Append the agent's ``tokens``; answer the slots whose turn ended; (rewards, term, trunc).
        If the partner fails, everything is put back: the state is as before the call."""
        position = self.append(core, slots, tokens)
        self.agent_mask[slots, position] = 1
        snap = None
        try:
            ended = self._turn_ended(core, slots, tokens)
            if ended.any():
                snap = self.snapshot(slots[ended])
            return self._finish_turns(core, slots, tokens, ended)
        except BaseException:
            if snap is not None:
                self.restore(snap)
            self.agent_mask[slots, position] = 0
            self.unappend(core, slots, position)
            raise

    _SLOT_ARRAYS = (
        *MaskedEpisodes._SLOT_ARRAYS,
        "secret",
        "turns",
        "turn_start",
        "solved",
    )

    def _turn_ended(self, core: _DialogueCore, slots: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        gave_up = tokens == core.eos_id if core.eos_id is not None else np.zeros(len(slots), bool)
        turn_length = self.num_generated[slots] - self.turn_start[slots]
        return ~gave_up & (core.ends_turn[tokens] | (turn_length >= core.max_turn_tokens))

    def _finish_turns(
        self, core: _DialogueCore, slots: np.ndarray, tokens: np.ndarray, ended: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:

        gave_up = tokens == core.eos_id if core.eos_id is not None else np.zeros(len(slots), bool)
        truncated = np.zeros(len(slots), dtype=bool)
        failed = np.zeros(len(slots), dtype=bool)
        if ended.any():
            which = np.flatnonzero(ended)
            truncated[which], failed[which] = self._answer(core, slots[which])
        terminated = (gave_up | self.solved[slots]) & ~failed
        truncated &= ~terminated
        done = terminated | truncated

        rewards = np.zeros(len(slots), dtype=np.float64)
        finished = slots[done & ~failed]
        if finished.size:
            win = self.solved[finished]
            score = np.where(win, core.goal_reward - core.turn_cost * self.turns[finished], 0.0)
            rewards[done & ~failed] = score
            self.score[finished] = score
            for s, text in zip(finished.tolist(), core.decode(self, finished)):
                self.completion[s] = text
        return rewards, terminated, truncated

    def _answer(self, core: _DialogueCore, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The partner answers ``slots`` (one call, retried per ``core.retry``); returns which
        of them ran out of turns, and which ended as failed because their reply still failed
        (``on_failure="end_episode"``; with ``"raise"`` the failure raises)."""
        P = core.max_prompt_tokens
        ends = P + self.num_generated[slots]
        tok = core.codec
        turns = tok.batch_decode(
            [self.input_ids[s, P + self.turn_start[s] : e].tolist() for s, e in zip(slots, ends)],
            skip_special_tokens=True,
        )
        secrets = self.secret[slots].tolist()
        self.solved[slots] = [core.game.solved(s, t) for s, t in zip(secrets, turns)]
        texts = core.decode(self, slots)
        histories = [core.game.opening() + h for h in texts]

        def call(items: list[int]) -> list[str]:
            try:
                replies = core.partner(
                    core.game,
                    *([values[i] for i in items] for values in (secrets, turns, histories)),
                )
            except Exception as e:
                raise ScorerError(
                    f"the partner of {core.game.name!r} raised {type(e).__name__}: {e}; the "
                    f"step changed nothing: call it again with the same action to retry"
                ) from e
            if isinstance(replies, str) or len(replies) != len(items):
                raise ScorerError(
                    f"the partner returned {len(replies)} replies for {len(items)} turns; it "
                    f"must return a list with one reply (str) per turn"
                )
            return [str(r) for r in replies]

        what = f"the partner of {core.game.name!r}"
        replies, failures = call_each(
            call, len(slots), core.retry, core.on_failure, self.fault_counts, what
        )
        failed = np.array([f is not None for f in failures])
        for s, end, reply, text, failure in zip(
            slots.tolist(), ends.tolist(), replies, texts, failures
        ):
            if failure is not None:
                self.end_failed(s, text, failure)
                continue
            ids = core.reply_ids(reply)
            self.input_ids[s, end : end + len(ids)] = ids
            self.attention_mask[s, end : end + len(ids)] = 1
            self.num_generated[s] += len(ids)
        answered = slots[~failed]
        self.turns[answered] += 1
        self.turn_start[answered] = self.num_generated[answered]
        room = core.max_new_tokens - self.num_generated[slots]
        return (self.turns[slots] >= core.max_turns) | (room < core.turn_budget) | failed, failed

    def reset_info(self, slots: np.ndarray) -> dict[str, list[Any]]:
        info = super().reset_info(slots)
        del info["prompt_index"]  # one opening per game
        return {**info, "secret": self.secret[slots].tolist()}

    def final_info(self, slots: np.ndarray) -> dict[str, list[Any]]:
        return {
            **super().final_info(slots),
            "turns": self.turns[slots].tolist(),
            "solved": self.solved[slots].tolist(),
            "secret": self.secret[slots].tolist(),
        }

    def render(self, core: _DialogueCore, slot: int) -> str:
        if self.examples[slot] is None:
            return "(not reset yet)"
        text = core.decode(self, np.array([slot]))[0]
        if self.completion[slot] is None:
            status = f"turn {self.turns[slot] + 1}/{core.max_turns}"
        elif self.failure[slot] is not None:
            status = f"failed: {self.failure[slot]}"
        else:
            outcome = "solved" if self.solved[slot] else "not solved"
            status = f"done, {outcome} in {self.turns[slot]} turns, score {self.score[slot]:.4f}"
        return f"{self.examples[slot].prompt}{text}\n[secret {self.secret[slot]!r}; {status}]\n"


class DialogueEnv(TextGenEnv):
    """A goal-directed dialogue with a simulated partner, written one token at a time.

    ## Description

    Each episode is one dialogue. The opening (the game's instructions and the partner's first
    message) is the prompt; the agent then writes its turn one token per step. A turn ends at an
    end-of-turn token (any token whose text contains ``end_of_turn``) or after
    ``max_turn_tokens`` tokens; in that same step the partner answers and its reply tokens are
    appended after the agent's turn. The partner knows a secret drawn at reset; the agent's goal
    is to find it in as few turns as possible.

    * ``TextDialogue-GuessNumber-v0``: guess a number in ``1..8`` (character tokenizer, 99
      tokens). The partner answers ``>`` (higher), ``<`` (lower), ``=`` (correct) or ``!`` (no
      number in range): ``Guess my number (1-8):4?>6?<5?=``.
    * ``TextDialogue-TwentyQuestions-v0``: find one of 16 objects by yes/no questions about six
      attributes and by naming it (SmolLM2 tokenizer): ``... Q: Is it an animal? Yes. Q: Is it
      big? No. Q: Is it a cat? Yes, it is the cat!``.

    The partner is rule-based and deterministic by default (``partner="rule"``);
    ``partner="lm"`` (or an :class:`~textgym.partners.LMPartner`) lets a causal LM write the
    replies, while the game's rules still decide whether the goal was reached.

    ## Action Space

    ``Discrete(V)``: the id of the agent's next token, as in :class:`TextGenEnv` (same checks,
    same ``action_masks()``: special tokens other than EOS are masked).

    ## Observation Space

    A ``Dict`` of fixed-shape ``int64`` arrays, ``L = P + T`` with ``P = max_prompt_tokens``
    and ``T = max_new_tokens``:

    | key              | shape | content                                                        |
    |------------------|-------|----------------------------------------------------------------|
    | ``input_ids``      | (L,)  | the opening left-padded in ``[0, P)``; from ``P`` on, the dialogue (agent and partner tokens in order), then padding |
    | ``attention_mask`` | (L,)  | 1 for real tokens, 0 for padding                              |
    | ``num_generated``  | (1,)  | tokens after ``P`` so far, the agent's and the partner's        |
    | ``agent_mask``     | (L,)  | 1 where the agent wrote the token (its actions), else 0         |

    Within a turn each step adds one token; the step that ends a turn adds the agent's last
    token and the partner's whole reply, so ``num_generated`` can jump by more than one. The
    agent's action at a step always lands at index ``P + num_generated`` of the observation it
    acted on; positions with ``agent_mask == 0`` after ``P`` are context, not actions.

    ## Rewards

    Sparse, at the last step: ``goal_reward - turn_cost * turns`` (1 - 0.1 per turn by default,
    the winning turn included) when the goal is reached, 0 otherwise (out of turns, out of
    tokens, or EOS).

    ## Starting State

    The opening, left-padded to ``P`` (by default ``P`` is the opening's length); a secret drawn
    uniformly with the environment's seeded RNG. ``reset(options=...)`` accepts ``{"secret":
    ...}`` (this episode only) and ``{"split": "train" | "test"}`` (accepted for API
    compatibility with TextGen: both splits draw from the same secrets).

    ## Episode End

    * Termination: the goal is reached (the partner's reply is still appended), or the agent
      emits EOS (it gives up; no reply).
    * Truncation: ``max_turns`` turns were answered without reaching the goal, or fewer than
      ``max_turn_tokens + max_reply_tokens`` tokens are left of ``T`` for another exchange.

    With the defaults ``T = max_turns * (max_turn_tokens + max_reply_tokens)``, so only
    ``max_turns`` truncates. Stepping after the end raises ``gymnasium.error.ResetNeeded``.

    ## Info

    ``reset`` returns ``prompt`` (the opening), ``secret`` and ``split``. The last step returns
    ``prompt``, ``completion`` (the decoded dialogue after the opening), ``score``,
    ``num_tokens``, ``turns``, ``solved`` and ``secret``; other steps return an empty dict.

    ## Arguments

    * ``game``: ``"guess_number"``, ``"twenty_questions"`` or a :class:`~textgym.partners.Game`.
    * ``game_kwargs``: arguments of the named game (``{"low": 1, "high": 16}`` for
      ``guess_number``; ``{"objects": {...}}`` for ``twenty_questions``).
    * ``partner``: ``"rule"`` (default), ``"lm"`` (an :class:`~textgym.partners.LMPartner`
      built from ``partner_kwargs``) or any callable ``partner(game, secrets, turns,
      histories) -> list[str]``.
    * ``partner_kwargs``: arguments of :class:`~textgym.partners.LMPartner`.
    * ``tokenizer``: a name for :func:`textgym.models.load_tokenizer` or a tokenizer (``"char"``).
    * ``max_turns``: agent turns before truncation (8).
    * ``max_turn_tokens``: tokens of one agent turn, end-of-turn included (default: what a
      typical turn needs, e.g. 2 for a number up to 9 plus ``?``).
    * ``end_of_turn``: text that ends a turn (``"?"``; None: turns end at the budget only).
    * ``max_reply_tokens``: tokens of one reply (default: the longest rule-based reply; an LM
      partner's ``max_reply_tokens``); longer replies are cut.
    * ``max_prompt_tokens``: ``P`` (default: the opening's length).
    * ``max_new_tokens``: ``T``, the dialogue budget (default: ``max_turns`` full exchanges).
    * ``turn_cost``, ``goal_reward``: the reward (0.1, 1.0).
    * ``stop_on_eos``: EOS ends the dialogue (True).
    * ``split``, ``chat_template``, ``mask_special_tokens``, ``vocab_size``, ``render_mode``: as
      in :class:`TextGenEnv`.
    * ``retry``, ``on_failure``: a partner call that raises, returns the wrong number of
      replies or runs past ``retry``'s ``timeout`` is retried per the
      :class:`~textgym.retry.RetryPolicy` (default: no retry); one that still fails raises
      :class:`~textgym.errors.ScorerError` and changes nothing (``on_failure="raise"``), or
      with ``on_failure="end_episode"`` ends its dialogue as failed: truncated, no reply, a
      reward of 0.0 that is a placeholder (never a score), final infos ``failed=True`` and
      ``failure="<error class>: <message>"`` (the other dialogues of a vector step are
      answered as usual). ``env.fault_counts`` counts what happened. As in
      :class:`TextGenEnv`, "Failing calls".

    ## Control points

    ``control_points()`` (see :class:`TextGenEnv`): EOS ends the dialogue; the end-of-turn
    tokens (``act_token_ids``) and the turn's last token (``max_tokens`` left of
    ``max_turn_tokens``) hand the turn to the partner, whose reply the same step appends.

    ## Vectorized environment

    ``gym.make_vec(id, num_envs=N)`` returns :class:`DialogueVectorEnv`: the per-token path is
    numpy over all slots; the partner answers all slots that ended a turn in a step in one
    call. Same arguments plus ``autoreset_mode`` (``NEXT_STEP``, ``SAME_STEP``, ``DISABLED``)
    and ``copy``; slot ``i`` of ``reset(seed=s)`` equals a single environment seeded ``s + i``.
    """

    _control_rule = staticmethod(dialogue_points)

    def __init__(
        self,
        game: str | Game = "guess_number",
        game_kwargs: dict[str, Any] | None = None,
        partner: Any = "rule",
        partner_kwargs: dict[str, Any] | None = None,
        tokenizer: Any = "char",
        max_turns: int = 8,
        max_turn_tokens: int | None = None,
        end_of_turn: str | None = "?",
        max_reply_tokens: int | None = None,
        max_prompt_tokens: int | None = None,
        max_new_tokens: int | None = None,
        turn_cost: float = 0.1,
        goal_reward: float = 1.0,
        stop_on_eos: bool = True,
        split: str = "train",
        chat_template: bool = False,
        mask_special_tokens: bool = True,
        vocab_size: int | None = None,
        render_mode: str | None = None,
        retry: RetryPolicy | dict[str, Any] | None = None,
        on_failure: str = "raise",
    ):
        render_mode = check_render_mode(type(self), render_mode)
        self.core = _DialogueCore(
            game,
            game_kwargs,
            partner,
            partner_kwargs,
            tokenizer,
            max_turns,
            max_turn_tokens,
            end_of_turn,
            max_reply_tokens,
            max_prompt_tokens,
            max_new_tokens,
            turn_cost,
            goal_reward,
            stop_on_eos,
            chat_template,
            mask_special_tokens,
            vocab_size,
            retry,
            on_failure,
        )
        self.observation_space = self.core.observation_space
        self.action_space = self.core.action_space
        self.render_mode = render_mode
        self.split = self.core.check_split(split)  # an unknown split fails now
        self._episode = _DialogueEpisodes(self.core, 1)
        self._slot = np.zeros(1, dtype=np.int64)
        self._needs_reset = True

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        seed = check_seed(seed)
        options = self.core.check_options(options, ("secret", "split"))
        secret = options.get("secret")
        if secret is not None:
            secret = self.core.game.check_secret(secret)
        gym.Env.reset(self, seed=seed)
        if secret is None:
            secret = self.core.game.sample_secret(self.np_random)
        self.split = options.get("split", self.split)
        ep = self._episode
        ep.split[0] = self.split
        ep.begin(self.core, self._slot, [secret])
        self._needs_reset = False
        if self.render_mode == "human":
            print(self.core.game.opening())
        info = {k: v[0] for k, v in ep.reset_info(self._slot).items()}
        return ep.observation(0), info


class DialogueVectorEnv(TextGenVectorEnv):
    """``num_envs`` dialogues stepped together (see :class:`DialogueEnv`, "Vectorized
    environment"). Takes the arguments of :class:`DialogueEnv` plus ``num_envs``,
    ``autoreset_mode`` and ``copy``. Options: ``{"secret": value or list of num_envs values}``,
    ``{"split": ...}`` and ``{"reset_mask": bool array}``. Infos follow Gymnasium's vector layout
    as in :class:`TextGenVectorEnv`."""

    _env_class = DialogueEnv
    _episode_option = "secret"

    def _check_episode_option(self, secret: Any) -> Any:
        if secret is None:
            return None
        if isinstance(secret, (list, tuple, np.ndarray)):
            if len(secret) != self.num_envs:
                raise InvalidArgumentError(
                    f"options['secret'] must be one secret or a list of {self.num_envs} secrets"
                )
            return [None if s is None else self.core.game.check_secret(s) for s in secret]
        return [self.core.game.check_secret(secret)] * self.num_envs

    def _start(self, slots: np.ndarray, secret: Any, splits: list[str] | None = None) -> None:
        """Start dialogues in ``slots``: each draws its secret from its own RNG (or is given one)."""
        splits = self._splits if splits is None else splits
        if not slots.size:
            return
        secrets = []
        for s in slots.tolist():
            given = None if secret is None else secret[s]
            secrets.append(self.core.game.sample_secret(self._rngs[s]) if given is None else given)
            self._episodes.split[s] = splits[s]
        self._episodes.begin(self.core, slots, secrets)


__all__ = ["DialogueEnv", "DialogueVectorEnv"]
