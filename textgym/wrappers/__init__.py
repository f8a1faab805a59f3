"""Wrappers for the TextGen environments: dense potential-based shaping, a per-token
reference-LM reward, text observations, and a curriculum over a task's difficulty.

* :class:`PotentialShaping` / :class:`VectorPotentialShaping`: add
  ``gamma * phi(s') - phi(s)`` each step, where ``phi`` is a potential of the completion so far
  (by default the task's own scorer). With ``gamma=1`` an episode's rewards sum to the sparse
  score, and for any ``gamma`` the optimal policy is unchanged (Ng et al., 1999).
* :class:`LMTokenReward` / :class:`VectorLMTokenReward`: add ``beta * log p_ref(token |
  prefix)`` each step from a reference causal LM, one batched forward pass per vector step,
  so any RL algorithm gets a fluency signal.
* :class:`TextObservation`: the observation is the decoded text (prompt + completion so far).
* :class:`Curriculum` / :class:`VectorCurriculum`: move through a task's levels (``"easy"``,
  ``"medium"``, ``"hard"``) by the success rate of recent episodes, with ``set_task``.

All wrappers work on ``gym.make``/``gym.make_vec`` environments of any textgym id (they reach
the :class:`~textgym.envs.TextGenEnv` through ``env.unwrapped``), and pass on what Gymnasium 1.x
wrappers do not: ``action_masks()`` (so MaskablePPO and the learners keep the token mask through
any stack of them) and a curriculum's ``state_dict()`` / ``load_state_dict()`` (so a learner's
checkpoint records the curriculum below them)."""

from textgym.wrappers.curriculum import Curriculum, VectorCurriculum
from textgym.wrappers.shaping import (
    LMTokenReward,
    PotentialShaping,
    VectorLMTokenReward,
    VectorPotentialShaping,
)
from textgym.wrappers.text_observation import TextObservation

__all__ = [
    "Curriculum",
    "LMTokenReward",
    "PotentialShaping",
    "TextObservation",
    "VectorCurriculum",
    "VectorLMTokenReward",
    "VectorPotentialShaping",
]
