"""PPO on a textgym environment in one file, CleanRL style: only gymnasium, numpy and torch.

This file is the proof that nothing from ``agents`` is needed to train on the suite: it reads
top to bottom like CleanRL's ``ppo.py`` (https://docs.cleanrl.dev/rl-algorithms/ppo/), adapted to
token environments:

* the observation is a dict of int64 arrays (token ids, attention mask, tokens generated so
  far); a small embedding + transformer policy reads it;
* the action space is ``Discrete(V)``; the env's ``action_masks()`` removes tokens that are never
  worth choosing (special tokens) before sampling;
* ``gym.make_vec`` returns textgym's native vector env (all episodes stepped with numpy), in
  ``SAME_STEP`` autoreset mode so the classic CleanRL loop works unchanged.

    python examples/cleanrl_ppo.py --env-id TextGen-Copy-v0 --total-timesteps 100000
    python examples/cleanrl_ppo.py --help
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import time
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim
from torch.distributions.categorical import Categorical

import textgym  # noqa: F401  (registers the TextGen-* ids with Gymnasium)


@dataclass
class Args:
    env_id: str = "TextGen-Copy-v0"
    """the textgym environment id"""
    env_kwargs: str = '{"reward_mode": "dense"}'
    """JSON dict of extra environment arguments (dense: per-token rewards summing to the score)"""
    seed: int = 1
    """seed of the experiment (torch, numpy, the environments)"""
    torch_deterministic: bool = True
    """torch.backends.cudnn.deterministic"""
    cuda: bool = False
    """use CUDA if available"""
    threads: int = 0
    """torch CPU threads (0: torch's default)"""
    total_timesteps: int = 100_000
    """total environment steps (tokens generated)"""
    learning_rate: float = 1e-3
    """learning rate of the optimizer"""
    num_envs: int = 16
    """number of parallel episodes (slots of the native vector env)"""
    num_steps: int = 64
    """steps per env per rollout"""
    anneal_lr: bool = True
    """linearly anneal the learning rate to 0"""
    gamma: float = 1.0
    """discount factor (1: episodes are a few tokens long and the score is all that counts)"""
    gae_lambda: float = 0.95
    """lambda of Generalized Advantage Estimation"""
    num_minibatches: int = 4
    """minibatches per epoch"""
    update_epochs: int = 4
    """epochs over each rollout"""
    norm_adv: bool = True
    """normalise advantages per minibatch"""
    clip_coef: float = 0.2
    """surrogate clipping coefficient"""
    clip_vloss: bool = True
    """clip the value loss too"""
    ent_coef: float = 0.01
    """entropy bonus"""
    vf_coef: float = 0.5
    """value loss coefficient"""
    max_grad_norm: float = 0.5
    """gradient clipping norm"""
    target_kl: float = 0.0
    """stop the epochs early above this approximate KL (0: never)"""
    mask_actions: bool = True
    """sample only tokens the env's action_masks() allows"""
    embed_dim: int = 64
    """width of the token embeddings and the transformer"""
    eval_episodes: int = 200
    """greedy evaluation episodes on the test split at the end (0: none)"""

    # filled in at runtime
    batch_size: int = 0
    minibatch_size: int = 0
    num_iterations: int = 0


def parse_args(argv: list[str] | None = None) -> Args:
    """Command-line flags from the dataclass fields (``--total-timesteps``, ``--no-anneal-lr``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for field in dataclasses.fields(Args):
        if field.name in ("batch_size", "minibatch_size", "num_iterations"):
            continue
        flag = "--" + field.name.replace("_", "-")
        kind = {"bool": bool, "int": int, "float": float, "str": str}[str(field.type)]
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=field.default)
        else:
            parser.add_argument(flag, type=kind, default=field.default, help=" ")
    return Args(**vars(parser.parse_args(argv)))


def layer_init(layer: nn.Linear, std: float = np.sqrt(2), bias_const: float = 0.0) -> nn.Linear:
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, bias_const)
    return layer


class Agent(nn.Module):
    """Token embeddings + one transformer layer + actor and critic heads.

    Implementation details for token observations:
    * positions count real tokens only (``cumsum(attention_mask) - 1``): prompts are left-padded,
      so this puts the first prompt token at position 0 whatever the prompt's length;
    * a query token, the embedding of ``num_generated``, is appended and attends over the
      sequence: "read the prompt token at position t" is a single attention pattern;
    * features = the query's hidden state and the last real token's.
    """

    def __init__(self, vocab_size: int, context: int, max_steps: int, dim: int):
        super().__init__()
        self.token = nn.Embedding(vocab_size, dim)
        self.position = nn.Embedding(context, dim)
        self.step = nn.Embedding(max_steps + 1, dim)
        layer = nn.TransformerEncoderLayer(
            dim, 4, 2 * dim, dropout=0.0, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.critic = nn.Sequential(
            layer_init(nn.Linear(2 * dim, 64)), nn.Tanh(), layer_init(nn.Linear(64, 1), std=1.0)
        )
        # A small last layer makes the initial policy close to uniform (CleanRL's std=0.01).
        self.actor = nn.Sequential(
            layer_init(nn.Linear(2 * dim, 64)),
            nn.Tanh(),
            layer_init(nn.Linear(64, vocab_size), std=0.01),
        )

    def features(self, ids: torch.Tensor, mask: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        x = torch.cat([self.token(ids) + self.position(positions), self.step(step)[:, None]], 1)
        padding = torch.cat([mask == 0, torch.zeros_like(mask[:, :1], dtype=torch.bool)], 1)
        x = self.norm(self.encoder(x, src_key_padding_mask=padding))
        last = (mask * torch.arange(mask.shape[1], device=mask.device)).argmax(1)
        return torch.cat([x[:, -1], x[torch.arange(len(x)), last]], -1)

    def get_value(self, ids, mask, step):
        return self.critic(self.features(ids, mask, step))

    def get_action_and_value(self, ids, mask, step, action_mask, action=None):
        hidden = self.features(ids, mask, step)
        logits = self.actor(hidden)
        if action_mask is not None:
            logits = logits.masked_fill(~action_mask, -1e9)  # masked tokens: probability 0
        probs = Categorical(logits=logits)
        if action is None:
            action = probs.sample()
        return action, probs.log_prob(action), probs.entropy(), self.critic(hidden)


def to_tensors(obs: dict[str, np.ndarray], device: torch.device):
    """The env's int64 arrays as long tensors: no float round trip (unlike SB3's buffers)."""
    return (
        torch.as_tensor(obs["input_ids"], device=device),
        torch.as_tensor(obs["attention_mask"], device=device),
        torch.as_tensor(obs["num_generated"][:, 0], device=device),
    )


def evaluate(agent: Agent, args: Args, device: torch.device) -> float:
    """Mean score of greedy (argmax) completions of ``eval_episodes`` test-split prompts."""
    envs = gym.make_vec(
        args.env_id,
        num_envs=args.num_envs,
        autoreset_mode="SameStep",
        **{**json.loads(args.env_kwargs), "reward_mode": "sparse"},
    )
    obs, _ = envs.reset(seed=args.seed + 10_000, options={"split": "test"})
    mask = torch.as_tensor(np.array(envs.action_masks()[0]), device=device)
    scores: list[float] = []
    while len(scores) < args.eval_episodes:
        with torch.no_grad():
            logits = agent.actor(agent.features(*to_tensors(obs, device)))
            if args.mask_actions:
                logits = logits.masked_fill(~mask, -1e9)
        obs, _, terminated, truncated, infos = envs.step(logits.argmax(-1).cpu().numpy())
        if "final_info" in infos:
            done = infos["_final_info"]
            scores.extend(infos["final_info"]["score"][done].tolist())
    envs.close()
    return float(np.mean(scores[: args.eval_episodes]))


def train(args: Args) -> dict[str, float]:
    """Run PPO; returns the mean training return of the first and last 10% of episodes, the
    greedy test score and the wall time."""
    args.batch_size = int(args.num_envs * args.num_steps)
    args.minibatch_size = int(args.batch_size // args.num_minibatches)
    args.num_iterations = max(1, args.total_timesteps // args.batch_size)

    # Seeding: Python, numpy, torch and the environments (slot i gets seed + i).
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")

    # The native vector env. SAME_STEP autoreset: when an episode ends, step() already returns
    # the first observation of the next one, so `next_done` below marks a boundary exactly as
    # in CleanRL's classic loop.
    envs = gym.make_vec(
        args.env_id,
        num_envs=args.num_envs,
        autoreset_mode="SameStep",
        **json.loads(args.env_kwargs),
    )
    assert isinstance(envs.single_action_space, gym.spaces.Discrete), "token ids only"
    obs_space = envs.single_observation_space
    vocab_size = int(envs.single_action_space.n)
    context = obs_space["input_ids"].shape[0]
    max_steps = int(obs_space["num_generated"].high[0])

    agent = Agent(vocab_size, context, max_steps, args.embed_dim).to(device)
    optimizer = optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)
    # The env's mask is the same for every step (special tokens off): fetch it once.
    action_mask = torch.as_tensor(np.array(envs.action_masks()[0]), device=device)
    if not args.mask_actions:
        action_mask = None

    # Rollout storage: token ids stay int64 (an id is an index, never a float feature).
    n, t = args.num_steps, args.num_envs
    ids_buf = torch.zeros((n, t, context), dtype=torch.long, device=device)
    mask_buf = torch.zeros((n, t, context), dtype=torch.long, device=device)
    step_buf = torch.zeros((n, t), dtype=torch.long, device=device)
    actions = torch.zeros((n, t), dtype=torch.long, device=device)
    logprobs = torch.zeros((n, t), device=device)
    rewards = torch.zeros((n, t), device=device)
    dones = torch.zeros((n, t), device=device)
    values = torch.zeros((n, t), device=device)

    global_step = 0
    start_time = time.time()
    next_obs, _ = envs.reset(seed=args.seed)
    next_ids, next_mask, next_step = to_tensors(next_obs, device)
    next_done = torch.zeros(t, device=device)
    episode_return = np.zeros(t)
    returns_log: list[float] = []

    for iteration in range(1, args.num_iterations + 1):
        if args.anneal_lr:
            frac = 1.0 - (iteration - 1.0) / args.num_iterations
            optimizer.param_groups[0]["lr"] = frac * args.learning_rate

        for step in range(n):
            global_step += t
            ids_buf[step], mask_buf[step], step_buf[step] = next_ids, next_mask, next_step
            dones[step] = next_done

            with torch.no_grad():
                action, logprob, _, value = agent.get_action_and_value(
                    next_ids, next_mask, next_step, action_mask
                )
                values[step] = value.flatten()
            actions[step] = action
            logprobs[step] = logprob

            next_obs, reward, terminations, truncations, infos = envs.step(action.cpu().numpy())
            # Truncation at max_new_tokens is part of the task (the observation holds the step
            # count, and the score is final), so it ends the episode like termination: no
            # bootstrapping from the next observation, which belongs to a new episode anyway.
            done = np.logical_or(terminations, truncations)
            rewards[step] = torch.as_tensor(reward, dtype=torch.float32, device=device)
            next_ids, next_mask, next_step = to_tensors(next_obs, device)
            next_done = torch.as_tensor(done, dtype=torch.float32, device=device)

            episode_return += reward
            for i in np.flatnonzero(done):
                returns_log.append(float(episode_return[i]))
                episode_return[i] = 0.0

        # Generalized Advantage Estimation, bootstrapping from the value of the next state.
        with torch.no_grad():
            next_value = agent.get_value(next_ids, next_mask, next_step).reshape(1, -1)
            advantages = torch.zeros_like(rewards)
            lastgaelam = 0
            for s in reversed(range(n)):
                if s == n - 1:
                    nextnonterminal = 1.0 - next_done
                    nextvalues = next_value
                else:
                    nextnonterminal = 1.0 - dones[s + 1]
                    nextvalues = values[s + 1]
                delta = rewards[s] + args.gamma * nextvalues * nextnonterminal - values[s]
                lastgaelam = delta + args.gamma * args.gae_lambda * nextnonterminal * lastgaelam
                advantages[s] = lastgaelam
            returns = advantages + values

        # Flatten the batch.
        b_ids = ids_buf.reshape(-1, context)
        b_mask = mask_buf.reshape(-1, context)
        b_step = step_buf.reshape(-1)
        b_logprobs = logprobs.reshape(-1)
        b_actions = actions.reshape(-1)
        b_advantages = advantages.reshape(-1)
        b_returns = returns.reshape(-1)
        b_values = values.reshape(-1)

        # Optimise the policy and value network.
        b_inds = np.arange(args.batch_size)
        for _epoch in range(args.update_epochs):
            np.random.shuffle(b_inds)
            approx_kl = torch.zeros(())
            for start in range(0, args.batch_size, args.minibatch_size):
                mb = b_inds[start : start + args.minibatch_size]
                _, newlogprob, entropy, newvalue = agent.get_action_and_value(
                    b_ids[mb], b_mask[mb], b_step[mb], action_mask, b_actions[mb]
                )
                logratio = newlogprob - b_logprobs[mb]
                ratio = logratio.exp()
                with torch.no_grad():
                    approx_kl = (
                        (ratio - 1) - logratio
                    ).mean()  # http://joschu.net/blog/kl-approx.html

                mb_advantages = b_advantages[mb]
                if args.norm_adv:
                    mb_advantages = (mb_advantages - mb_advantages.mean()) / (
                        mb_advantages.std() + 1e-8
                    )

                # Clipped surrogate objective.
                pg_loss1 = -mb_advantages * ratio
                pg_loss2 = -mb_advantages * torch.clamp(
                    ratio, 1 - args.clip_coef, 1 + args.clip_coef
                )
                pg_loss = torch.max(pg_loss1, pg_loss2).mean()

                # Value loss, clipped around the rollout's values.
                newvalue = newvalue.view(-1)
                if args.clip_vloss:
                    v_loss_unclipped = (newvalue - b_returns[mb]) ** 2
                    v_clipped = b_values[mb] + torch.clamp(
                        newvalue - b_values[mb], -args.clip_coef, args.clip_coef
                    )
                    v_loss_clipped = (v_clipped - b_returns[mb]) ** 2
                    v_loss = 0.5 * torch.max(v_loss_unclipped, v_loss_clipped).mean()
                else:
                    v_loss = 0.5 * ((newvalue - b_returns[mb]) ** 2).mean()

                loss = pg_loss - args.ent_coef * entropy.mean() + v_loss * args.vf_coef
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
                optimizer.step()

            if args.target_kl and approx_kl > args.target_kl:
                break

        if returns_log and (iteration % 10 == 0 or iteration == args.num_iterations):
            recent = np.mean(returns_log[-200:])
            sps = int(global_step / (time.time() - start_time))
            print(f"global_step={global_step} episodic_return={recent:.3f} SPS={sps}", flush=True)

    envs.close()
    tenth = max(1, len(returns_log) // 10)
    result = {
        "first_return": float(np.mean(returns_log[:tenth])),
        "last_return": float(np.mean(returns_log[-tenth:])),
        "episodes": float(len(returns_log)),
        "train_seconds": time.time() - start_time,
    }
    if args.eval_episodes:
        result["test_score"] = evaluate(agent, args, device)
    return result


if __name__ == "__main__":
    result = train(parse_args())
    print(json.dumps(result))
