"""vLLM writes textgym episodes up to their control points, from the env's exact token ids.

A vLLM ``LLM`` generates every live episode at once (paged attention, continuous batching,
prefix caching) until its next control point (:mod:`textgym.envs.control_points`): the env's
stop ids and act ids become ``stop_token_ids``, its stop strings and act strings ``stop``, the
tokens left ``max_tokens``. The prompt is the episode's own ids (``prompt_token_ids``): text is
never re-tokenised. The env then consumes each chunk through ``step``, which may end the
episode early (the later tokens are dropped) or append its own tokens (a tool result, a
partner's reply), and the next chunk starts from the env's new ids, whose shared prefix vLLM's
prefix cache does not recompute.

* :func:`chunks`: one ``llm.generate`` call for many episodes; (ids, log-probs) per episode.
* :func:`sampling_params`: the ``SamplingParams`` of one episode's chunk.
* :func:`episode_ids`: an observation row's exact ids (what the policy attends to).
* :func:`hf_tokenizer`: a Hugging Face tokenizer with the env's ids for vLLM's detokenizer
  (which matches the stop strings); the character tokenizer gets its ``tokenizers`` twin.
* :func:`play`, :func:`trainer_llm`, :func:`trl_sampling`: TRL's ``rollout_func`` with the
  trainer's colocated vLLM (:mod:`textgym.integrations.trl`).

The log-probs are vLLM's *processed* ones (``LLM(logprobs_mode="processed_logprobs")``, as TRL
sets it): of the distribution each token was drawn from, after temperature, the action mask
(``allowed_token_ids``) and top-k/top-p, renormalised. Used by ``agents.engines.VLLMEngine``
and :func:`textgym.integrations.trl.rollout_func`; vLLM is imported inside the functions.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from textgym.char_tokenizer import CharTokenizer
from textgym.envs.control_points import ControlPoints
from textgym.errors import InvalidArgumentError


def episode_ids(obs: dict[str, np.ndarray], row: int | None = None) -> list[int]:
    """The exact token ids of an observation (of slot ``row`` of a vector observation): the
    prompt from its first real token on, then everything after it (the agent's and the env's),
    as the policy attends to them."""
    ids, mask = obs["input_ids"], obs["attention_mask"]
    if row is not None:
        ids, mask = ids[row], mask[row]
    return ids[mask == 1].tolist()


def sampling_params(
    points: ControlPoints,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    min_p: float = 0.0,
    deterministic: bool = False,
    seed: int | None = None,
    allowed_token_ids: Sequence[int] | None = None,
    max_tokens: int | None = None,
) -> Any:
    """The ``vllm.SamplingParams`` of a chunk that ends at ``points``: one token per sampled
    position with its log-prob (``logprobs=0``), EOS only where the env says (``ignore_eos``;
    the env's stop ids are passed), ``temperature=0`` for ``deterministic`` (greedy).
    ``max_tokens`` caps the chunk below ``points.max_tokens`` (e.g. the model's context)."""
    from vllm import SamplingParams

    if points.max_tokens < 1:
        raise InvalidArgumentError(
            "points.max_tokens is 0: that slot has no live episode; generate only for slots "
            "with max_tokens >= 1"
        )
    strings = list(points.strings)
    return SamplingParams(
        n=1,
        temperature=0.0 if deterministic else float(temperature),
        top_k=int(top_k) if top_k and not deterministic else 0,
        top_p=1.0 if deterministic else float(top_p),
        min_p=0.0 if deterministic else float(min_p),
        seed=seed,
        max_tokens=min(points.max_tokens, max_tokens or points.max_tokens),
        stop_token_ids=list(points.token_ids),
        stop=strings or None,
        ignore_eos=True,
        logprobs=0,
        allowed_token_ids=None if allowed_token_ids is None else list(allowed_token_ids),
        detokenize=bool(strings),
        skip_special_tokens=True,
    )


def chunks(
    llm: Any, prompts: Sequence[Sequence[int]], params: Sequence[Any]
) -> list[tuple[list[int], list[float]]]:
    """One ``llm.generate`` call for every episode: its exact ids in ``prompts``, its
    ``SamplingParams`` in ``params``; returns each episode's chunk, (token ids, their
    log-probs)."""
    outputs = llm.generate(
        [{"prompt_token_ids": list(map(int, p))} for p in prompts], list(params), use_tqdm=False
    )
    result = []
    for out in outputs:
        done = out.outputs[0]
        ids = list(done.token_ids)
        logprobs = [float(step[t].logprob) for step, t in zip(done.logprobs or [], ids)]
        if len(logprobs) != len(ids):
            raise RuntimeError(
                "vLLM returned no log-probs for some tokens: pass SamplingParams(logprobs=0) "
                "(textgym.integrations.vllm.sampling_params does)"
            )
        result.append((ids, logprobs))
    return result


def play(llm: Any, episodes: Sequence[Any], **sampling: Any) -> None:
    """Step every episode to its end with chunks from ``llm``, all live episodes in one
    ``generate`` call per round. ``episodes``: TRL rollout episodes
    (:func:`textgym.integrations.trl.rollout_func`'s), each with ``env`` (a single env),
    ``done``, ``prompt_ids`` and ``completion_ids`` (the env's ids) and ``step(token,
    logprob)``; ``sampling``: :func:`sampling_params`' keyword arguments. A chunk's tokens go to
    ``step`` until the episode ends or the env appends tokens of its own; the rest is dropped."""
    while live := [e for e in episodes if not e.done]:
        points = [e.env.unwrapped.control_points() for e in live]
        prompts = [e.prompt_ids + e.completion_ids for e in live]
        params = [sampling_params(p, **sampling) for p in points]
        for episode, (ids, logprobs) in zip(live, chunks(llm, prompts, params)):
            for token, logprob in zip(ids, logprobs):
                written = len(episode.completion_ids)
                episode.step(token, logprob)
                if episode.done or len(episode.completion_ids) > written + 1:
                    break


def trainer_llm(trainer: Any) -> Any | None:
    """A TRL trainer's colocated vLLM ``LLM`` (``GRPOConfig(use_vllm=True,
    vllm_mode="colocate")``: ``trainer.vllm_generation.llm`` in TRL 1.x), or None: without
    vLLM, and in server mode, whose client generates from one set of sampling settings for
    all prompts and so cannot stop each episode at its own control points."""
    generation = getattr(trainer, "vllm_generation", None)
    if not getattr(trainer, "use_vllm", False) or generation is None:
        return None
    if getattr(generation, "mode", None) != "colocate":
        warnings.warn(
            "textgym's rollout_func samples from the trainer's model in vLLM server mode; "
            "use vllm_mode='colocate' to generate with vLLM",
            stacklevel=3,
        )
        return None
    return generation.llm


def trl_sampling(args: Any, llm: Any, n_actions: int) -> dict[str, Any]:
    """:func:`sampling_params`' arguments from a ``GRPOConfig``: temperature, top-k, top-p and
    min-p as TRL's own vLLM generation uses them; ids past the env's ``n_actions`` are never
    drawn."""
    if args.repetition_penalty != 1.0 or args.generation_kwargs:
        raise InvalidArgumentError(
            "textgym's rollout_func samples with temperature, top_k, top_p and min_p only; "
            "leave repetition_penalty=1.0 and generation_kwargs=None"
        )
    vocab = llm.llm_engine.model_config.get_vocab_size()
    return {
        "temperature": args.temperature,
        "top_k": args.top_k or 0,
        "top_p": args.top_p,
        "min_p": args.min_p or 0.0,
        "allowed_token_ids": range(n_actions) if vocab > n_actions else None,
    }


def hf_tokenizer(tokenizer: Any) -> Any:
    """A Hugging Face tokenizer with ``tokenizer``'s ids, to save beside a model for vLLM (or
    to give TRL): the tokenizer itself, the Hugging Face twin of a textgym ``FastTokenizer``,
    or for the character tokenizer a ``PreTrainedTokenizerFast`` equal to it (one token per
    character, unknown ones to ``<unk>``, special tokens parsed in text, ``<bos>`` with
    ``add_special_tokens``, the same decoding), left-padded."""
    if isinstance(tokenizer, CharTokenizer):
        return _char_twin(tokenizer)
    hf = getattr(type(tokenizer), "hf", None)
    if isinstance(hf, property):
        return tokenizer.hf
    if not hasattr(tokenizer, "save_pretrained"):
        raise InvalidArgumentError(
            f"a {type(tokenizer).__name__} cannot be saved for vLLM: use a Hugging Face "
            f"tokenizer or textgym's CharTokenizer"
        )
    return tokenizer


def _char_twin(tokenizer: CharTokenizer) -> Any:
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel(tokenizer.get_vocab(), unk_token=tokenizer.unk_token))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()  # characters join without spaces
    backend.post_processor = processors.TemplateProcessing(
        single=f"{tokenizer.bos_token} $A",
        special_tokens=[(tokenizer.bos_token, tokenizer.bos_token_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=tokenizer.bos_token,
        eos_token=tokenizer.eos_token,
        unk_token=tokenizer.unk_token,
        pad_token=tokenizer.pad_token,
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )


__all__ = [
    "chunks",
    "episode_ids",
    "hf_tokenizer",
    "play",
    "sampling_params",
    "trainer_llm",
    "trl_sampling",
]
