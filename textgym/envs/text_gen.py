"""TextGen: token-level text generation as a Gymnasium environment, single and natively vectorised.

Both environments keep their episodes in the same fixed-shape numpy arrays, one row per episode
slot (:class:`_Episodes`), and share all prompt, token and scoring logic through
:class:`_TextGenCore`; the vector environment steps every slot with array operations, the single
environment is the same machinery with one slot. That sharing is what makes ``N`` single
environments and one vector environment of ``N`` slots produce identical data.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from textgym.errors import (
    InvalidArgumentError,
    InvalidTokenError,
    PromptTooLongError,
    ResetNeeded,
)
from textgym.rewards import run_scorer
from textgym.tasks import SPLITS, Example, PromptSet, Scorer, Task, make_task

REWARD_MODES = ("sparse", "dense")
PROMPT_OVERFLOW = ("truncate", "error")
# Sizes past these are typos, not experiments: refuse them before allocating anything.
MAX_TOKENS = 1 << 20  # max_new_tokens, max_prompt_tokens
MAX_VOCAB = 1 << 24
MAX_NUM_ENVS = 1 << 20
MAX_EPISODE_BYTES = 16 << 30  # the episode arrays of a vector env


def check_int(name: str, value: Any, low: int, high: int, example: int) -> int:
    """``value`` as an ``int`` in ``[low, high]`` (Python or numpy integers, not bools)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise InvalidArgumentError(
            f"{name} must be an integer, got {type(value).__name__} {value!r:.60}; "
            f"pass e.g. {name}={example}"
        )
    if not low <= value <= high:
        raise InvalidArgumentError(
            f"{name} must be between {low} and {high}, got {value}; pass e.g. {name}={example}"
        )
    return int(value)


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidArgumentError(
            f"{name} must be True or False, got {type(value).__name__} {value!r:.60}"
        )
    return bool(value)


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise InvalidArgumentError(f"{name} must be one of {list(choices)}, got {value!r:.60}")
    return value


def check_seed(seed: Any, name: str = "seed") -> int | None:
    """A reset seed: None or a non-negative Python/numpy integer."""
    if seed is None:
        return None
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise InvalidArgumentError(
            f"{name} must be None or a non-negative integer, got {type(seed).__name__} {seed!r:.60}"
        )
    if seed < 0:
        raise InvalidArgumentError(f"{name} must be a non-negative integer, got {seed}")
    return int(seed)


def check_render_mode(cls: type, render_mode: Any) -> Any:
    """Gymnasium's own environments accept an unknown render mode with a warning (SB3's
    ``make_vec_env`` passes ``"rgb_array"``); textgym does the same. ``render()`` then returns
    None."""
    if render_mode is not None and render_mode not in cls.metadata["render_modes"]:
        if not isinstance(render_mode, str):
            raise InvalidArgumentError(
                f"render_mode must be None or a string, got {type(render_mode).__name__}"
            )
        warnings.warn(
            f"{cls.__name__} renders text only: render_mode={render_mode!r} is not one of "
            f"{cls.metadata['render_modes']}, so render() returns None",
            stacklevel=3,
        )
    return render_mode


class _PromptBank:
    """The token ids of one split's prompts, left-padded to ``max_prompt_tokens``, encoded once."""

    def __init__(self, core: _TextGenCore, examples: list[Example], split: str):
        self.examples = examples
        self.rows, self.lengths = core.encode_prompts([e.prompt for e in examples], split)


