"""Peer rows of the quality benchmark: the best-known implementations of the same algorithms.

* ``sb3-ppo``: Stable-Baselines3's PPO with the project's token extractor
  (:func:`agents.sb3.token_policy_kwargs`) on the native vector env (:func:`agents.sb3.make_sb3_env`),
  for small-vocabulary (character) tasks. Budget: the task's ``episodes`` (finished training
  episodes, counted by a callback) and ``max_tokens`` (SB3 timesteps: one env step is one
  generated token, the unit of our learners' ``tokens``), with ``num_envs`` envs, the same
  training split and env arguments.
* ``trl-grpo``: TRL's ``GRPOTrainer`` on the task's train prompts with the task's scorer as the
  reward function, from the same initial model (``build_policy``'s), for language-model tasks.
  Budget: the same number of completions (``episodes``, ``num_envs`` per optimizer step) of at most
  the env's ``max_new_tokens`` tokens, stopped early at ``max_tokens`` completion tokens or
  ``time_limit`` seconds. Its hyperparameters are our GRPO row's (``lr``, ``group_size``,
  ``kl_coef``, ``clip_range``, ``update_epochs``, loss aggregation, reward scaling, the KL
  term's ratio weighting, gradient clipping), overridable under the task's
  ``config["trl-grpo"]``. Given the same batch, the two compute the same gradient
  (``tests/test_grpo_matches_trl.py``).

Both are evaluated like our agents: the same test prompts (``EVAL_SEED``), the same number of
test episodes, the same decoding (greedy unless the task says otherwise) and the same figures;
the trained TRL model goes through textgym with :func:`agents.evaluate` (wrapped in
:class:`agents.LMPolicy`), the SB3 model through :func:`sb3_evaluate`, which steps the same
vector env with the same reset seeds.
"""

from __future__ import annotations

import math
import tempfile
import time
from typing import Any

import numpy as np

from agents.cli import EVAL_SEED
from benchmarks.presets import TaskSpec
from benchmarks.stats import token_budget

PEERS = ("sb3-ppo", "trl-grpo")
# Each peer's algorithm among our learners: the leaderboard states the difference of the two rows.
COUNTERPART = {"sb3-ppo": "ppo", "trl-grpo": "grpo"}
TRL_MISSING = "trl is not installed (pip install 'textgym[trl]')"
SB3_MISSING = "stable-baselines3 is not installed (pip install 'textgym[sb3]')"

# SB3 PPO settings: SB3's own defaults (2,048 env steps per update, minibatches of 64, 10
# epochs, lr 3e-4, no entropy bonus), with ``n_steps`` per env = 2,048 // num_envs so that an
# update sees SB3's default batch whatever the task's num_envs; the project's token extractor.
SB3_PPO_DEFAULTS: dict[str, Any] = {
    "n_steps": None,
    "batch_size": 64,
    "n_epochs": 10,
    "learning_rate": 3e-4,
    "clip_range": 0.2,
    "ent_coef": 0.0,
    "gamma": 0.99,
    "gae_lambda": 0.95,
    # token_policy_kwargs("ppo", ...)
    "embed_dim": 64,
    "n_layers": 1,
    "n_heads": 4,
    "hidden": [64],
}
_EXTRACTOR_KEYS = ("embed_dim", "n_layers", "n_heads", "hidden")


def missing(agent: str) -> str | None:
    """Why ``agent`` (a peer) cannot run here, or None."""
    from importlib.util import find_spec

    if agent == "sb3-ppo" and find_spec("stable_baselines3") is None:
        return SB3_MISSING
    if agent == "trl-grpo" and find_spec("trl") is None:
        return TRL_MISSING
    return None


def peer_config(task: Any, agent: str) -> dict[str, Any]:
    """The settings a peer cell runs with (also its part of the cell key)."""
    if agent == "sb3-ppo":
        return {**SB3_PPO_DEFAULTS, **task.config.get("sb3-ppo", {})}
    if agent == "trl-grpo":
        return {**_grpo_settings(task), **task.config.get("trl-grpo", {})}
    raise ValueError(f"not a peer: {agent!r}; peers are {', '.join(PEERS)}")


