"""The shared core under the TextGen environments.

:class:`TextGenCore` holds everything the single and the vector environment share (task,
tokenizer, prompt encoding, stop rules, scoring); the episode slots it works on are
:class:`textgym.envs.episodes.Episodes`. The dialogue and tool-use environments extend both.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from gymnasium import spaces

from textgym.envs.checks import (
    MAX_TOKENS,
    MAX_VOCAB,
    check_bool,
    check_choice,
    check_int,
    check_text,
)
from textgym.errors import (
    InvalidArgumentError,
    InvalidTokenError,
    PromptTooLongError,
    ScorerError,
)
from textgym.retry import FaultCounts, RetryPolicy, call_each, check_on_failure
from textgym.rewards import run_scorer
from textgym.task_suite import make_task
from textgym.tasks import SPLITS, Example, LazyExamples, PromptSet, Scorer, Task

if TYPE_CHECKING:
    from textgym.envs.episodes import Episodes

REWARD_MODES = ("sparse", "dense")
PROMPT_OVERFLOW = ("truncate", "error")


class PromptBank:
    """The token ids of one split's prompts, left-padded to ``max_prompt_tokens``, encoded once.

    A list of examples is encoded whole when the bank is made (a prompt that cannot be encoded
    fails then); the examples of a generated task (:class:`~textgym.tasks.LazyExamples`) are
    made and encoded one at a time, when an episode first draws them.
    """

    def __init__(self, core: TextGenCore, examples: Sequence[Example], split: str):
        self.examples = examples
        self.core, self.split = core, split
        self.rows: dict[int, np.ndarray] | np.ndarray
        if isinstance(examples, LazyExamples):
            self.rows = {}
        else:
            self.rows, _ = core.encode_prompts([e.prompt for e in examples], split)

    def draw(self, index: int) -> tuple[Example, np.ndarray]:
        """Example ``index`` and its encoded prompt row."""
        example = self.examples[index]
        if isinstance(self.rows, dict) and index not in self.rows:
            rows, _ = self.core.encode_prompts([example.prompt], f"{self.split} example {index}")
            self.rows[index] = rows[0]
        return example, self.rows[index]


class TextGenCore:
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
        retry: RetryPolicy | dict[str, Any] | None = None,
        on_failure: str = "raise",
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
        retry, on_failure = RetryPolicy.coerce(retry), check_on_failure(on_failure)
        if scorer_timeout is not None:
            if retry.timeout not in (None, scorer_timeout):
                raise InvalidArgumentError(
                    f"scorer_timeout={scorer_timeout:g} and retry's timeout={retry.timeout:g} "
                    f"disagree; pass the timeout once, as retry=RetryPolicy(timeout=...)"
                )
            retry = dataclasses.replace(retry, timeout=scorer_timeout)
        if scorer is not None and not callable(scorer):
            raise InvalidArgumentError(
                f"scorer must be a callable scorer(prompts, completions, references), got "
                f"{type(scorer).__name__}"
            )
        if not isinstance(task, (str, Task)):
            raise InvalidArgumentError(
                f"task must be a task name (str) or a textgym.Task, got {type(task).__name__}"
            )
        self.retry, self.on_failure = retry, on_failure
        self.task_spec: tuple[str | Task, dict[str, Any]] = (task, dict(task_kwargs or {}))
        task = make_task(task, **(task_kwargs or {}))
        self.task_name = task.name
        self.prompts = PromptSet.coerce(prompts) if prompts is not None else task.prompts
        self.scorer = scorer if scorer is not None else task.scorer
        if isinstance(tokenizer, str):
            from textgym.fast_tokenizer import load_fast_tokenizer

            tokenizer = load_fast_tokenizer(tokenizer)
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
        # What the env encodes and decodes with; for a model's name a FastTokenizer, whose
        # Hugging Face tokenizer (``self.tokenizer``) is loaded only when someone asks for it.
        self.codec = tokenizer
        self.max_new_tokens = max_new_tokens
        self.max_prompt_tokens = max_prompt_tokens
        self.reward_mode = reward_mode
        self.prompt_overflow = prompt_overflow
        self.chat_template = chat_template
        self.stop_strings = tuple(stop_strings)

        tok = self.codec
        if vocab_size is not None and vocab_size < len(tok):
            raise InvalidArgumentError(
                f"vocab_size={vocab_size} is smaller than the tokenizer's vocabulary "
                f"({len(tok)} tokens): every token id must be an action; pass "
                f"vocab_size >= {len(tok)} (a model's padded vocabulary) or leave it None"
            )
        self.vocab_size = int(vocab_size) if vocab_size is not None else len(tok)
        self.eos_id = tok.eos_token_id if stop_on_eos else None
        if stop_on_eos and self.eos_id is None:
            raise InvalidArgumentError("the tokenizer has no eos_token_id; pass stop_on_eos=False")
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.pad_id = int(pad) if pad is not None else 0
        for name, token_id in (("eos", self.eos_id), ("pad", self.pad_id)):
            if token_id is not None and not 0 <= token_id < self.vocab_size:
                raise InvalidArgumentError(
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

        self.banks: dict[str, PromptBank] = {}
        self.observation_space = self.make_observation_space(max_new_tokens)
        self.action_space = spaces.Discrete(self.vocab_size)

    @property
    def tokenizer(self) -> Any:
        """The tokenizer: the object passed in, or for a name :func:`textgym.models.load_tokenizer`'s
        (a Hugging Face tokenizer, loaded on first use; the env itself encodes and decodes with
        the same ids through :attr:`codec`)."""
        hf = getattr(type(self.codec), "hf", None)
        return self.codec.hf if isinstance(hf, property) else self.codec

    def make_observation_space(self, max_new_tokens: int, agent_mask: bool = False) -> spaces.Dict:
        """The observation space for ``max_new_tokens``; ``agent_mask=True`` adds the mask of
        the agent's own tokens that the envs with environment-written tokens (a partner's
        replies, tool results) observe."""
        context = self.max_prompt_tokens + max_new_tokens
        fields = {
            "input_ids": spaces.Box(0, self.vocab_size - 1, (context,), np.int64),
            "attention_mask": spaces.Box(0, 1, (context,), np.int64),
            "num_generated": spaces.Box(0, max_new_tokens, (1,), np.int64),
        }
        if agent_mask:
            fields["agent_mask"] = spaces.Box(0, 1, (context,), np.int64)
        return spaces.Dict(fields)

    def encode_text(self, text: str) -> list[int]:
        """``text``'s token ids without special tokens (a reply or a tool result, encoded once).

        Special-token *text* in it (``<|im_end|>``, ``<eos>``) is encoded as ordinary text, never
        as the special token: what a program printed or a partner wrote cannot end the episode's
        turn or restructure the agent's context."""
        try:
            encoding = self.codec(text, add_special_tokens=False, split_special_tokens=True)
        except TypeError:  # a tokenizer without the option: refuse what it would let through
            encoding = self.codec(text, add_special_tokens=False)
            if set(encoding["input_ids"]) & set(self.codec.all_special_ids):
                raise InvalidArgumentError(
                    f"{type(self.codec).__name__} encodes special-token text in {text!r:.60} "
                    "as special tokens and does not take split_special_tokens=True; use a "
                    "Hugging Face tokenizer or add that option to this one"
                ) from None
        return list(encoding["input_ids"])

    # -- prompts -------------------------------------------------------------------------------

    def bank(self, split: str) -> PromptBank:
        if split not in self.banks:
            self.banks[split] = PromptBank(self, self.prompts[split], split)
        return self.banks[split]

    def encode_prompts(self, texts: list[str], where: str) -> tuple[np.ndarray, np.ndarray]:
        """Left-padded ``(len(texts), max_prompt_tokens)`` ids and the true lengths."""
        for k, text in enumerate(texts):
            check_text(f"prompt {k} of {where}", text)
        tok = self.codec
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
                if seq.count(unk) > texts[k].count(unk_text):  # more than its literal text
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

    def prompt_arrays(self, prompts: Sequence[str | Example]) -> dict[str, np.ndarray]:
        """``prompts`` as ``reset`` puts them in ``[0, P)``: ``input_ids`` and
        ``attention_mask``, ``(len(prompts), P)`` int64 (see ``TextGenEnv.encode_prompts``)."""
        if isinstance(prompts, (str, Example)) or not isinstance(prompts, Sequence):
            raise InvalidArgumentError(
                f"prompts must be a list of str or textgym.Example, got "
                f"{type(prompts).__name__} {prompts!r:.60}"
            )
        texts = []
        for k, prompt in enumerate(prompts):
            if not isinstance(prompt, (str, Example)):
                raise InvalidArgumentError(
                    f"prompts[{k}] must be a str or a textgym.Example, got "
                    f"{type(prompt).__name__} {prompt!r:.60}"
                )
            texts.append(prompt.prompt if isinstance(prompt, Example) else prompt)
        rows, _ = self.encode_prompts(texts, "prompts")
        return {"input_ids": rows, "attention_mask": prompt_mask(rows, self.pad_id)}

    def completion_arrays(self, completions: Sequence[str]) -> dict[str, np.ndarray]:
        """``completions`` as an episode that generated them holds them in ``[P, P + T)``:
        ``input_ids`` and ``attention_mask``, ``(len(completions), T)`` int64, each text's tokens
        then EOS (when episodes stop at EOS), cut to ``T``, then padding."""
        if isinstance(completions, str) or not isinstance(completions, Sequence):
            raise InvalidArgumentError(
                f"completions must be a list of str, got {type(completions).__name__} "
                f"{completions!r:.60}"
            )
        texts = list(completions)
        bad = [k for k, text in enumerate(texts) if not isinstance(text, str)]
        if bad:
            k = bad[0]
            raise InvalidArgumentError(
                f"completions[{k}] must be a str, got {type(texts[k]).__name__} {texts[k]!r:.60}"
            )
        for k, text in enumerate(texts):
            check_text(f"completions[{k}]", text)
        ids = self.codec(texts, add_special_tokens=False)["input_ids"] if texts else []
        budget = self.max_new_tokens
        input_ids = np.full((len(texts), budget), self.pad_id, dtype=np.int64)
        attention_mask = np.zeros((len(texts), budget), dtype=np.int64)
        eos = [] if self.eos_id is None else [self.eos_id]
        for k, seq in enumerate(ids):
            seq = (list(seq) + eos)[:budget]
            input_ids[k, : len(seq)] = seq
            attention_mask[k, : len(seq)] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask}

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

    def with_task(self, task: str | Task, task_kwargs: dict[str, Any]) -> TextGenCore:
        """A copy that plays ``task`` (its prompts and scorer; ``task_spec`` records it as given),
        every non-empty split encoded now: a task that cannot be played fails before any change."""
        made = make_task(task, **task_kwargs)
        core = copy.copy(self)
        core.task_spec = (task, dict(task_kwargs))
        core.task_name, core.prompts, core.scorer = made.name, made.prompts, made.scorer
        core.banks = {}
        for split in SPLITS:
            if made.prompts.splits.get(split):
                core.bank(split)
        return core

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

    def decode(self, ep: Episodes, slots: np.ndarray) -> list[str]:
        """The generated text of ``slots`` so far, special tokens skipped."""
        start = self.max_prompt_tokens
        seqs = [ep.input_ids[s, start : start + ep.num_generated[s]].tolist() for s in slots]
        return self.codec.batch_decode(seqs, skip_special_tokens=True)

    def completions(self, ep: Episodes, slots: np.ndarray) -> list[str]:
        """Decoded completions of ``slots``, cut before the first stop string."""
        texts = self.decode(ep, slots)
        if self.stop_strings:
            texts = [_cut_at_stop(t, self.stop_strings) for t in texts]
        return texts

    def hit_stop_string(self, ep: Episodes, slots: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """Which of ``slots`` now contain a stop string in their completion."""
        hit = np.zeros(len(slots), dtype=bool)
        maybe = np.flatnonzero(self.stop_token[tokens])
        if maybe.size:
            texts = self.decode(ep, slots[maybe])
            hit[maybe] = [any(s in t for s in self.stop_strings) for t in texts]
        return hit

    @property
    def reports_outcomes(self) -> bool:
        """Whether the scorer also labels each answer (a verifiable task's checker: correct,
        partial, wrong or format_error), reported as ``info["outcome"]`` at the episode's end."""
        return callable(getattr(getattr(self, "scorer", None), "score_with_outcomes", None))

    def score(
        self, ep: Episodes, slots: np.ndarray
    ) -> tuple[list[str], np.ndarray, list[str | None] | None, list[str | None]]:
        """The completions of ``slots``, their scores, (:attr:`reports_outcomes`) labels and
        failures (see :meth:`score_texts`)."""
        texts = self.completions(ep, slots)
        return (texts, *self.score_texts([ep.examples[s] for s in slots], texts, ep.fault_counts))

    def score_texts(
        self, examples: Sequence[Example], texts: Sequence[str], counts: FaultCounts
    ) -> tuple[np.ndarray, list[str | None] | None, list[str | None]]:
        """Score finished completions of ``examples`` as an episode's end does, under the
        :attr:`retry` policy: float32 scores, the checker's outcome labels (None when the
        scorer gives none) and one failure per text (None: scored).

        With ``on_failure="raise"`` a scorer that still fails raises
        :class:`~textgym.errors.ScorerError`; with ``"end_episode"`` a text whose scoring
        failed (alone: :func:`~textgym.retry.call_each`) gets a NaN score, label None and
        ``"<error class>: <message>"``."""

        def call(items: list[int]) -> list[tuple[float, str | None]]:
            scores, labels = self.score_once(
                [examples[i] for i in items], [texts[i] for i in items]
            )
            return list(zip(scores.tolist(), labels or [None] * len(items)))

        what = f"the scorer of task {self.task_name!r}"
        results, failures = call_each(call, len(texts), self.retry, self.on_failure, counts, what)
        scores = np.array([np.nan if r is None else r[0] for r in results], dtype=np.float32)
        labels = [None if r is None else r[1] for r in results]
        return scores, (labels if self.reports_outcomes else None), failures

    def score_once(
        self, examples: Sequence[Example], texts: Sequence[str]
    ) -> tuple[np.ndarray, list[str] | None]:
        """One checked scorer call (:func:`~textgym.rewards.run_scorer`) and the checker's
        outcome labels (None when the scorer gives none)."""
        scorer, labels = self.scorer, []
        if self.reports_outcomes:

            def scorer(prompts, completions, references):
                scores, outcomes = self.scorer.score_with_outcomes(prompts, completions, references)
                labels[:] = list(outcomes)
                return scores

        scores = run_scorer(
            scorer,
            self.task_name,
            [e.prompt for e in examples],
            texts,
            [e.reference for e in examples],
        )
        if not self.reports_outcomes:
            return scores, None
        if len(labels) != len(texts) or not all(isinstance(o, str) for o in labels):
            raise ScorerError(
                f"the scorer of task {self.task_name!r} returned {len(labels)} outcome labels "
                f"for {len(texts)} completions; score_with_outcomes must return one string each"
            )
        return scores, labels


def prompt_mask(rows: np.ndarray, pad_id: int) -> np.ndarray:
    """The attention mask of left-padded prompt rows: 1 from a row's first real token on (pad
    ids inside a prompt included), 0 before."""
    first = np.argmax(rows != pad_id, axis=1)
    return (np.arange(rows.shape[1]) >= first[:, None]).astype(np.int64)


def _cut_at_stop(text: str, stop_strings: tuple[str, ...]) -> str:
    cut = min((i for i in (text.find(s) for s in stop_strings) if i >= 0), default=len(text))
    return text[:cut]