class _TextGenCore:
    """Everything both environments share: task, tokenizer, prompt encoding, stop rules, scoring."""

    def __init__(
        self,
        task: str | Task,
        prompts: Any,
        scorer: Scorer | None,
        tokenizer: Any,
        max_new_tokens: int,
        max_prompt_tokens: int,
        reward_mode: str,
        stop_on_eos: bool,
        stop_strings: Sequence[str],
        prompt_overflow: str,
        chat_template: bool,
        mask_special_tokens: bool,
        vocab_size: int | None,
        task_kwargs: dict[str, Any] | None = None,
        scorer_timeout: float | None = None,
    ):
        # Cheap type and range checks first: nothing is loaded or allocated for a bad argument.
        max_new_tokens = check_int("max_new_tokens", max_new_tokens, 1, MAX_TOKENS, 32)
        max_prompt_tokens = check_int("max_prompt_tokens", max_prompt_tokens, 1, MAX_TOKENS, 64)
        reward_mode = check_choice("reward_mode", reward_mode, REWARD_MODES)
        prompt_overflow = check_choice("prompt_overflow", prompt_overflow, PROMPT_OVERFLOW)
        stop_on_eos = check_bool("stop_on_eos", stop_on_eos)
        chat_template = check_bool("chat_template", chat_template)
        mask_special_tokens = check_bool("mask_special_tokens", mask_special_tokens)
        if vocab_size is not None:
            vocab_size = check_int("vocab_size", vocab_size, 2, MAX_VOCAB, 49152)
        if isinstance(stop_strings, (str, bytes)) or not isinstance(stop_strings, Sequence):
            raise InvalidArgumentError(
                f"stop_strings must be a list of strings, got {type(stop_strings).__name__} "
                f"{stop_strings!r:.60}; pass e.g. stop_strings=[{stop_strings!r:.20}]"
            )
        if any(not isinstance(s, str) or not s for s in stop_strings):
            raise InvalidArgumentError(
                f"stop_strings must be non-empty strings, got {list(stop_strings)!r:.80}"
            )
        if task_kwargs is not None and not isinstance(task_kwargs, dict):
            raise InvalidArgumentError(
                f"task_kwargs must be a dict of the task's arguments, got "
                f"{type(task_kwargs).__name__}"
            )
        if scorer_timeout is not None:
            ok = isinstance(scorer_timeout, (int, float, np.integer, np.floating))
            if isinstance(scorer_timeout, (bool, np.bool_)) or not ok or not scorer_timeout > 0:
                raise InvalidArgumentError(
                    f"scorer_timeout must be None or a positive number of seconds, got "
                    f"{scorer_timeout!r:.60}"
                )
            scorer_timeout = float(scorer_timeout)
        if scorer is not None and not callable(scorer):
            raise InvalidArgumentError(
                f"scorer must be a callable scorer(prompts, completions, references), got "
                f"{type(scorer).__name__}"
            )
        if not isinstance(task, (str, Task)):
            raise InvalidArgumentError(
                f"task must be a task name (str) or a textgym.Task, got {type(task).__name__}"
            )
        self.scorer_timeout = scorer_timeout
        task = make_task(task, **(task_kwargs or {}))
        self.task_name = task.name
        self.prompts = PromptSet.coerce(prompts) if prompts is not None else task.prompts
        self.scorer = scorer if scorer is not None else task.scorer
        if isinstance(tokenizer, str):
            from textgym.models import load_tokenizer

            tokenizer = load_tokenizer(tokenizer)
        missing = [
            a
            for a in ("batch_decode", "eos_token_id", "all_special_ids", "__len__")
            if not hasattr(tokenizer, a)
        ] + ([] if callable(tokenizer) else ["__call__"])
        if missing:
            raise InvalidArgumentError(
                f"tokenizer must be a tokenizer name (e.g. 'char', 'smollm2-135m') or a "
                f"Hugging Face-style tokenizer object; {type(tokenizer).__name__} lacks {missing}"
            )
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.max_prompt_tokens = max_prompt_tokens
        self.reward_mode = reward_mode
        self.prompt_overflow = prompt_overflow
        self.chat_template = chat_template
        self.stop_strings = tuple(stop_strings)

        tok = self.tokenizer
        if vocab_size is not None and vocab_size < len(tok):
            raise InvalidArgumentError(
                f"vocab_size={vocab_size} is smaller than the tokenizer's vocabulary "
                f"({len(tok)} tokens): every token id must be an action; pass "
                f"vocab_size >= {len(tok)} (a model's padded vocabulary) or leave it None"
            )
        self.vocab_size = int(vocab_size) if vocab_size is not None else len(tok)
        self.eos_id = tok.eos_token_id if stop_on_eos else None
        if stop_on_eos and self.eos_id is None:
            raise ValueError("the tokenizer has no eos_token_id; pass stop_on_eos=False")
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.pad_id = int(pad) if pad is not None else 0
        for name, token_id in (("eos", self.eos_id), ("pad", self.pad_id)):
            if token_id is not None and not 0 <= token_id < self.vocab_size:
                raise ValueError(
                    f"the tokenizer's {name} token id {token_id} is outside the vocabulary of "
                    f"size {self.vocab_size}; pass a larger vocab_size"
                )

        # Tokens that may never be chosen: special tokens other than EOS, and ids past the
        # tokenizer (models often pad their embedding matrix to a multiple of 64).
        self.action_mask = np.ones(self.vocab_size, dtype=bool)
        if mask_special_tokens:
            special = [i for i in tok.all_special_ids if i != self.eos_id and i < self.vocab_size]
            self.action_mask[special] = False
        self.action_mask[len(tok) :] = False

        # Stop strings need decoded text, which costs a Python call per episode; only decode
        # after tokens that share a character with some stop string.
        self.stop_token = np.zeros(self.vocab_size, dtype=bool)
        if self.stop_strings:
            chars = set("".join(self.stop_strings))
            pieces = tok.batch_decode([[i] for i in range(len(tok))])
            self.stop_token[: len(tok)] = [bool(chars & set(p)) for p in pieces]

        self.banks: dict[str, _PromptBank] = {}
        context = max_prompt_tokens + max_new_tokens
        self.observation_space = spaces.Dict(
            {
                "input_ids": spaces.Box(0, self.vocab_size - 1, (context,), np.int64),
                "attention_mask": spaces.Box(0, 1, (context,), np.int64),
                "num_generated": spaces.Box(0, max_new_tokens, (1,), np.int64),
            }
        )
        self.action_space = spaces.Discrete(self.vocab_size)

    # -- prompts -------------------------------------------------------------------------------

    def bank(self, split: str) -> _PromptBank:
        if split not in self.banks:
            self.banks[split] = _PromptBank(self, self.prompts[split], split)
        return self.banks[split]

    def encode_prompts(self, texts: list[str], where: str) -> tuple[np.ndarray, np.ndarray]:
        """Left-padded ``(len(texts), max_prompt_tokens)`` ids and the true lengths."""
        tok = self.tokenizer
        if self.chat_template:
            texts = [
                tok.apply_chat_template(
                    [{"role": "user", "content": t}], tokenize=False, add_generation_prompt=True
                )
                for t in texts
            ]
        ids = tok(list(texts), add_special_tokens=not self.chat_template)["input_ids"]
        unk = getattr(tok, "unk_token_id", None)
        added = (
            {tok.bos_token_id, tok.eos_token_id, tok.pad_token_id}
            if hasattr(tok, "bos_token_id")
            else set()
        )
        if unk is not None and unk not in added:  # else unk may be a legitimately added token
            unk_text = getattr(tok, "unk_token", None) or "\0"
            for k, seq in enumerate(ids):
                if unk in seq and unk_text not in texts[k]:
                    raise InvalidArgumentError(
                        f"prompt {k} of {where} holds text the tokenizer cannot encode (it "
                        f"maps to {unk_text!r}): {texts[k][:80]!r}; remove those characters "
                        f"or use a tokenizer that covers them"
                    )
        budget = self.max_prompt_tokens
        rows = np.full((len(ids), budget), self.pad_id, dtype=np.int64)
        lengths = np.zeros(len(ids), dtype=np.int64)
        too_long = [k for k, seq in enumerate(ids) if len(seq) > budget]
        if too_long:
            k = too_long[0]
            what = (
                f"{len(too_long)} prompt(s) of {where} are longer than max_prompt_tokens={budget} "
                f"(e.g. {len(ids[k])} tokens: {texts[k][:80]!r})"
            )
            if self.prompt_overflow == "error":
                raise PromptTooLongError(
                    f"{what}; raise max_prompt_tokens or pass prompt_overflow='truncate'"
                )
            warnings.warn(
                f"{what}; keeping their last {budget} tokens. Raise max_prompt_tokens to keep "
                f"whole prompts, or pass prompt_overflow='error' to fail instead",
                stacklevel=4,
            )
        for k, seq in enumerate(ids):
            if not seq:
                raise InvalidArgumentError(
                    f"prompt {k} of {where} encodes to no tokens: {texts[k]!r}; give a "
                    f"non-empty prompt"
                )
            seq = seq[-budget:]  # keep the end: it is what the completion continues
            rows[k, budget - len(seq) :] = seq
            lengths[k] = len(seq)
        return rows, lengths

    def resolve_prompt(
        self, prompt: str | Example, where: str = "options['prompt']"
    ) -> tuple[Example, np.ndarray]:
        """An ad-hoc prompt passed through ``reset(options={"prompt": ...})``."""
        if not isinstance(prompt, (str, Example)):
            raise InvalidArgumentError(
                f"{where} must be a str or a textgym.Example, got {type(prompt).__name__} "
                f"{prompt!r:.60}"
            )
        example = prompt if isinstance(prompt, Example) else Example(prompt)
        rows, _ = self.encode_prompts([example.prompt], where)
        return example, rows[0]

    def check_options(self, options: dict[str, Any] | None, allowed: tuple[str, ...]) -> dict:
        """Reject a non-dict, unknown reset options and unknown splits before any state changes;
        encodes the split's prompts (once) so that drawing from it cannot fail later."""
        if options is not None and not isinstance(options, dict):
            raise InvalidArgumentError(
                f"options must be a dict (or None), got {type(options).__name__} "
                f"{options!r:.60}; pass e.g. options={{'split': 'test'}}"
            )
        options = dict(options or {})
        unknown = sorted(map(repr, set(options) - set(allowed)))
        if unknown:
            raise InvalidArgumentError(
                f"unknown reset option(s) {', '.join(unknown)}; known options: {list(allowed)}"
            )
        if "split" in options:
            self.check_split(options["split"], "options['split']")
        return options

    def check_split(self, split: Any, name: str = "split") -> str:
        """A known, non-empty split whose prompts encode (encoded once, here)."""
        if not isinstance(split, str) or split not in SPLITS:
            raise InvalidArgumentError(f"{name} must be one of {list(SPLITS)}, got {split!r:.60}")
        self.bank(split)  # raises for an empty split or prompts that cannot be encoded
        return split

    # -- actions -------------------------------------------------------------------------------

    def check_actions(self, actions: Any, num_envs: int | None) -> np.ndarray:
        """Validate token ids: integer type, right shape, inside the vocabulary."""
        arr = np.asarray(actions)
        if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
            raise InvalidTokenError(
                f"actions must be integer token ids, got {arr.dtype} ({actions!r:.80}); "
                f"pass an int or an integer numpy array"
            )
        expected = () if num_envs is None else (num_envs,)
        if arr.shape != expected:
            raise InvalidTokenError(
                f"expected actions of shape {expected}, got {arr.shape}; "
                f"pass one token id per environment"
            )
        bad = (arr < 0) | (arr >= self.vocab_size)
        if bad.any():
            where = "" if num_envs is None else f" for env {int(np.flatnonzero(bad)[0])}"
            value = int(arr.reshape(-1)[np.flatnonzero(bad.reshape(-1))[0]])
            raise InvalidTokenError(
                f"token id {value}{where} is outside the vocabulary: valid ids are "
                f"0..{self.vocab_size - 1} (action_space {self.action_space})"
            )
        return arr.astype(np.int64, copy=False)

    # -- episodes ------------------------------------------------------------------------------

    def decode(self, ep: _Episodes, slots: np.ndarray) -> list[str]:
        """The generated text of ``slots`` so far, special tokens skipped."""
        start = self.max_prompt_tokens
        seqs = [ep.input_ids[s, start : start + ep.num_generated[s]].tolist() for s in slots]
        return self.tokenizer.batch_decode(seqs, skip_special_tokens=True)

    def completions(self, ep: _Episodes, slots: np.ndarray) -> list[str]:
        """Decoded completions of ``slots``, cut before the first stop string."""
        texts = self.decode(ep, slots)
        if self.stop_strings:
            texts = [_cut_at_stop(t, self.stop_strings) for t in texts]
        return texts

    def hit_stop_string(self, ep: _Episodes, slots: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """Which of ``slots`` now contain a stop string in their completion."""
        hit = np.zeros(len(slots), dtype=bool)
        maybe = np.flatnonzero(self.stop_token[tokens])
        if maybe.size:
            texts = self.decode(ep, slots[maybe])
            hit[maybe] = [any(s in t for s in self.stop_strings) for t in texts]
        return hit

    def score(self, ep: _Episodes, slots: np.ndarray) -> tuple[list[str], np.ndarray]:
        texts = self.completions(ep, slots)
        examples = [ep.examples[s] for s in slots]
        scores = run_scorer(
            self.scorer,
            self.task_name,
            [e.prompt for e in examples],
            texts,
            [e.reference for e in examples],
            timeout=getattr(self, "scorer_timeout", None),
        )
        return texts, scores


def _cut_at_stop(text: str, stop_strings: tuple[str, ...]) -> str:
    cut = min((i for i in (text.find(s) for s in stop_strings) if i >= 0), default=len(text))
    return text[:cut]


class _Episodes:
    """``n`` episode slots: prompt ids left-padded in ``[0, P)``, generated ids from ``P`` on."""

    def __init__(self, core: _TextGenCore, n: int):
        context = core.max_prompt_tokens + core.max_new_tokens
        self.input_ids = np.full((n, context), core.pad_id, dtype=np.int64)
        self.attention_mask = np.zeros((n, context), dtype=np.int64)
        self.num_generated = np.zeros(n, dtype=np.int64)
        self.potential = np.zeros(n, dtype=np.float64)  # last dense-reward potential
        self.examples: list[Example | None] = [None] * n
        self.prompt_index = np.full(n, -1, dtype=np.int64)
        self.split: list[str] = ["train"] * n
        self.completion: list[str | None] = [None] * n
        self.score = np.zeros(n, dtype=np.float64)

    def start(
        self, core: _TextGenCore, slots: np.ndarray, rows: np.ndarray, examples: list[Example]
    ) -> None:
        """Put new prompts (``rows``: left-padded ids) into ``slots`` and clear the rest."""
        budget = core.max_prompt_tokens
        self.input_ids[slots, :budget] = rows
        self.input_ids[slots, budget:] = core.pad_id
        self.attention_mask[slots, :budget] = rows != core.pad_id
        # Left padding: everything from the first real token on is prompt, pad ids included.
        first = np.argmax(self.attention_mask[slots, :budget], axis=1)
        self.attention_mask[slots, :budget] = np.arange(budget) >= first[:, None]
        self.attention_mask[slots, budget:] = 0
        self.num_generated[slots] = 0
        self.potential[slots] = 0.0
        self.score[slots] = 0.0
        for s, e in zip(slots.tolist(), examples):
            self.examples[s] = e
            self.completion[s] = None

    def observation(self, slots: np.ndarray | slice, copy: bool = True) -> dict[str, np.ndarray]:
        obs = {
            "input_ids": self.input_ids[slots],
            "attention_mask": self.attention_mask[slots],
            "num_generated": self.num_generated[slots, None],
        }
        return {k: v.copy() for k, v in obs.items()} if copy else obs

    def append(self, core: _TextGenCore, slots: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """Write one token per slot after its last one; returns the indices written."""
        position = core.max_prompt_tokens + self.num_generated[slots]
        self.input_ids[slots, position] = tokens
        self.attention_mask[slots, position] = 1
        self.num_generated[slots] += 1
        return position

    def unappend(self, core: _TextGenCore, slots: np.ndarray, position: np.ndarray) -> None:
        """Undo :meth:`append` (a step whose scorer or partner failed changes nothing)."""
        self.input_ids[slots, position] = core.pad_id
        self.attention_mask[slots, position] = 0
        self.num_generated[slots] -= 1

    #: per-slot arrays a snapshot copies (subclasses add theirs)
    _SLOT_ARRAYS: tuple[str, ...] = (
        "input_ids",
        "attention_mask",
        "num_generated",
        "potential",
        "score",
        "prompt_index",
    )
    _SLOT_LISTS = ("examples", "split", "completion")

    def snapshot(self, slots: np.ndarray) -> dict[str, Any]:
        """A copy of ``slots``' state, for :meth:`restore` if a step fails half-way."""
        snap = {name: getattr(self, name)[slots].copy() for name in self._SLOT_ARRAYS}
        for name in self._SLOT_LISTS:
            values = getattr(self, name)
            snap[name] = [values[s] for s in slots.tolist()]
        snap["slots"] = slots.copy()
        return snap

    def restore(self, snap: dict[str, Any]) -> None:
        """Put back a :meth:`snapshot`, in place (observation views stay valid)."""
        slots = snap["slots"]
        for name in self._SLOT_ARRAYS:
            getattr(self, name)[slots] = snap[name]
        for name in self._SLOT_LISTS:
            values = getattr(self, name)
            for s, v in zip(slots.tolist(), snap[name]):
                values[s] = v

    def step(
        self, core: _TextGenCore, slots: np.ndarray, tokens: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Append ``tokens`` to ``slots``; returns (rewards, terminated, truncated) for them.
        If the scorer fails, the tokens are taken back: the state is as before the call."""
        position = self.append(core, slots, tokens)
        try:
            return self._finish_step(core, slots, tokens)
        except BaseException:
            self.unappend(core, slots, position)
            raise

    def _finish_step(
        self, core: _TextGenCore, slots: np.ndarray, tokens: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        terminated = np.zeros(len(slots), dtype=bool)
        if core.eos_id is not None:
            terminated |= tokens == core.eos_id
        if core.stop_strings:
            terminated |= core.hit_stop_string(self, slots, tokens)
        truncated = ~terminated & (self.num_generated[slots] >= core.max_new_tokens)
        done = terminated | truncated

        rewards = np.zeros(len(slots), dtype=np.float64)
        # Sparse: the score once, at the end. Dense: the change of the potential
        # phi_t = score(completion so far), phi_0 = 0, so the rewards sum to the final score.
        scored = np.arange(len(slots)) if core.reward_mode == "dense" else np.flatnonzero(done)
        if scored.size:
            texts, scores = core.score(self, slots[scored])  # may raise: nothing changed yet
            potential = scores.astype(np.float64)
            rewards[scored] = potential - self.potential[slots[scored]]
            self.potential[slots[scored]] = potential
            for k, i in enumerate(scored.tolist()):
                if done[i]:
                    self.completion[slots[i]] = texts[k]
                    self.score[slots[i]] = potential[k]
        return rewards, terminated, truncated

    def reset_info(self, slots: np.ndarray) -> dict[str, list[Any]]:
        return {
            "prompt": [self.examples[s].prompt for s in slots],
            "prompt_index": self.prompt_index[slots].tolist(),
            "split": [self.split[s] for s in slots],
        }

    def final_info(self, slots: np.ndarray) -> dict[str, list[Any]]:
        return {
            "prompt": [self.examples[s].prompt for s in slots],
            "completion": [self.completion[s] for s in slots],
            "score": self.score[slots].tolist(),
            "num_tokens": self.num_generated[slots].tolist(),
        }

    def render(self, core: _TextGenCore, slot: int) -> str:
        if self.examples[slot] is None:
            return "(not reset yet)"
        text = self.completion[slot]
        if text is None:
            text = core.completions(self, np.array([slot]))[0]
            status = f"{self.num_generated[slot]}/{core.max_new_tokens} tokens"
        else:
            status = f"done, score {self.score[slot]:.4f}"
        return f"prompt:     {self.examples[slot].prompt}\ncompletion: {text}\n[{status}]\n"


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
    (its EOS id if it has none).

    ## Rewards

    ``reward_mode="sparse"`` (default): 0 at every step and the task's score of the completion at
    the last step. ``reward_mode="dense"``: the change of the potential
    ``phi_t = score(completion after t tokens)`` with ``phi_0 = 0``; the rewards of an episode
    sum to the same final score (potential-based shaping), at the price of one scorer call per
    step. Scores are checked: a scorer that raises, returns NaN/inf, the wrong shape or anything
    but real numbers (complex values, tensors that track gradients, strings) raises
    :class:`~textgym.errors.ScorerError` naming the task, the value and the text; with
    ``scorer_timeout`` a scorer that does not return in time raises
    :class:`~textgym.errors.ScorerTimeoutError`. Either way the step changed nothing (the token
    is not appended): call ``step`` again with the same action to retry a transient failure.

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
      ``textgym.tasks.TASKS``) or a :class:`~textgym.tasks.Task`.
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
    * ``scorer_timeout``: seconds a scorer call may take (None: no limit). The scorer then runs
      in a worker thread; past the limit ``step`` raises
      :class:`~textgym.errors.ScorerTimeoutError`, leaves the episode as it was (retry with the
      same action), and the late result is discarded.

    Bad arguments raise :class:`~textgym.errors.InvalidArgumentError` (a ``ValueError`` and a
    ``TypeError``) naming the argument, before anything is loaded or allocated.

    ## Vectorized environment

    ``gym.make_vec("TextGen-v0", num_envs=N)`` returns :class:`TextGenVectorEnv`, which steps all
    ``N`` episodes with numpy operations and scores all episodes that end in a step with one
    scorer call; it takes the same arguments plus ``autoreset_mode``.
    """

    metadata = {"render_modes": ["ansi", "human"], "render_fps": 4}

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
    ):
        render_mode = check_render_mode(type(self), render_mode)
        self.core = _TextGenCore(
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
        )
        self.observation_space = self.core.observation_space
        self.action_space = self.core.action_space
        self.render_mode = render_mode
        # Fail now, not at the first reset, on an unknown or empty split or unencodable prompts.
        self.split = self.core.check_split(split)
        self._episode = _Episodes(self.core, 1)
        self._slot = np.zeros(1, dtype=np.int64)
        self._needs_reset = True

    @property
    def tokenizer(self) -> Any:
        return self.core.tokenizer

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
            example, row = bank.examples[index], bank.rows[index]
        self.split = split
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
        reward, terminated, truncated = ep.step(self.core, self._slot, token)
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

    def render(self) -> str | None:
        if self.render_mode is not None and self.render_mode not in self.metadata["render_modes"]:
            return None  # a mode textgym does not draw (warned at construction)
        text = self._episode.render(self.core, 0)
        if self.render_mode == "human":
            print(text, end="")
            return None
        return text


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

    @property
    def tokenizer(self) -> Any:
        return self.core.tokenizer

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
        r, term, trunc = ep.step(self.core, active, actions[active])
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
        return ep.observation(slice(None), self.copy), rewards, terminated, truncated, infos

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
                example, rows[k] = bank.examples[indices[k]], bank.rows[indices[k]]
            examples.append(example)
        ep = self._episodes
        ep.prompt_index[slots] = indices
        for s in slots.tolist():
            ep.split[s] = splits[s]
        ep.start(self.core, slots, rows, examples)

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
        )

    def restore_state(self, state: Any) -> None:
        snap, needs_reset, rngs, self._splits, self._was_reset = state
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

    def render(self) -> tuple[str, ...] | None:
        if self.render_mode is not None and self.render_mode not in self.metadata["render_modes"]:
            return None  # a mode textgym does not draw (warned at construction)
        texts = tuple(self._episodes.render(self.core, s) for s in range(self.num_envs))
        if self.render_mode == "human":
            for s, text in enumerate(texts):
                print(f"[env {s}]\n{text}", end="")
            return None
        return texts