def _grpo_settings(task: Any) -> dict[str, Any]:
    """Our GRPO row's settings, in TRL's words."""
    from agents.grpo import GRPOConfig

    ours = task.agent_config("grpo")
    cfg = GRPOConfig(**{k: v for k, v in ours.items() if k in GRPOConfig.__dataclass_fields__})
    loss = {"token": "dapo", "sequence": "grpo", "dr_grpo": "dr_grpo"}[cfg.loss_type]
    scale = cfg.scale_rewards if cfg.scale_rewards is not None else cfg.loss_type != "dr_grpo"
    return {
        "learning_rate": cfg.lr,
        "num_generations": cfg.group_size,
        "beta": cfg.kl_coef,
        "use_bias_correction_kl": cfg.kl_bias_correction,
        "epsilon": cfg.clip_range,
        "num_iterations": cfg.update_epochs,
        "loss_type": loss,
        "scale_rewards": "group" if scale else "none",
        "max_grad_norm": cfg.max_grad_norm,
        "weight_decay": cfg.weight_decay,
        "temperature": 1.0,
    }


# -- evaluation of an SB3 model -----------------------------------------------------------------


def sb3_evaluate(
    model: Any,
    envs: Any,
    n_episodes: int,
    *,
    seed: int,
    split: str = "test",
    deterministic: bool = True,
) -> dict[str, Any]:
    """``n_episodes`` episodes of an SB3 model on a textgym vector env, as :func:`agents.evaluate`
    runs them: batches of ``num_envs`` episodes reset with the seeds of
    ``np.random.default_rng(seed)`` (hence the same prompts), every slot run to the end of its
    first episode. Returns every row (prompt, completion, score), the mean completion length and
    the mean per-token entropy of the policy's action distribution over the completions."""
    import torch

    policy = model.policy
    policy.set_training_mode(False)
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    lengths: list[int] = []
    entropy_sum, tokens = 0.0, 0
    n = envs.num_envs
    while len(rows) < n_episodes:
        seeds = rng.integers(0, 2**31 - 1, size=n).tolist()
        obs, _ = envs.reset(seed=seeds, options={"split": split})
        done = np.zeros(n, dtype=bool)
        steps = np.zeros(n, dtype=int)
        batch: list[dict[str, Any] | None] = [None] * n
        while not done.all():
            with torch.no_grad():
                obs_t, _ = policy.obs_to_tensor(obs)
                dist = policy.get_distribution(obs_t)
                actions = dist.get_actions(deterministic=deterministic).cpu().numpy()
                entropy = dist.entropy().float().cpu().numpy()
            live = ~done
            entropy_sum += float(entropy[live].sum())
            tokens += int(live.sum())
            steps[live] += 1
            obs, rewards, terminated, truncated, infos = envs.step(actions.astype(np.int64))
            for i in np.flatnonzero(live & (terminated | truncated)):
                score = float(infos["score"][i]) if "score" in infos else float(rewards[i])
                batch[i] = {
                    "prompt": str(infos["prompt"][i]),
                    "completion": str(infos["completion"][i]),
                    "score": score,
                }
                done[i] = True
        take = min(n, n_episodes - len(rows))
        rows += batch[:take]  # type: ignore[arg-type]
        lengths += steps[:take].tolist()
    return {
        "rows": rows,
        "mean_length": float(np.mean(lengths)),
        "entropy": entropy_sum / max(tokens, 1),
    }


# -- SB3 PPO ------------------------------------------------------------------------------------


