"""The loop every learner shares: rollout -> ``update`` -> logging, evaluation, checkpoints.

A learner subclasses :class:`Learner` and writes :meth:`Learner.update`: given a
:class:`~agents.rollout.Rollout`, its advantages, its loss and its gradient steps, top to bottom
in its own file (``reinforce.py``, ``a2c.py``, ``ppo.py``, ``grpo.py``, ``rloo.py``), from the
plain functions of ``agents/update.py`` and ``agents/advantages.py`` and one method of this class,
:meth:`Learner.optimizer_step`. Everything around the update lives here, once:

* ``learn``: the loop, logging every iteration (:class:`~agents.logger.Logger`: a tqdm bar, CSV
  and TensorBoard scalars), periodic evaluation, early stopping (patience or a reward threshold)
  and periodic checkpoints;
* the non-finite policy: a NaN/inf reward, loss or gradient never reaches the weights; the update
  is skipped (counted, logged and warned) or training stops with :class:`NonFiniteError`;
* checkpoints: what a run's state is (weights, optimizer, RNG states, counters, the training env's
  ``state_dict()`` when it has one: a curriculum's), written and read back checked by
  ``checkpoint.py``. :meth:`Learner.resume` continues the same run bit for bit (all randomness
  flows from the learner's own numpy and torch generators, which are saved).

A learner may also override :meth:`Learner.acting_policy` (what acts in rollouts: NLPO's masked
policy) and the ``extra_*`` methods (state of its own in checkpoints: a moving-average baseline,
NLPO's mask policy).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents import distributed
from agents.advantages import KL_ESTIMATORS
from agents.checkpoint import (
    CheckpointError,
    env_state_of,
    read_checkpoint,
    resolve_checkpoint,
    restore_env_state,
    write_checkpoint,
)
from agents.faults import count_failures, fault_counts, without_failed
from agents.logger import Logger
from agents.policy import LMPolicy
from agents.rollout import Rollout, cat_rollouts, collect_rollout
from textgym.errors import InvalidArgumentError

# Settings that had other names: a run.json or --config that still uses one gets the new name.
RENAMED_SETTINGS = {
    "normalize_advantages": "whiten_advantages (PPO, A2C, NLPO) or scale_advantages (REINFORCE, "
    "RLOO)",
    "kl_target": "adaptive_kl_target",
    "kl_horizon": "adaptive_kl_horizon",
}
NONFINITE_POLICIES = ("skip", "raise")
TIME_MARGIN = 0.1  # learn(time_limit=T) may run past T by at most this share of T


class NonFiniteError(FloatingPointError):
    """A reward, loss or gradient was NaN/inf and ``on_nonfinite="raise"``."""


@dataclass
class LearnerConfig:
    """Settings every learner shares.

    Attributes:
        seed: seeds the learner's RNGs (prompt draws, sampling, minibatch order).
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        max_grad_norm: clip the global gradient norm to this (None: no clipping).
        update_epochs: passes over each rollout.
        minibatch_size: sequences per gradient step (None: the whole rollout in one step).
        episodes_per_update: episodes collected before each update, in rollouts of ``num_envs``
            (None: one rollout). Learning a task from scratch needs a few hundred episodes per
            update; a pretrained LM learns from tens.
        kl_coef: weight of the KL penalty to the reference model (0 disables it).
        kl_estimator: ``"k1"``, ``"k2"`` or ``"k3"`` (see :func:`agents.advantages.kl_estimate`).
        ent_coef: weight of the entropy bonus.
        train_split: the prompt split rollouts draw from.
        on_nonfinite: ``"skip"`` a NaN/inf update (warn, count) or ``"raise"`` NonFiniteError.
        log_dir: write ``progress.csv`` (one row per iteration) and TensorBoard scalars here.
        tensorboard: also write TensorBoard scalars into ``log_dir`` (needs ``tensorboard``).
        progress: show a tqdm progress bar.
        checkpoint_dir: where checkpoints go (None: no checkpoints).
        checkpoint_every: save every this many iterations (0: only at the end of ``learn``).
        keep_checkpoints: how many recent checkpoints to keep.
        save_optimizer: checkpoints hold the optimizer state (needed to resume; for AdamW
            twice the weights' size). False: weights-only checkpoints, for finished runs and
            exports: ``textgym eval`` reads them, :meth:`Learner.resume` refuses them.
        eval_every: evaluate on ``eval_envs`` every this many iterations (0: never).
        eval_episodes: episodes per evaluation.
        patience: stop when the eval reward has not improved for this many evaluations (0: off).
        reward_threshold: stop once the eval reward (or, without evaluation, the training
            reward) reaches this.
        max_failure_rate: stop with :class:`~agents.faults.FailureRateError` when more than
            this share of an iteration's episodes failed (an env made with
            ``on_failure="end_episode"`` ends an episode as failed when a scorer, partner or tool
            call still fails after its retries). Failed episodes never reach the loss, whatever
            this is (``agents/faults.py``).
    """

    seed: int = 0
    lr: float = 5e-5
    weight_decay: float = 0.0
    max_grad_norm: float | None = 1.0
    update_epochs: int = 1
    minibatch_size: int | None = None
    kl_coef: float = 0.05
    kl_estimator: str = "k1"
    ent_coef: float = 0.0
    train_split: str = "train"
    on_nonfinite: str = "skip"
    log_dir: str | None = None
    tensorboard: bool = True
    progress: bool = True
    checkpoint_dir: str | None = None
    checkpoint_every: int = 0
    keep_checkpoints: int = 2
    save_optimizer: bool = True
    eval_every: int = 0
    eval_episodes: int = 64
    patience: int = 0
    reward_threshold: float | None = None
    episodes_per_update: int | None = None
    max_failure_rate: float = 0.5

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Raise :class:`~textgym.errors.InvalidArgumentError` naming the first invalid setting.
        The one place a config is validated: it runs when the config is made and again when a
        learner is built from it; each learner's config extends it (``super().check()``)."""
        rate, epu, size = self.max_failure_rate, self.episodes_per_update, self.minibatch_size
        for valid, problem in (
            (
                self.on_nonfinite in NONFINITE_POLICIES,
                f"on_nonfinite must be one of {NONFINITE_POLICIES}",
            ),
            (self.kl_estimator in KL_ESTIMATORS, f"kl_estimator must be one of {KL_ESTIMATORS}"),
            (isinstance(self.save_optimizer, bool), "save_optimizer must be True or False"),
            (
                epu is None or _is_int_at_least(epu, 1),
                "episodes_per_update must be an integer >= 1 (or None: one rollout of num_envs)",
            ),
            (_is_number(rate) and 0 <= rate <= 1, "max_failure_rate must be a number in [0, 1]"),
            (_is_int_at_least(self.update_epochs, 1), "update_epochs must be an integer >= 1"),
            (
                size is None or _is_int_at_least(size, 1),
                "minibatch_size must be an integer >= 1 (or None: the whole batch)",
            ),
        ):
            if not valid:
                field = problem.split()[0]
                raise InvalidArgumentError(
                    f"{type(self).__name__}: {problem}, got {getattr(self, field)!r}"
                )

    @classmethod
    def for_policy(cls, policy: Any, **changes: Any) -> LearnerConfig:
        """This config with ``policy``'s learner defaults (:attr:`LMPolicy.learner_defaults`:
        e.g. :meth:`LMPolicy.tiny`'s from-scratch settings), then ``changes``. A learner built
        without a config uses ``Config.for_policy(policy)``."""
        names = {f.name for f in dataclasses.fields(cls)}
        for key in changes:
            if key not in names:
                hint = f" (renamed: {RENAMED_SETTINGS[key]})" if key in RENAMED_SETTINGS else ""
                raise InvalidArgumentError(f"{cls.__name__} has no setting {key!r}{hint}")
        defaults = getattr(policy, "learner_defaults", None) or {}
        return cls(**{**{k: v for k, v in defaults.items() if k in names}, **changes})


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)


