"""NLPO-style action masking for PPO (Ramamurthy et al., 2023, "Is RL (Not) for NLP?").

The update is PPO's (``ppo.py``), scoring every action under the set it was sampled from.

A *mask policy*, a frozen copy of the policy refreshed every ``nlpo_update_every`` iterations,
restricts what the policy may sample: at each step only the tokens in the mask policy's top-p
set (:func:`~agents.sampling.top_p_mask`: the smallest set of most likely tokens holding
``nlpo_top_p`` of its probability) can be drawn; the rest get logit -inf. This prunes the
49k-token action space to the few hundred tokens a (recent) LM finds plausible, which keeps
exploration fluent.

The masked policy is the policy: ``pi_M(a | s) = softmax(logits / T)`` renormalised over the
mask policy's set ``M(s)``, as in RL4LMs. Training rollouts sample from it and record its
log-probs and each step's set (packed, 6 KiB per token at V = 49,152; ``Rollout.support``); the
update scores the same sets (:func:`~agents.token_stats.token_logprobs` with ``support``), so
PPO's importance ratios start at exactly 1 and the entropy bonus and KL penalty are those of
``pi_M``.
Evaluating an NLPO learner (``evaluate(agent, ...)``) also acts under the mask. The env's own
action mask filters sampling as usual; a slot whose whole top-p set it forbids samples from the
env's mask instead, with its support widened to match. The mask policy runs along with the
policy in the rollout, with its own KV cache: one extra forward per step. Checkpoints keep the
mask policy's trainable weights (``extra.safetensors``) and the iteration it was taken at, so a
resumed run masks exactly as the uninterrupted one would have.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from agents.policy import ActOutput, LMPolicy
from agents.ppo import PPO, PPOConfig
from agents.sampling import top_p_mask
from textgym.errors import CheckpointError, InvalidArgumentError


@dataclass
class NLPOConfig(PPOConfig):
    """PPO settings plus the mask: ``nlpo_top_p`` (the top-p mass of the mask policy's set) and
    ``nlpo_update_every`` (iterations between refreshes of the mask policy from the policy)."""

    nlpo_top_p: float = 0.9
    nlpo_update_every: int = 5

    def check(self) -> None:
        super().check()
        name = type(self).__name__
        if not 0.0 < self.nlpo_top_p <= 1.0:
            raise InvalidArgumentError(
                f"{name}: nlpo_top_p must be in (0, 1], got {self.nlpo_top_p}"
            )
        if isinstance(self.nlpo_update_every, bool) or not isinstance(self.nlpo_update_every, int):
            raise InvalidArgumentError(
                f"{name}: nlpo_update_every must be an integer >= 1, got {self.nlpo_update_every!r}"
            )
        if self.nlpo_update_every < 1:
            raise InvalidArgumentError(
                f"{name}: nlpo_update_every must be >= 1, got {self.nlpo_update_every}"
            )


class _RecordingPolicy(LMPolicy):
    """An LMPolicy that keeps the logits of its last :meth:`act` (the mask policy)."""

    last_logits: torch.Tensor | None = None

    def _logits(self, model, hidden):
        self.last_logits = super()._logits(model, hidden)
        return self.last_logits


class MaskedActing:
    """``policy`` acting under the top-p mask of ``mask_policy`` (what collect_rollout drives)."""

    def __init__(self, policy: LMPolicy, mask_policy: _RecordingPolicy, top_p: float):
        self.policy, self.mask_policy, self.top_p = policy, mask_policy, top_p

    def __getattr__(self, name: str) -> Any:
        return getattr(self.policy, name)

    def reset_state(self) -> None:
        self.policy.reset_state()
        self.mask_policy.reset_state()

    @contextlib.contextmanager
    def autocast(self):
        with self.policy.autocast(), self.mask_policy.autocast():
            yield

    def allowed(self, obs: dict[str, np.ndarray], ignore: np.ndarray | None = None) -> torch.Tensor:
        """The mask policy's top-p set for every slot, bool ``(N, V)`` on the policy's device."""
        self.mask_policy.act(obs, deterministic=True, ignore=ignore)
        return top_p_mask(self.mask_policy.last_logits, self.top_p).to(self.policy.device)

    def act(self, obs, action_mask=None, **kwargs) -> ActOutput:
        support = self.allowed(obs, kwargs.get("ignore"))
        if action_mask is not None:
            env = np.asarray(action_mask, dtype=bool)
            if env.ndim == 2 and env.strides[0] == 0:  # one row broadcast to all slots
                env = env[0]
            env_t = torch.tensor(env, device=support.device)
            # A slot whose whole top-p set the env forbids samples from the env's mask: widen its
            # support to match, so that every action lies in the support it is scored under.
            empty = ~(support & env_t).any(-1, keepdim=True)
            support = torch.where(empty, support | env_t, support)
        return self.policy.act(obs, action_mask, support=support, **kwargs)


class NLPO(PPO):
    """PPO on the policy renormalised over a periodically refreshed mask policy's top-p sets;
    see the module docstring."""

    Config = NLPOConfig
    config: NLPOConfig

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.mask_policy: _RecordingPolicy | None = None
        self._mask_iteration = -1

    def refresh_mask_policy(self) -> None:
        """Make the mask policy a frozen copy of the current policy's LM (and of its position
        embeddings, if it has them: the mask must come from the same model). It is built once;
        later refreshes copy the trained weights into it in place (no new model to allocate,
        and a compiled mask policy keeps its graphs)."""
        p = self.policy
        if self.mask_policy is None:
            model = copy.deepcopy(p.model).eval().requires_grad_(False)
            self.mask_policy = _RecordingPolicy(
                model,
                precision=p.precision,
                temperature=p.temperature,
                chunk_size=p.chunk_size,
                compile=p.compile_backend or False,
                kv_cache=p.kv_cache,
            )
            if p.position_embeddings is not None:
                frozen = copy.deepcopy(p.position_embeddings).requires_grad_(False)
                self.mask_policy.position_embeddings = frozen
        else:
            self._load_mask_weights(self._trainable(p))
        self._mask_iteration = self.iteration

    def _trainable(self, policy: LMPolicy) -> dict[str, torch.Tensor]:
        """``policy``'s LM parameters that the policy trains and its position embeddings, by
        name (the others never change, so the policy and its mask policy share their values)."""
        names = {n for n, p in self.policy.model.named_parameters() if p.requires_grad}
        weights = {n: p for n, p in policy.model.named_parameters() if n in names}
        if policy.position_embeddings is not None:
            for name, tensor in policy.position_embeddings.named_parameters():
                weights[f"position_embeddings.{name}"] = tensor
        return weights

    def _load_mask_weights(self, weights: dict[str, torch.Tensor]) -> None:
        params = self._trainable(self.mask_policy)
        with torch.no_grad():
            for name, tensor in weights.items():
                params[name].copy_(tensor)

    # -- checkpoints: the mask policy's trainable weights and the iteration it was taken at ----

    def extra_state(self) -> dict[str, Any]:
        return {"mask_iteration": self._mask_iteration if self.mask_policy is not None else None}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self._mask_iteration = state.get("mask_iteration")

    def extra_state_problem(self, state: dict[str, Any]) -> str | None:
        it = state.get("mask_iteration")
        if it is None or (isinstance(it, int) and not isinstance(it, bool) and it >= 0):
            return None
        return f"mask_iteration is {it!r:.60}, not an iteration (an int >= 0) or null"

    def extra_tensors(self) -> dict[str, torch.Tensor]:
        if self.mask_policy is None:
            return {}
        return {n: p.detach() for n, p in self._trainable(self.mask_policy).items()}

    def extra_tensors_problem(self, tensors: dict[str, torch.Tensor]) -> str | None:
        if not tensors:
            return None  # saved before the first rollout: no mask policy yet
        own = self._trainable(self.policy)
        if set(tensors) != set(own):
            return "the saved mask policy's parameters are not this policy's trainable ones"
        wrong = [n for n, t in tensors.items() if t.shape != own[n].shape]
        return f"mask policy shape mismatch in {wrong[:3]}" if wrong else None

    def load_extra_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        if not tensors:
            self.mask_policy, self._mask_iteration = None, -1
            return
        iteration = self._mask_iteration
        if iteration is None:
            raise CheckpointError("the checkpoint has mask policy weights but no mask_iteration")
        self.refresh_mask_policy()  # the model (the resumed weights), then the saved weights
        self._load_mask_weights(tensors)
        self._mask_iteration = iteration

    def acting_policy(self) -> MaskedActing:
        c = self.config
        if self.mask_policy is None or self.iteration - self._mask_iteration >= c.nlpo_update_every:
            self.refresh_mask_policy()
        return MaskedActing(self.policy, self.mask_policy, c.nlpo_top_p)
