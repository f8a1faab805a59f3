"""agents: learners that train a transformers causal LM on any textgym env via the Gymnasium API.

    import gymnasium as gym, textgym
    from agents import LMPolicy, PPO, PPOConfig, evaluate
    envs = gym.make_vec("TextGen-v0", num_envs=16)
    policy = LMPolicy.from_pretrained("smollm2-135m")
    agent = PPO(policy, envs, PPOConfig())
    agent.learn(total_episodes=2_000)
    print(evaluate(agent, gym.make_vec("TextGen-v0", num_envs=16), n_episodes=200, split="test"))

Files, each readable top to bottom: ``policy.py`` (LMPolicy: a causal LM with a value head,
per-token statistics and acting), ``token_stats.py`` (chunked log-probs and entropies),
``sampling.py``, ``acting_cache.py`` (the KV cache acting runs through), ``precision.py`` (bf16,
compile), ``rollout.py`` (rollouts through ``env.step``), ``advantages.py`` (returns, GAE, group
baselines, KL estimates), ``update.py`` (the building blocks of an update: batch, minibatches,
recomputed log-probs, losses), ``base.py`` (the loop around the update: logging, evaluation,
checkpoints), ``checkpoint.py`` (checkpoint files), ``logger.py``, one file per learner
(``reinforce.py``, ``a2c.py``, ``ppo.py``, ``grpo.py``, ``rloo.py``, ``nlpo.py``; ``groups.py``:
what GRPO and RLOO share), ``evaluation.py``. See "Writing a learner" in ``docs/agents.md``.
"""

from agents.a2c import A2C, A2CConfig
from agents.advantages import discounted_returns, gae, group_advantages
from agents.base import Learner, LearnerConfig, NonFiniteError
from agents.engines import Engine, PerTokenEngine, VLLMEngine
from agents.evaluation import EvalResult, evaluate
from agents.faults import FailureRateError
from agents.grpo import GRPO, GRPOConfig
from agents.nlpo import NLPO, NLPOConfig
from agents.policy import ActOutput, LMPolicy
from agents.ppo import PPO, PPOConfig
from agents.precision import bf16_supported
from agents.reinforce import REINFORCE, REINFORCEConfig
from agents.rloo import RLOO, RLOOConfig
from agents.rollout import Rollout, RolloutBuffer, collect_rollout
from agents.sampling import sample_tokens
from agents.token_stats import TokenStats, naive_token_logprobs, token_logprobs
from agents.warm_start import SupervisedWarmStart, WarmStartConfig, warm_start
from textgym.errors import CheckpointError

# The learners by the names the command lines and benchmarks use.
LEARNERS: dict[str, type[Learner]] = {
    "ppo": PPO,
    "grpo": GRPO,
    "rloo": RLOO,
    "reinforce": REINFORCE,
    "a2c": A2C,
    "nlpo": NLPO,
}

__all__ = [
    "A2C",
    "A2CConfig",
    "ActOutput",
    "CheckpointError",
    "Engine",
    "EvalResult",
    "FailureRateError",
    "GRPO",
    "GRPOConfig",
    "LEARNERS",
    "LMPolicy",
    "Learner",
    "LearnerConfig",
    "NLPO",
    "NLPOConfig",
    "NonFiniteError",
    "PPO",
    "PPOConfig",
    "PerTokenEngine",
    "REINFORCE",
    "REINFORCEConfig",
    "RLOO",
    "RLOOConfig",
    "Rollout",
    "RolloutBuffer",
    "SupervisedWarmStart",
    "TokenStats",
    "VLLMEngine",
    "WarmStartConfig",
    "bf16_supported",
    "collect_rollout",
    "discounted_returns",
    "evaluate",
    "gae",
    "group_advantages",
    "naive_token_logprobs",
    "sample_tokens",
    "token_logprobs",
    "warm_start",
]
