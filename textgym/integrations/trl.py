"""TRL's ``GRPOTrainer`` on textgym ids, rewarded by textgym itself.

Single-turn ids (``TextGen-*``) use TRL's own generation::

    from trl import GRPOConfig, GRPOTrainer
    from textgym.integrations import trl as textgym_trl

    trainer = GRPOTrainer(
        model=model,
        reward_funcs=textgym_trl.reward_funcs("TextGen-v0"),
        train_dataset=textgym_trl.dataset("TextGen-v0"),
        processing_class=textgym_trl.processing_class("TextGen-v0"),
        args=GRPOConfig(max_completion_length=32, ...),  # the env's max_new_tokens
    )

Multi-turn ids (``TextDialogue-*``, or any id played as whole episodes) add
``rollout_func=textgym_trl.rollout_func(env_id)``: the env plays each episode, the partner's
tokens are masked out of the loss, and the reward is the episode's return.

* :func:`dataset`: the env's prompts as a ``datasets.Dataset`` (``prompt``, plus
  ``prompt_index`` and ``split``, which find the reference again).
* :func:`reward_funcs`: TRL reward functions. ``textgym_score`` replays each completion's token
  ids through the env (its stop strings, EOS and token budget) and scores the completions the
  env would score with one call of the env's scorer; after :func:`rollout_func` it returns the
  episode's return. ``textgym_success`` (optional): 1.0 when a verifiable task's checker says
  ``"correct"`` or a dialogue's goal was reached; log it with weight 0 (``reward_weights``).
* :func:`rollout_func`: a TRL ``rollout_func`` that samples from the trainer's model token by
  token and steps the env with each token, so the ids TRL trains on are the env's own.
* :func:`processing_class`: the Hugging Face tokenizer TRL needs, equal to the env's (the
  character tokenizer gets a ``tokenizers`` twin).

Why ``rollout_func`` and not ``environment_factory``: TRL 1.x's ``environment_factory`` exposes
an environment's methods as tools the model calls in its chat template's tool-call syntax. It
needs a chat template that renders tool calls (``GRPOTrainer`` rejects SmolLM2's, and the
character tokenizer has none), and TRL re-renders the conversation with that template, so the
tokens it trains on would not be the env's. A textgym dialogue is one token stream in which the
env decides where a turn ends; ``rollout_func`` lets the env own that stream.

TRL is imported inside the functions that need it: importing this module needs no ``trl``.
Written against TRL 1.x (``GRPOTrainer(reward_funcs=..., rollout_func=...)``, checked with
1.16); ``docs/trl.md`` says what is exact and what is not.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from textgym.char_tokenizer import CharTokenizer
from textgym.envs import DialogueEnv
from textgym.envs.checks import check_text
from textgym.errors import InvalidArgumentError
from textgym.integrations import vllm as textgym_vllm
from textgym.integrations.vllm import hf_tokenizer
from textgym.models import position_ids
from textgym.tasks import Example

#: the per-episode fields :func:`rollout_func` returns, which TRL passes to reward functions
RETURN_FIELD, SUCCESS_FIELD, SEED_FIELD = "textgym_return", "textgym_success", "textgym_seed"
FAILURE_FIELD = "textgym_failure"  # "<error class>: <message>" of a failed episode, else None


# -- data and tokenizer ------------------------------------------------------------------------


def dataset(env_id: str, split: str = "train", size: int | None = None, **env_kwargs: Any) -> Any:
    """The prompts of ``env_id``'s ``split`` as a ``datasets.Dataset``.

    Columns: ``prompt`` (the example's text, which TRL tokenizes into the env's prompt ids:
    plain text, or a one-message conversation ``[{"role": "user", "content": text}]`` when the
    env uses the chat template, which TRL then applies as the env does; with
    :func:`rollout_func` the env encodes its own prompt), ``prompt_index`` and ``split`` (where
    the example, and so its reference, is in ``env.unwrapped.prompts``: references never leave
    textgym). ``size``: the number of rows, cycling through the examples (None: each example
    once). A dialogue's split is its one opening, each row one episode: pass ``size`` (at least
    the prompts of one generation batch, ``generation_batch_size / num_generations``).
    ``env_kwargs`` as in ``gym.make``.
    """
    from datasets import Dataset

    env = gym.make(env_id, **env_kwargs)
    examples = env.unwrapped.prompts[split]
    dialogue = isinstance(env.unwrapped, DialogueEnv)
    env.close()
    if size is None and dialogue:
        raise InvalidArgumentError(
            f"{env_id} is a dialogue: every row is its opening, one episode each; pass size= "
            f"(the episodes of one epoch, e.g. size=256)"
        )
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise InvalidArgumentError(f"size must be a positive int or None, got {size!r:.60}")
    indices = [k % len(examples) for k in range(len(examples) if size is None else size)]
    chat = _uses_chat_template(env_id, env_kwargs)
    return Dataset.from_dict(
        {
            "prompt": [
                [{"role": "user", "content": examples[k].prompt}] if chat else examples[k].prompt
                for k in indices
            ],
            "prompt_index": indices,
            "split": [split] * len(indices),
        }
    )


def processing_class(env_id: str, **env_kwargs: Any) -> Any:
    """The tokenizer to pass as ``GRPOTrainer(processing_class=...)``: a private copy of the
    env's Hugging Face tokenizer, or for the character tokenizer a ``PreTrainedTokenizerFast``
    with the same ids, ``<bos>`` prepended as the env does, and the same decoding. Left
    padding, as TRL asks."""
    env = gym.make(env_id, **env_kwargs)
    tokenizer = env.unwrapped.tokenizer
    env.close()
    if isinstance(tokenizer, CharTokenizer):
        return hf_tokenizer(tokenizer)
    from transformers import PreTrainedTokenizerBase

    if not isinstance(tokenizer, PreTrainedTokenizerBase):
        raise InvalidArgumentError(
            f"{env_id}'s tokenizer is a {type(tokenizer).__name__}; TRL needs a Hugging Face "
            f"tokenizer (PreTrainedTokenizerBase) or textgym's CharTokenizer"
        )
    tokenizer = copy.deepcopy(tokenizer)  # load_tokenizer's object is shared: never mutate it
    tokenizer.padding_side = "left"
    return tokenizer


def _uses_chat_template(env_id: str, env_kwargs: dict[str, Any]) -> bool:
    return bool({**gym.spec(env_id).kwargs, **env_kwargs}.get("chat_template", False))


def _prompt_text(prompt: Any, name: str = "prompt") -> str:
    """A dataset prompt's (or a completion's) text: the string, or the last message's content;
    :class:`~textgym.errors.InvalidArgumentError` naming ``name`` for anything else, or for text
    UTF-8 cannot encode."""
    if isinstance(prompt, str):
        return check_text(name, prompt)
    if (
        isinstance(prompt, (list, tuple))
        and prompt
        and isinstance(prompt[-1], dict)
        and isinstance(prompt[-1].get("content"), str)
    ):
        return check_text(f"{name}'s last message", prompt[-1]["content"])
    raise InvalidArgumentError(
        f"{name} must be a str or a list of chat messages ending in one with a str 'content', "
        f"got {type(prompt).__name__} {prompt!r:.60}"
    )


def _check_batch(env_id: str, prompts: Any, completions: Any, kwargs: dict[str, Any]) -> int:
    """The batch size of a reward call, after checking that ``prompts``, ``completions`` and
    the per-completion columns TRL passes (``prompt_index``, ``split``, ``completion_ids``,
    rollout_func's fields) are lists of one length: ``zip`` would silently score fewer."""
    for name, value in (("prompts", prompts), ("completions", completions)):
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise InvalidArgumentError(
                f"{name} must be a list (one per completion), got {type(value).__name__} "
                f"{value!r:.60}"
            )
    size = len(completions)
    columns = {"prompts": prompts} | {
        k: kwargs[k]
        for k in ("prompt_index", "split", "completion_ids", RETURN_FIELD, SUCCESS_FIELD)
        if kwargs.get(k) is not None
    }
    for name, value in columns.items():
        if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != size:
            what = f"{len(value)} entries" if hasattr(value, "__len__") else repr(value)[:60]
            raise InvalidArgumentError(
                f"{name} must have one entry per completion ({size}), got {what}: pass the "
                f"batch's columns as TRL does, from textgym.integrations.trl.dataset({env_id!r})"
            )
    return size


# -- rewards -----------------------------------------------------------------------------------


def reward_funcs(env_id: str, success: bool = False, **env_kwargs: Any) -> list[Callable]:
    """TRL reward functions, ``f(prompts, completions, **kwargs) -> list[float]``, for
    ``env_id`` built with ``env_kwargs``.

    ``textgym_score``: with :func:`rollout_func`, each episode's return (the env's rewards
    summed). Otherwise (single-turn ids) the score the env gives the completion: its token ids
    (TRL's ``completion_ids``; the text re-tokenized if a caller has no ids) are stepped
    through the env from the example's prompt, which stops where the env stops (EOS, a stop
    string, ``max_new_tokens``) and cuts the text as the env does; the texts are then scored
    with one call of the env's scorer, with its reference (found from the dataset's
    ``prompt_index`` and ``split``). With ``success=True`` a second function,
    ``textgym_success``, gives 1.0 for a verifiable task's ``"correct"`` answer (or a solved
    dialogue) and 0.0 otherwise: pass ``GRPOConfig(reward_weights=[1.0, 0.0])`` to log it
    without training on it. With ``on_failure="end_episode"`` a completion whose scoring (or
    episode) failed gets None from both, never 0: TRL leaves it out of its group's baseline.
    """
    rewards = _Rewards(env_id, env_kwargs)
    if success and not rewards.reports_success:
        raise InvalidArgumentError(
            f"{env_id}'s task does not label answers (its scorer has no score_with_outcomes) "
            f"and it is not a dialogue: it has no success to report; leave success=False"
        )

    def textgym_score(prompts: list, completions: list, **kwargs: Any) -> list[float | None]:
        return rewards(prompts, completions, kwargs)[0]

    def textgym_success(prompts: list, completions: list, **kwargs: Any) -> list[float | None]:
        return rewards(prompts, completions, kwargs)[1]

    return [textgym_score, textgym_success] if success else [textgym_score]


def _unscored(prompts: Sequence[str], completions: Sequence[str], references: Sequence) -> Any:
    """The replay env's scorer: the replay only needs where episodes end, not their score."""
    return np.zeros(len(completions), dtype=np.float32)


class _Rewards:
    """What the reward functions of one id share: the env (prompts, scorer, tokenizer), a
    replay env with a scorer that does not score, and the last batch's results (TRL calls
    every reward function with the same batch; it is scored once)."""

    def __init__(self, env_id: str, env_kwargs: dict[str, Any]):
        self.env_id, self.env_kwargs = env_id, dict(env_kwargs)
        env = gym.make(env_id, **env_kwargs)
        self.base = env.unwrapped
        # The env writes tokens of its own (a partner's replies, tool results): only whole
        # episodes played through it have its reward.
        self.multi_turn = "agent_mask" in env.observation_space.spaces
        self.outcomes = callable(getattr(self.base.scorer, "score_with_outcomes", None))
        self.reports_success = isinstance(self.base, DialogueEnv) or self.outcomes
        self.replay: gym.Env | None = None
        self.last: tuple[Any, tuple[list, list]] | None = None

    def __call__(
        self, prompts: list, completions: list, kwargs: dict[str, Any]
    ) -> tuple[list[float | None], list[float | None]]:
        if not _check_batch(self.env_id, prompts, completions, kwargs):
            return [], []
        if RETURN_FIELD in kwargs:  # the episodes were played by rollout_func
            return list(kwargs[RETURN_FIELD]), list(kwargs[SUCCESS_FIELD])
        if self.multi_turn:
            raise InvalidArgumentError(
                f"{self.env_id} is a multi-turn id: its reward is a whole episode's; pass "
                f"rollout_func=textgym.integrations.trl.rollout_func({self.env_id!r}) to "
                f"GRPOTrainer with these reward functions"
            )
        ids = kwargs.get("completion_ids")
        key = (prompts, ids if ids is not None else completions, kwargs.get("prompt_index"))
        if self.last is None or self.last[0] != key:
            self.last = (key, self._score(prompts, completions, ids, kwargs))
        return self.last[1]

    def _score(
        self, prompts: list, completions: list, ids: list | None, kwargs: dict[str, Any]
    ) -> tuple[list[float | None], list[float | None]]:
        indices, splits = kwargs.get("prompt_index"), kwargs.get("split")
        if indices is None or splits is None:
            raise InvalidArgumentError(
                "the reward needs the dataset's prompt_index and split columns: train on "
                f"textgym.integrations.trl.dataset({self.env_id!r})"
            )
        examples = [self._example(k, s, i) for k, (s, i) in enumerate(zip(splits, indices))]
        for k, (prompt, example) in enumerate(zip(prompts, examples)):
            if _prompt_text(prompt, f"prompts[{k}]") != example.prompt:
                raise InvalidArgumentError(
                    f"prompt {_prompt_text(prompt)[:60]!r} is not example {example.prompt[:60]!r} "
                    f"of {self.env_id}: the dataset's prompt_index/split do not match its prompts"
                )
        texts = [_prompt_text(c, f"completions[{k}]") for k, c in enumerate(completions)]
        if ids is None:
            ids = self.base.tokenizer(texts, add_special_tokens=False)["input_ids"]
        n_actions = int(self.base.action_space.n)
        for k, seq in enumerate(ids):
            if isinstance(seq, (str, bytes)) or not all(
                isinstance(t, (int, np.integer)) and not isinstance(t, bool) and 0 <= t < n_actions
                for t in seq
            ):
                raise InvalidArgumentError(
                    f"completion_ids[{k}] must be token ids in [0, {n_actions}), got {seq!r:.60}"
                )
        texts = [self._completion(e, seq) for e, seq in zip(examples, ids)]

        scores, labels = self.base.score_texts(examples, texts)
        success = [float(o == "correct") for o in labels] if labels else [None] * len(texts)
        ok = ~np.isnan(scores)  # NaN: scoring still failed (on_failure="end_episode"): None
        success = [x if k else None for k, x in zip(ok, success)]
        return [float(x) if k else None for k, x in zip(ok, scores)], success

    def _example(self, k: int, split: Any, index: Any) -> Example:
        """The dataset row's example: ``split[k]`` and ``prompt_index[k]`` checked."""
        if split not in ("train", "test") or split not in self.base.prompts.splits:
            raise InvalidArgumentError(
                f"split[{k}] must be a split of {self.env_id} "
                f"({sorted(self.base.prompts.splits)}), got {split!r:.60}"
            )
        examples = self.base.prompts[split]
        if (
            isinstance(index, (bool, np.bool_))
            or not isinstance(index, (int, np.integer))
            or not 0 <= index < len(examples)
        ):
            raise InvalidArgumentError(
                f"prompt_index[{k}] must be an int in [0, {len(examples)}) (an example of "
                f"{self.env_id}'s {split} split), got {type(index).__name__} {index!r:.60}"
            )
        return examples[int(index)]

    def _completion(self, example: Example, ids: Sequence[int]) -> str:
        """The text the env scores after writing ``ids`` from ``example``'s prompt."""
        if self.replay is None:
            kwargs = {**self.env_kwargs, "scorer": _unscored, "reward_mode": "sparse"}
            self.replay = gym.make(self.env_id, **kwargs)
        self.replay.reset(options={"prompt": example})
        for token in ids:
            _, _, terminated, truncated, info = self.replay.step(int(token))
            if terminated or truncated:
                return info["completion"]
        return self.replay.unwrapped.current_completions()[1][0]  # TRL stopped first


# -- whole episodes ----------------------------------------------------------------------------


def rollout_func(env_id: str, **env_kwargs: Any) -> Callable[[list, Any], dict[str, list]]:
    """A TRL ``rollout_func(prompts, trainer)`` that plays one ``env_id`` episode per prompt.

    Each episode starts from the prompt (a TextGen id) or the dialogue's opening, with a seed
    shared by the ``num_generations`` rollouts of a group (same secret, so the group baseline
    compares like with like). The trainer's model samples one token at a time (a batched KV
    cache; ``temperature``, ``top_k``, ``top_p`` and ``min_p`` from ``GRPOConfig``) and the env
    is stepped with it, until every episode has ended. With ``GRPOConfig(use_vllm=True,
    vllm_mode="colocate")`` the trainer's vLLM generates instead, each episode up to its env's
    next control point from the env's exact ids (:func:`textgym.integrations.vllm.play`), and
    the env consumes each chunk through ``step``. Returned: ``prompt_ids`` and
    ``completion_ids`` (the env's own ids: prompt, then every token after it, the partner's
    too), ``logprobs`` (of the sampled tokens, 0 for the partner's), ``env_mask`` (1 for the
    model's tokens: TRL trains on those only) and, for :func:`reward_funcs`, each episode's
    return, success and seed. An episode the env ended itself (``terminated``) without an EOS
    last gets the pad id appended (``env_mask`` 0): that is how TRL learns it was not
    truncated (see ``_Episode.mark_end``). With ``on_failure="end_episode"`` a failed episode
    has return and success None, an ``env_mask`` of 0s and its ``FAILURE_FIELD`` (docs/trl.md).
    """
    return _Rollout(env_id, env_kwargs)


class _Episode:
    """One env episode as TRL sees it: prompt ids, completion ids (all tokens after the prompt),
    which of them the model wrote, their log-probs, the return so far."""

    def __init__(self, env: gym.Env, seed: int, options: dict[str, Any] | None):
        self.env = env
        obs, _ = env.reset(seed=seed, options=options)
        self.prompt_ids, _, _ = _split(obs)
        self.completion_ids: list[int] = []
        self.env_mask: list[int] = []
        self.logprobs: list[float] = []
        self.total, self.done, self.terminated, self.info = 0.0, False, False, {}
        self.failure: str | None = None

    def step(self, token: int, logprob: float) -> None:
        obs, reward, terminated, truncated, info = self.env.step(token)
        _, completion, mask = _split(obs)
        new = len(completion) - len(self.completion_ids)  # the token, then any reply
        self.logprobs += [logprob] + [0.0] * (new - 1)
        self.completion_ids, self.env_mask = completion, mask
        self.total += float(reward)
        self.done, self.info = bool(terminated or truncated), info
        self.terminated = bool(terminated) and not truncated
        self.failure = info.get("failure")  # a call still failed: no score, no token in the loss

    def mark_end(self, stops: Sequence[int], pad: int) -> None:
        """Tell TRL the env ended the episode itself. TRL (1.16) counts a completion as
        truncated (``completions/clipped_ratio``, ``mask_truncated_completions``) unless its
        last id is EOS or pad, and takes no other signal; an episode the env ended on its own
        stop (a stop string, a dialogue's or tool turn's end) gets one pad id appended, outside
        the loss (``env_mask`` 0, log-prob 0). A truncated episode (``max_new_tokens``) stays as
        it is: truncated."""
        if self.terminated and self.completion_ids and self.completion_ids[-1] not in stops:
            self.completion_ids = [*self.completion_ids, pad]
            self.env_mask = [*self.env_mask, 0]
            self.logprobs = [*self.logprobs, 0.0]

    @property
    def success(self) -> float | None:
        if "solved" in self.info:
            return float(self.info["solved"])
        if "outcome" in self.info:
            return float(self.info["outcome"] == "correct")
        return None


def _split(obs: dict[str, np.ndarray]) -> tuple[list[int], list[int], list[int]]:
    """(prompt ids, ids after the prompt, 1 where the agent wrote them) of an observation."""
    real = obs["attention_mask"] == 1
    ids = obs["input_ids"][real].tolist()
    n = int(obs["num_generated"][0])
    start = len(ids) - n
    agent = obs["agent_mask"][real][start:].tolist() if "agent_mask" in obs else [1] * n
    return ids[:start], ids[start:], agent


class _Rollout:
    """The state of :func:`rollout_func`: one env per rollout slot (reused), the examples by
    prompt text, and a call counter for the group seeds."""

    def __init__(self, env_id: str, env_kwargs: dict[str, Any]):
        self.env_id, self.env_kwargs = env_id, dict(env_kwargs)
        self.envs = [gym.make(env_id, **env_kwargs)]
        base = self.envs[0].unwrapped
        self.dialogue = isinstance(base, DialogueEnv)
        self.examples: dict[str, list[Example]] = {}
        for split in ("train", "test"):
            for e in base.prompts.splits.get(split, []):
                same = self.examples.setdefault(e.prompt, [])
                if all(e.reference != x.reference for x in same):
                    same.append(e)
        self.n_actions = int(self.envs[0].action_space.n)
        self.calls = 0

    def options(self, prompt: Any) -> dict[str, Any] | None:
        text = _prompt_text(prompt)
        found = self.examples.get(text)
        if not found:
            raise InvalidArgumentError(
                f"prompt {text[:60]!r} is not one of {self.env_id}'s prompts: train on "
                f"textgym.integrations.trl.dataset({self.env_id!r})"
            )
        if len(found) > 1:
            raise InvalidArgumentError(
                f"{self.env_id} has {len(found)} examples with the prompt {text[:60]!r} and "
                f"different references: a rollout cannot tell which one it plays"
            )
        return None if self.dialogue else {"prompt": found[0]}

    def __call__(self, prompts: list, trainer: Any) -> dict[str, list]:
        import torch
        from trl.models import unwrap_model_for_generation

        args = trainer.args
        group = trainer.num_generations
        if not trainer.model.training:
            group = trainer.num_generations_eval or group
        first = trainer.accelerator.process_index * len(prompts)  # TRL's global batch order
        self.calls += 1
        seeds = [_seed(args.seed, self.calls, (first + i) // group) for i in range(len(prompts))]
        options = [self.options(p) for p in prompts]
        while len(self.envs) < len(prompts):
            self.envs.append(gym.make(self.env_id, **self.env_kwargs))
        episodes = [_Episode(env, s, o) for env, s, o in zip(self.envs, seeds, options)]
        pad = trainer.processing_class.pad_token_id
        llm = textgym_vllm.trainer_llm(trainer)  # TRL synced its weights before this call
        if llm is not None:
            sampling = textgym_vllm.trl_sampling(args, llm, self.n_actions)
            textgym_vllm.play(llm, episodes, **sampling)
        else:
            with (
                unwrap_model_for_generation(
                    trainer.model_wrapped,
                    trainer.accelerator,
                    gradient_checkpointing_kwargs=args.gradient_checkpointing_kwargs,
                ) as model,
                torch.no_grad(),
            ):
                _play(
                    model, episodes, _sampler(args, self.n_actions), pad, trainer.accelerator.device
                )
        stops = [*getattr(trainer, "eos_token_ids", [trainer.processing_class.eos_token_id]), pad]
        for episode in episodes:
            episode.mark_end(stops, pad)
        return {
            "prompt_ids": [e.prompt_ids for e in episodes],
            "completion_ids": [e.completion_ids for e in episodes],
            "logprobs": [e.logprobs for e in episodes],
            "env_mask": [[0] * len(e.env_mask) if e.failure else e.env_mask for e in episodes],
            RETURN_FIELD: [None if e.failure else e.total for e in episodes],
            SUCCESS_FIELD: [None if e.failure else e.success for e in episodes],
            SEED_FIELD: seeds,
            FAILURE_FIELD: [e.failure for e in episodes],
        }


def _seed(*entropy: int) -> int:
    """An env reset seed drawn from ``entropy`` (the run's seed, the call, the group)."""
    return int(np.random.SeedSequence(list(entropy)).generate_state(1)[0])


def _sampler(args: Any, n_actions: int) -> Callable:
    """``sample(logits) -> (tokens, log-probs)`` with GRPOConfig's sampling settings; ids past
    the env's vocabulary are never drawn."""
    import torch
    from transformers.generation import (
        LogitsProcessorList,
        MinPLogitsWarper,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    if args.repetition_penalty != 1.0 or args.generation_kwargs:
        raise InvalidArgumentError(
            "textgym's rollout_func samples with temperature, top_k, top_p and min_p only; "
            "leave repetition_penalty=1.0 and generation_kwargs=None"
        )
    warpers = LogitsProcessorList()
    if args.temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(args.temperature))
    if args.top_k:
        warpers.append(TopKLogitsWarper(args.top_k))
    if args.top_p < 1.0:
        warpers.append(TopPLogitsWarper(args.top_p))
    if args.min_p:
        warpers.append(MinPLogitsWarper(args.min_p))

    def sample(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = logits.float()
        logits[:, n_actions:] = -torch.inf
        logp = torch.log_softmax(warpers(None, logits), dim=-1)
        tokens = torch.multinomial(logp.exp(), 1)[:, 0]
        return tokens, logp.gather(1, tokens[:, None])[:, 0]

    return sample


def _play(model: Any, episodes: list[_Episode], sample: Callable, pad: int, device: Any) -> None:
    """Step every episode to its end with tokens sampled from ``model``. One batched KV cache:
    each forward feeds every live episode the tokens the env appended since the last one (its
    own token, then a partner's reply), right-aligned in a block whose padding is masked."""
    import inspect

    import torch
    from transformers import DynamicCache

    # transformers 5 renames the forward's past_key_values to cache: pass what the model takes.
    params = inspect.signature(model.forward).parameters
    cache = {
        ("cache" if "cache" in params else "past_key_values"): DynamicCache(config=model.config)
    }

    def block(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for b, row in enumerate(rows):
            if row:
                ids[b, width - len(row) :] = torch.tensor(row)
                mask[b, width - len(row) :] = 1
        return ids.to(device), mask.to(device)

    ids, mask = block([e.prompt_ids for e in episodes])
    history = mask
    fed = [0] * len(episodes)
    while True:
        out = model(
            input_ids=ids,
            attention_mask=history,
            position_ids=position_ids(history)[:, -ids.shape[1] :],
            use_cache=True,
            **cache,  # updated in place
        )
        live = [b for b, e in enumerate(episodes) if not e.done]
        tokens, logps = sample(out.logits[live, -1, :])
        for b, token, logp in zip(live, tokens.tolist(), logps.tolist()):
            episodes[b].step(token, logp)
        if all(e.done for e in episodes):
            return
        rows = [[] if e.done else e.completion_ids[fed[b] :] for b, e in enumerate(episodes)]
        fed = [f + len(r) for f, r in zip(fed, rows)]
        ids, mask = block(rows)
        history = torch.cat([history, mask], dim=1)


__all__ = [
    "FAILURE_FIELD",
    "RETURN_FIELD",
    "SEED_FIELD",
    "SUCCESS_FIELD",
    "dataset",
    "processing_class",
    "reward_funcs",
    "rollout_func",
]