def run_sb3_ppo(task: Any, seed: int, eval_envs: Any, *, greedy: bool = True) -> dict[str, Any]:
    """Train SB3 PPO for the task's budget, then evaluate it on the test split (see module doc).
    Returns the cell's fields (the harness adds the shared ones)."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback

    from agents.sb3 import make_sb3_env, token_policy_kwargs

    options = peer_config(task, "sb3-ppo")
    extractor = {k: options.pop(k) for k in _EXTRACTOR_KEYS if k in options}
    hidden = extractor.pop("hidden", [64])
    env = make_sb3_env(task.env_id, n_envs=task.num_envs, seed=seed, **task.env_kwargs)
    if options.get("n_steps") is None:
        options["n_steps"] = max(1, 2048 // task.num_envs)
    model = PPO(
        "MultiInputPolicy",
        env,
        seed=seed,
        verbose=0,
        device="cpu",
        policy_kwargs=token_policy_kwargs("ppo", hidden=hidden, **extractor),
        **options,
    )
    curve: list[list[float]] = []
    state = {"episodes": 0, "returns": [], "stop": None}

    class Budget(BaseCallback):
        """Stops at the task's budget; one curve point per rollout (mean episode return)."""

        def _on_training_start(self) -> None:
            self.start = time.perf_counter()

        def _on_step(self) -> bool:
            for info, d in zip(self.locals["infos"], self.locals["dones"]):
                if d:
                    state["episodes"] += 1
                    ep = info.get("episode")
                    state["returns"].append(float(ep["r"]) if ep else float(info.get("score", 0)))
            if state["episodes"] >= task.episodes:
                return False
            if task.max_tokens is not None and self.num_timesteps >= task.max_tokens:
                return False
            if task.time_limit is not None and time.perf_counter() - self.start >= task.time_limit:
                state["stop"] = f"time limit of {task.time_limit:.0f} s"
                return False
            return True

        def _on_rollout_end(self) -> None:
            if state["returns"]:
                curve.append(
                    [
                        state["episodes"],
                        self.num_timesteps,
                        float(np.mean(state["returns"])),
                        math.nan,
                    ]
                )
                state["returns"] = []

    upper = (
        task.max_tokens
        or task.episodes * token_budget(eval_envs.single_observation_space)[1]
        + model.n_steps * task.num_envs
    )
    start = time.perf_counter()
    model.learn(total_timesteps=int(upper), callback=Budget())
    train_seconds = time.perf_counter() - start
    if state["returns"]:  # the last, partial rollout (SB3 does not train on it)
        curve.append(
            [state["episodes"], model.num_timesteps, float(np.mean(state["returns"])), math.nan]
        )
    env.close()
    ev = sb3_evaluate(model, eval_envs, task.eval_episodes, seed=EVAL_SEED, deterministic=greedy)
    out = {
        "config": {**peer_config(task, "sb3-ppo"), "algorithm": "stable_baselines3.PPO"},
        "iterations": len(curve),
        "episodes": state["episodes"],
        "tokens": int(model.num_timesteps),
        "train_seconds": train_seconds,
        "curve": curve,
        "rows": ev["rows"],
        "entropy": ev["entropy"],
        "mean_length": ev["mean_length"],
    }
    if state["stop"]:
        out["stop_reason"] = state["stop"]
    return out


# -- TRL GRPOTrainer ----------------------------------------------------------------------------


