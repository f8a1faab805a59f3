"""NLPO-style action masking for PPO (Ramamurthy et al., 2023, "Is RL (Not) for NLP?").

A *mask policy*, a frozen copy of the policy refreshed every ``nlpo_update_every`` iterations,
restricts what the policy may sample: at each step only the tokens in the mask policy's top-p
set (the smallest set of most likely tokens holding ``nlpo_top_p`` of its probability) can be
drawn; the rest get logit -inf. This prunes the 49k-token action space to the few hundred
tokens a (recent) LM finds plausible, which keeps exploration fluent.

Here the mask acts on *sampling* during training rollouts, like every other sampling filter of
:class:`~agents.policy.LMPolicy` (top-k, top-p, the env's action mask): the log-probs PPO
optimises are those of the unmasked ``softmax`` (see ``policy.py``), so the importance ratios
start at exactly 1. (RL4LMs' NLPO also renormalises the log-probs over the masked set in the
update; that needs the mask policy's top-p set at every position of the batch and is not done
here.) The mask policy runs along with the policy in the rollout, with its own KV cache: one
extra forward per step. On resume the mask policy is rebuilt from the resumed weights.
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


@dataclass
class NLPOConfig(PPOConfig):
    """PPO settings plus the mask: ``nlpo_top_p`` (the top-p mass of the mask policy's set) and
    ``nlpo_update_every`` (iterations between refreshes of the mask policy from the policy)."""

    nlpo_top_p: float = 0.9
    nlpo_update_every: int = 5


def top_p_mask(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Bool ``(N, V)``: the smallest set of most likely tokens holding ``top_p`` of the mass
    (the top token always stays)."""
    probs = torch.softmax(logits.float(), dim=-1)
    sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
    keep_sorted = (sorted_probs.cumsum(-1) - sorted_probs) < top_p
    return torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)


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

    def allowed(self, obs: dict[str, np.ndarray], ignore: np.ndarray | None = None) -> np.ndarray:
        """The mask policy's top-p set for every slot, bool ``(N, V)``."""
        self.mask_policy.act(obs, deterministic=True, ignore=ignore)
        return top_p_mask(self.mask_policy.last_logits, self.top_p).cpu().numpy()

    def act(self, obs, action_mask=None, **kwargs) -> ActOutput:
        allowed = self.allowed(obs, kwargs.get("ignore"))
        if action_mask is not None:
            env_mask = np.broadcast_to(np.asarray(action_mask, dtype=bool), allowed.shape)
            both = allowed & env_mask
            # Never leave a slot with nothing to draw: fall back to the env's mask there.
            allowed = np.where(both.any(-1, keepdims=True), both, env_mask)
        return self.policy.act(obs, allowed, **kwargs)


class NLPO(PPO):
    """PPO whose training rollouts sample within a periodically refreshed mask policy's top-p
    set; see the module docstring."""

    Config = NLPOConfig
    config: NLPOConfig

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if not 0.0 < self.config.nlpo_top_p <= 1.0:
            raise ValueError(f"nlpo_top_p must be in (0, 1], got {self.config.nlpo_top_p}")
        if self.config.nlpo_update_every < 1:
            raise ValueError("nlpo_update_every must be >= 1")
        self.mask_policy: _RecordingPolicy | None = None
        self._mask_iteration = -1

    def refresh_mask_policy(self) -> None:
        """Freeze a copy of the current policy's LM as the mask policy."""
        model = copy.deepcopy(self.policy.model).eval().requires_grad_(False)
        p = self.policy
        self.mask_policy = _RecordingPolicy(model, precision=p.precision, temperature=p.temperature,
                                            chunk_size=p.chunk_size)  # fmt: skip
        self._mask_iteration = self.iteration

    def acting_policy(self) -> MaskedActing:
        c = self.config
        if self.mask_policy is None or self.iteration - self._mask_iteration >= c.nlpo_update_every:
            self.refresh_mask_policy()
        return MaskedActing(self.policy, self.mask_policy, c.nlpo_top_p)