def _is_int_at_least(value: Any, low: int) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= low


# Columns every CSV row has, so the header of the first row fits all later ones.
_EVAL_KEYS = ("eval_reward", "eval_reward_ci", "eval_kl", "eval_perplexity")


class Learner:
    """Base class: owns the policy, the envs, the optimizer, the RNGs and the counters.

    Args:
        policy: the :class:`~agents.policy.LMPolicy` to train.
        envs: a textgym vector env (``gym.make_vec("TextGen-v0", num_envs=N)``).
        config: the learner's config dataclass (defaults if None).
        eval_envs: a vector env for periodic evaluation / early stopping (optional).
        engine: what generates the training rollouts (:mod:`agents.engines`; None: the per-token
            path), given the new weights after every update (``sync_weights``).
    """

    Config: type[LearnerConfig] = LearnerConfig
    group_size: int = 1  # slots per prompt in a rollout (GRPO/RLOO: > 1)

    def __init__(
        self,
        policy: LMPolicy,
        envs: Any,
        config: LearnerConfig | None = None,
        *,
        eval_envs: Any = None,
        engine: Any = None,
    ):
        self.config = config if config is not None else self.Config.for_policy(policy)
        c = self.config
        c.check()  # again: a config may have been changed since it was made
        self.policy, self.envs, self.eval_envs = policy, envs, eval_envs
        if engine is not None and type(self).acting_policy is not Learner.acting_policy:
            raise InvalidArgumentError(
                f"{type(self).__name__} acts through a policy of its own (a mask at every step), "
                f"which an engine does not run: leave engine=None (the per-token path)"
            )
        self.engine = engine
        self.num_envs = int(envs.num_envs)
        self.group_size = int(getattr(c, "group_size", 1))
        self.rollouts_per_update = math.ceil((c.episodes_per_update or 1) / self.num_envs)
        if self.num_envs % self.group_size:
            raise InvalidArgumentError(
                f"num_envs={self.num_envs} must be a multiple of group_size={self.group_size}"
            )
        # Under torchrun / accelerate launch: join the process group, start from rank 0's weights
        # (before the reference copy is taken). See agents/distributed.py.
        self.dist = distributed.setup()
        if self.dist.enabled:
            distributed.broadcast_parameters(policy)
        policy.ensure_reference()
        self.params = [p for p in policy.parameters() if p.requires_grad]
        # fused: one kernel for all parameters (4x faster than the per-tensor loop for SmolLM2 on
        # CPU; what transformers' Trainer, hence TRL, uses by default), where torch has it.
        fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in self.params)
        self.optimizer = torch.optim.AdamW(
            self.params, lr=c.lr, weight_decay=c.weight_decay, fused=fused or None
        )
        # All randomness of a run flows from these two generators (saved in checkpoints).
        self.rng = np.random.default_rng(c.seed)
        # The numpy RNG (prompt seeds, minibatch order) is the same on every rank; sampling is not.
        self.generator = torch.Generator(device=policy.device).manual_seed(c.seed + self.dist.rank)
        self.iteration = self.episodes = self.tokens = self.skipped_updates = 0
        self.failed_episodes = 0  # episodes that ended as failed, left out of the updates
        self.iteration_faults: dict[str, float] = {}  # this iteration's failure counts
        self._saved_iteration: int | None = None  # the iteration save_checkpoint last wrote
        self.kl_coef = c.kl_coef
        self.best_eval = -math.inf
        self.evals_without_improvement = 0
        self.stop_reason: str | None = None
        self.iteration_seconds: list[float] = []  # each iteration of the last learn(), in s
        self.history: list[dict[str, float]] = []

    # -- the loop --------------------------------------------------------------------------------

    def learn(
        self,
        total_episodes: int | None = None,
        *,
        iterations: int | None = None,
        time_limit: float | None = None,
    ) -> Learner:
        """Train until ``total_episodes`` episodes in all (counting resumed ones), or for
        ``iterations`` more iterations; one iteration = one episode per env slot. Stops earlier
        on early stopping (``stop_reason`` says why) or at ``time_limit`` seconds: an iteration
        starts only if it would end by then, within :data:`TIME_MARGIN` of it, judged by the
        mean of the last three iterations (``iteration_seconds``); the first always runs."""
        if (total_episodes is None) == (iterations is None):
            raise ValueError("pass exactly one of total_episodes or iterations")
        if iterations is not None:
            target = self.iteration + iterations
        else:
            per_iteration = self.num_envs * self.rollouts_per_update * self.dist.world_size
            target = math.ceil(total_episodes / per_iteration)
        c = self.config
        main = self.dist.is_main  # logs and the progress bar on rank 0 only
        logger = Logger(
            c.log_dir if main else None,
            tensorboard=c.tensorboard,
            progress=c.progress and main,
            total=target,
            initial=self.iteration,
            desc=type(self).__name__,
        )
        self.stop_reason = None
        self.iteration_seconds = []
        start = time.perf_counter()
        try:
            while self.iteration < target and self.stop_reason is None:
                if time_limit is not None:
                    elapsed = time.perf_counter() - start
                    # The next iteration will take about as long as the last few did; start it
                    # only if it would end within the budget plus TIME_MARGIN of it.
                    recent = self.iteration_seconds[-3:]
                    estimate = sum(recent) / len(recent) if recent else 0.0
                    # rank 0's clock decides, so that every rank stops at the same iteration
                    if distributed.broadcast_flag(
                        elapsed >= time_limit or elapsed + estimate > time_limit * (1 + TIME_MARGIN)
                    ):
                        self.stop_reason = (
                            f"time limit of {time_limit:.0f} s reached"
                            if elapsed >= time_limit
                            else f"time limit of {time_limit:.0f} s: the next iteration "
                            f"(~{estimate:.0f} s) would end at {elapsed + estimate:.0f} s"
                        )
                        break
                iteration_start = time.perf_counter()
                row = self.train_iteration()
                row.update(self._maybe_evaluate())
                logger.log(row)
                self.history.append(row)
                self.iteration_seconds.append(time.perf_counter() - iteration_start)
                if (
                    c.checkpoint_dir
                    and c.checkpoint_every
                    and self.iteration % c.checkpoint_every == 0
                ):
                    self.save_checkpoint()
        finally:
            logger.close()
        if c.checkpoint_dir and self._saved_iteration != self.iteration:  # not twice
            self.save_checkpoint()
        return self

    def train_iteration(self) -> dict[str, float]:
        """One iteration: a rollout, then :meth:`update`; returns the logged row.

        Failed episodes (``Rollout.failed``: a scorer, partner or tool call still failed after
        the env's retries) are left out before the update sees the rollout: for a group learner
        the whole group (its baseline would come from fewer members), and on every rank the same
        number of episodes (their gradient steps run together). Logged per iteration:
        ``failed_episodes`` and, when the env counts them (``env.fault_counts``), ``retries`` and
        ``timeouts``. More than ``max_failure_rate`` failed:
        :class:`~agents.faults.FailureRateError` (see ``agents/faults.py``)."""
        t0 = time.perf_counter()
        counts_before = fault_counts(self.envs)
        rollout = cat_rollouts([self.rollout() for _ in range(self.rollouts_per_update)])
        self.iteration += 1
        world = self.dist.world_size
        self.episodes += rollout.num_envs * world
        self.tokens += round(
            distributed.mean_over_ranks({"tokens": rollout.num_tokens})["tokens"] * world
        )
        tokens_per_s = rollout.num_tokens / max(rollout.seconds, 1e-9)  # failed ones included
        self.iteration_faults = {}
        count_failures(self, rollout, counts_before)  # may stop the run: FailureRateError
        rollout = without_failed(rollout, self.group_size)
        returns = rollout.episode_returns
        row: dict[str, float] = {
            "iteration": self.iteration,
            "episodes": self.episodes,
            "reward": float(returns.mean()) if len(returns) else math.nan,
            "reward_std": float(returns.std()) if len(returns) > 1 else 0.0,
            "length": float(rollout.lengths.float().mean()) if len(returns) else math.nan,
            "tokens_per_s": tokens_per_s,
            "rollout_seconds": rollout.seconds,  # the rest of ``seconds`` is the update's
            # The env's numeric infos of agents.rollout.LOGGED_INFO_KEYS (a curriculum's level
            # and success rate), when it reports them.
            **(rollout.info_means or {}),
        }
        if distributed.any_rank(not torch.isfinite(rollout.rewards).all()):
            self._nonfinite("reward")
        elif rollout.num_envs:
            row.update(self.update(rollout))
            if self.engine is not None:
                self.engine.sync_weights()  # the next rollout samples from the updated policy
        row["kl_coef"] = self.kl_coef
        row["skipped_updates"] = self.skipped_updates
        row.update(self.iteration_faults)  # failed episodes (retries, timeouts), extra rollouts too
        seconds = time.perf_counter() - t0
        row["samples_per_s"] = rollout.num_envs / seconds
        row["seconds"] = seconds
        row.setdefault("kl", math.nan)
        row.update(dict.fromkeys(_EVAL_KEYS, math.nan))
        if self.dist.enabled:  # log (and decide on) the figures of the whole batch
            # iteration and episodes are already global; every other figure is averaged.
            row = {
                **row,
                **distributed.mean_over_ranks(
                    {k: v for k, v in row.items() if k not in ("iteration", "episodes")}
                ),
            }
        threshold = self.config.reward_threshold
        if threshold is not None and not self.config.eval_every and row["reward"] >= threshold:
            self.stop_reason = f"training reward {row['reward']:.4f} reached the threshold"
        return row

    def update(self, rollout: Rollout) -> dict[str, float]:
        """Advantages + gradient steps for one rollout; returns metrics to log. Subclasses."""
        raise NotImplementedError

    def rollout(self) -> Rollout:
        """One episode per slot of the training envs, by :meth:`acting_policy`, with the next
        prompt seeds from the learner's RNG."""
        return collect_rollout(
            self.acting_policy(),
            self.envs,
            seeds=self._rollout_seeds(),
            split=self.config.train_split,
            generator=self.generator,
            engine=self.engine,
        )

    def acting_policy(self) -> Any:
        """What acts in training rollouts: the policy (NLPO: the policy under its action mask)."""
        return self.policy

    def _rollout_seeds(self) -> list[int]:
        # One seed per group: a group's slots draw the same prompt. Rank r of W takes the seeds a
        # single process with W * num_envs slots would give slots [r * N, (r + 1) * N).
        per_rank = self.num_envs // self.group_size
        seeds = self.rng.integers(0, 2**31 - 1, size=per_rank * self.dist.world_size)
        seeds = seeds[self.dist.rank * per_rank : (self.dist.rank + 1) * per_rank]
        return np.repeat(seeds, self.group_size).tolist()

    # -- evaluation and early stopping -----------------------------------------------------------

    def _maybe_evaluate(self) -> dict[str, float]:
        c = self.config
        if self.eval_envs is None or not c.eval_every or self.iteration % c.eval_every:
            return {}
        from agents.evaluation import evaluate

        # Each rank evaluates its share with its own seed; the episodes are gathered.
        result = evaluate(self, self.eval_envs, c.eval_episodes, split="test", gather=True)
        row = {
            "eval_reward": result.reward_mean,
            "eval_reward_ci": (result.reward_ci[1] - result.reward_ci[0]) / 2,
            "eval_kl": result.kl,
            "eval_perplexity": result.perplexity,
        }
        if result.reward_mean > self.best_eval:
            self.best_eval, self.evals_without_improvement = result.reward_mean, 0
        else:
            self.evals_without_improvement += 1
        if c.patience and self.evals_without_improvement >= c.patience:
            self.stop_reason = f"eval reward did not improve for {c.patience} evaluations"
        if c.reward_threshold is not None and result.reward_mean >= c.reward_threshold:
            self.stop_reason = f"eval reward {result.reward_mean:.4f} reached the threshold"
        return row

    # -- what every update calls -----------------------------------------------------------------

    def uses_reference(self) -> bool:
        """Whether updates need the reference model's log-probs (a KL penalty, or a controller
        that adapts it). Without, no reference forward runs and the logged ``kl`` is NaN."""
        return self.kl_coef != 0 or bool(getattr(self.config, "adaptive_kl", False))

    def optimizer_step(self, loss: torch.Tensor) -> bool:
        """Backward, clip, step; a non-finite loss or gradient skips the step (or raises)."""
        self.optimizer.zero_grad(set_to_none=True)
        finite = bool(torch.isfinite(loss))
        if not finite and not self.dist.enabled:
            return self._nonfinite("loss")
        if finite:
            loss.backward()
        # Distributed: average the gradients over ranks (what DDP does; done by hand because the
        # policy trains through custom forward paths; see agents/distributed.py). A non-finite
        # loss on any rank makes every rank skip this step together.
        if self.dist.enabled and not distributed.all_reduce_gradients(self.params, finite):
            self.optimizer.zero_grad(set_to_none=True)
            return self._nonfinite("loss" if not finite else "loss (on another rank)")
        max_norm = self.config.max_grad_norm
        norm = torch.nn.utils.clip_grad_norm_(self.params, max_norm if max_norm else math.inf)
        if not torch.isfinite(norm):
            self.optimizer.zero_grad(set_to_none=True)
            return self._nonfinite("gradient")
        self.optimizer.step()
        return True

    def _nonfinite(self, what: str) -> bool:
        message = f"non-finite {what} at iteration {self.iteration}"
        if self.config.on_nonfinite == "raise":
            raise NonFiniteError(f"{message}; training stopped (on_nonfinite='raise')")
        self.skipped_updates += 1
        warnings.warn(
            f"{message}: update skipped ({self.skipped_updates} skipped so far; "
            f"on_nonfinite='raise' stops instead)",
            RuntimeWarning,
            stacklevel=3,
        )
        return False

    # -- checkpoints -----------------------------------------------------------------------------

    def extra_state(self) -> dict[str, Any]:
        """JSON-able state a subclass adds to checkpoints (e.g. a moving-average baseline)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`extra_state` returned."""

    def extra_state_problem(self, state: dict[str, Any]) -> str | None:
        """What is wrong with a checkpoint's extra state for this learner (None: it fits);
        checked before :meth:`resume` changes anything."""
        return None

    def extra_tensors(self) -> dict[str, torch.Tensor]:
        """Tensors a subclass adds to checkpoints, as ``extra.safetensors`` (NLPO: its mask
        policy's weights)."""
        return {}

    def extra_tensors_problem(self, tensors: dict[str, torch.Tensor]) -> str | None:
        """What is wrong with a checkpoint's extra tensors for this learner (None: they fit);
        checked before :meth:`resume` changes anything."""
        return None

    def load_extra_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore what :meth:`extra_tensors` returned (after the weights and
        :meth:`load_extra_state`)."""

    def save_checkpoint(self, directory: str | os.PathLike | None = None) -> Path:
        """Write ``<dir>/iter-NNNNNN/`` (model.safetensors, optimizer.pt, rng.safetensors,
        state.json, and extra.safetensors if the learner has extra tensors) atomically, then
        point ``<dir>/latest`` at it; returns the folder. state.json holds the training env's
        ``state_dict()`` when it has one (a curriculum's), which :meth:`resume` loads back.
        Distributed: every rank must call it; rank 0 writes (with every rank's sampling RNG)."""
        root = Path(directory or self.config.checkpoint_dir or "checkpoints")
        name = f"iter-{self.iteration:06d}"
        generators = distributed.gather_tensors(self.generator.get_state())
        env_state = env_state_of(self.envs)  # a curriculum's level and window, say
        env_states = distributed.gather_objects(env_state)  # every rank's
        if not self.dist.is_main:
            distributed.barrier()  # wait for rank 0's write, so "latest" is ready on return
            self._saved_iteration = self.iteration if directory is None else self._saved_iteration
            return root / name

        def write(folder: Path) -> dict[str, Any]:
            from safetensors.torch import save_file, save_model

            save_model(self.policy, str(folder / "model.safetensors"))  # handles tied weights
            if self.config.save_optimizer:
                torch.save(self.optimizer.state_dict(), folder / "optimizer.pt")
            rng = {"torch": torch.get_rng_state(), "generator": self.generator.get_state()}
            if self.dist.enabled:
                rng.update({f"generator_rank{r}": g for r, g in enumerate(generators)})
            if torch.cuda.is_available():
                rng["cuda"] = torch.cuda.get_rng_state()
            save_file(rng, str(folder / "rng.safetensors"))
            extra = self.extra_tensors()
            if extra:
                tensors = {k: v.contiguous() for k, v in extra.items()}
                save_file(tensors, str(folder / "extra.safetensors"))
            return {
                "learner": type(self).__name__,
                "iteration": self.iteration,
                "episodes": self.episodes,
                "tokens": self.tokens,
                "skipped_updates": self.skipped_updates,
                "failed_episodes": self.failed_episodes,
                "kl_coef": self.kl_coef,
                "best_eval": self.best_eval if math.isfinite(self.best_eval) else None,
                "evals_without_improvement": self.evals_without_improvement,
                "numpy_rng": self.rng.bit_generator.state,
                "world_size": self.dist.world_size,
                "extra": self.extra_state(),
                "config": dataclasses.asdict(self.config),
                "reference": self.policy.reference_record(),  # what KL is measured against
                "env_state": env_state,
                "save_optimizer": bool(self.config.save_optimizer),
                **({"env_state_ranks": env_states} if self.dist.enabled else {}),
            }

        final = write_checkpoint(
            root, name, write, keep=self.config.keep_checkpoints, size=self._checkpoint_size()
        )
        self._saved_iteration = self.iteration if directory is None else self._saved_iteration
        distributed.barrier()
        return final

    def _checkpoint_size(self) -> int:
        """About how many bytes a checkpoint takes: the weights (tied ones once), and the
        optimizer's moments when it is saved."""
        weights = {t.data_ptr(): t.nbytes for t in self.policy.state_dict().values()}
        size = sum(weights.values())
        if self.config.save_optimizer:
            for st in self.optimizer.state.values():
                size += sum(v.nbytes for v in st.values() if isinstance(v, torch.Tensor))
        return size

    def resume(self, path: str | os.PathLike | None = None) -> Learner:
        """Continue a run from a checkpoint folder, or from a checkpoint dir's ``latest``.

        Everything is read and checked before anything is changed: a missing, truncated or
        corrupted file, a checkpoint of another learner or another model shape, a weights-only
        one (``save_optimizer=False``), or one whose KL reference is not this learner's, raises
        :class:`~textgym.errors.CheckpointError` naming the file and the problem, and leaves the
        learner as it was. The training env's state (a
        curriculum's level and window, recorded by :meth:`save_checkpoint`) is loaded into
        ``envs``; a checkpoint with one and an env without (or the reverse) is a
        :class:`~textgym.errors.CheckpointError` too. Nothing is unpickled: tensors come from
        safetensors, the optimizer state from ``torch.load(weights_only=True)``, the rest from
        JSON."""
        path = resolve_checkpoint(path or self.config.checkpoint_dir or "checkpoints")
        state, rng, optim, extra = read_checkpoint(
            path,
            learner=type(self).__name__,
            policy=self.policy,
            optimizer=self.optimizer,
            check_extra=self.extra_tensors_problem,
            reference=self.policy.reference_record(),
        )
        problem = self.extra_state_problem(state["extra"])
        if problem:
            raise CheckpointError(f"{path / 'state.json'}: field 'extra': {problem}")
        # First: a training env state that does not fit this learner's env changes nothing.
        restore_env_state(path, state, self.envs, self.dist.rank)
        device = self.policy.device
        from safetensors.torch import load_model

        load_model(self.policy, str(path / "model.safetensors"), device=str(device))
        if self.engine is not None:
            self.engine.sync_weights()
        self.optimizer.load_state_dict(optim)
        torch.set_rng_state(rng["torch"])
        mine = f"generator_rank{self.dist.rank}"
        self.generator.set_state(rng[mine] if mine in rng else rng["generator"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state(rng["cuda"])
        self.iteration, self.episodes = state["iteration"], state["episodes"]
        self.tokens, self.skipped_updates = state["tokens"], state["skipped_updates"]
        self.failed_episodes = state.get("failed_episodes", 0)
        self.kl_coef = state["kl_coef"]
        self.best_eval = state["best_eval"] if state["best_eval"] is not None else -math.inf
        self.evals_without_improvement = state["evals_without_improvement"]
        self.rng.bit_generator.state = state["numpy_rng"]
        self.load_extra_state(state["extra"])
        self.load_extra_tensors(extra)
        return self