def run_trl_grpo(task: Any, seed: int, envs: Any, policy: Any) -> dict[str, Any]:
    """Train ``policy.model`` (the task's initial model, or a warm-started one: TRL's KL
    reference is the model as given) with TRL's GRPOTrainer for the task's budget (see module
    doc); the harness then evaluates ``policy`` like our agents. ``envs``:
    a training vector env of the task (its train prompts, scorer, tokenizer and limits)."""
    import copy

    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    settings = peer_config(task, "trl-grpo")
    if envs.spec is not None and envs.spec.kwargs.get("chat_template"):
        raise ValueError("trl-grpo: chat_template envs are not supported here (plain prompts)")
    train = list(envs.prompts["train"])
    scorer = envs.scorer
    by_prompt = {ex.prompt: ex.reference for ex in train}
    max_new = token_budget(envs.single_observation_space)[1]
    batch = int(task.num_envs)
    group = int(settings["num_generations"])
    if batch % group:
        raise ValueError(f"trl-grpo: num_envs {batch} is not a multiple of the group size {group}")
    generations = max(1, math.ceil(task.episodes / batch))
    epochs = int(settings.get("num_iterations", 1))
    state = {"tokens": 0, "episodes": 0, "rewards": [], "stop": None}
    curve: list[list[float]] = []

    def reward(prompts, completions, **kwargs):
        refs = [by_prompt.get(p) for p in prompts]
        scores = [float(x) for x in scorer(list(prompts), list(completions), refs)]
        state["episodes"] += len(scores)
        state["rewards"] += scores
        return scores

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(train))
    repeat = math.ceil(generations * batch / group / max(len(train), 1)) + 1
    dataset = Dataset.from_dict({"prompt": [train[i].prompt for i in order] * repeat})
    tokenizer = copy.deepcopy(envs.tokenizer)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    extra = {k: v for k, v in settings.items() if k not in ("temperature",)}
    args = GRPOConfig(
        output_dir=f"/tmp/textgym-trl-grpo-{seed}",
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=1,
        max_completion_length=max_new,
        max_steps=generations * epochs,
        temperature=settings.get("temperature", 1.0),
        top_p=1.0,
        top_k=0,
        use_cpu=not torch.cuda.is_available(),
        bf16=False,
        fp16=False,
        report_to=[],
        logging_steps=1,
        save_strategy="no",
        seed=seed,
        data_seed=seed,
        dataloader_num_workers=0,
        disable_tqdm=True,
        lr_scheduler_type="constant",
        warmup_steps=0,
        shuffle_dataset=False,
        # TRL's default is activation checkpointing on (~1/3 more compute); ours has none.
        **(
            {"activation_checkpointing": False}
            if "activation_checkpointing" in GRPOConfig.__dataclass_fields__
            else {"gradient_checkpointing": False}
        ),
        **extra,
    )
    start = time.perf_counter()  # set again when training starts

    class Budget(TrainerCallback):
        def on_step_end(self, args, st, control, **kwargs):
            if state["rewards"]:
                curve.append(
                    [state["episodes"], state["tokens"], float(np.mean(state["rewards"])), math.nan]
                )
                state["rewards"] = []
            if task.max_tokens is not None and state["tokens"] >= task.max_tokens:
                control.should_training_stop = True
            if task.time_limit is not None and time.perf_counter() - start >= task.time_limit:
                state["stop"] = f"time limit of {task.time_limit:.0f} s"
                control.should_training_stop = True
            return control

    model = policy.model
    tmp, folder = None, getattr(model.config, "_name_or_path", None)
    if settings.get("beta"):
        # TRL builds its KL reference from the model's folder: give it the weights as they are
        # (a model built in memory, the tiny LM, has no folder; a warm-started one has moved
        # away from its folder's), so the reference is the model training starts from, as ours.
        tmp = tempfile.TemporaryDirectory(prefix="textgym-trl-ref-")
        model.save_pretrained(tmp.name)
        model.config._name_or_path = tmp.name
    model.train()
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=reward,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[Budget()],
    )
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # the harness prints its own line per cell
    _count_completion_tokens(trainer, state)
    start = time.perf_counter()  # like our learners: the reference model is built before
    trainer.train()
    train_seconds = time.perf_counter() - start
    trained = trainer.accelerator.unwrap_model(trainer.model)
    if trained is not model:
        model.load_state_dict(trained.state_dict())
    model.eval()
    steps = int(trainer.state.global_step)
    del trainer
    if tmp is not None:
        tmp.cleanup()
        model.config._name_or_path = folder
    return {
        "config": {
            **settings,
            "algorithm": "trl.GRPOTrainer",
            "trl_version": _trl_version(),
            "budget": "completions: episodes x at most max_new_tokens tokens",
        },
        "iterations": steps,
        "episodes": state["episodes"],
        "tokens": state["tokens"],
        "train_seconds": train_seconds,
        "curve": [[e, t, r, k] for e, t, r, k in curve],
        **({"stop_reason": state["stop"]} if state["stop"] else {}),
    }


def _count_completion_tokens(trainer: Any, state: dict[str, Any]) -> None:
    """Count generated completion tokens (our ``tokens``) by wrapping the trainer's batch
    preparation: the completion mask of every generated batch, summed."""
    inner = trainer._generate_and_score_completions

    def counted(inputs):
        out = inner(inputs)
        mask = out.get("completion_mask") if isinstance(out, dict) else None
        if mask is not None:
            state["tokens"] += int(mask.sum())
        return out

    trainer._generate_and_score_completions = counted


def _trl_version() -> str | None:
    try:
        import trl

        return trl.__version__
    except ImportError:
        return None


def train_trl_grpo(
    policy: Any, envs: Any, config: Any, *, seed: int, episodes: int, time_limit: float
) -> dict[str, Any]:
    """TRL's GRPOTrainer (:func:`run_trl_grpo`) on ``envs`` from ``policy`` as it is (a warm
    start included), with ``config`` (our :class:`agents.GRPOConfig`) in TRL's words and the same
    budget: ``benchmarks.verifiable --trl``. Returns the training figures in our learners' terms
    (``updates``: TRL's optimizer steps)."""
    ours = {k: v for k, v in vars(config).items() if k not in ("seed", "progress")}
    task = TaskSpec(
        env_id=getattr(envs.spec, "id", "") or "",
        num_envs=envs.num_envs,
        episodes=episodes,
        time_limit=time_limit,
        config={"grpo": ours},
    )
    peer = run_trl_grpo(task, seed, envs, policy)
    return {
        "learner": "trl.GRPOTrainer",
        "config": peer["config"],
        "episodes": peer["episodes"],
        "updates": peer["iterations"],
        "seconds": peer["train_seconds"],
        "stop_reason": peer.get("stop_reason", "episodes done"),
        "reward_curve": [[episodes, reward] for episodes, _, reward, _ in peer["curve"]],
    }
