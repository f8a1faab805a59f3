"""Learning on language tasks with verifiable rewards: before/after figures you can repeat.

    python -m benchmarks.verifiable --env TextGen-Arithmetic-v0 --minutes 20 --threads 1 \\
        --warm-start-epochs 1 --out arithmetic.json

One run: build the env (``gym.make_vec``), evaluate the untrained policy on the test split
(mean reward, 95% CI, share of distinct completions, samples), optionally warm-start it on the
train split's references (:func:`agents.warm_start`; the KL reference then becomes the
warmed-up model) and evaluate again, then train a learner (GRPO by default) for ``--minutes``
of wall time and evaluate a last time on the same test episodes (same seed). Every evaluation
runs ``--eval-episodes`` sampled episodes (temperature 1, the policy RL trains) and the same
number greedily. ``--drop-flat-groups`` (on by default for group learners) sets the learner's
``drop_flat_groups``: groups whose completions all scored the same (advantage 0, no signal) are
left out of each update and replaced by newly drawn prompts (:class:`agents.GRPOConfig`).

``--curriculum easy,medium,hard`` trains on a procedural task (``--env TextGen-<Task>-<Level>-v0``)
under :class:`textgym.wrappers.VectorCurriculum`: the training envs take the budgets of the last
level's id and start at ``--env``'s level. On a reasoning-gym id, ``--curriculum 0,1,2,3`` lists
levels of the dataset's own curriculum (reasoning-gym's difficulty knobs, e.g. chain_sum's number
of terms and digits) and training starts at the first. The level moves up once the success rate
of the last ``--curriculum-window`` training prompts (32; each judged by its whole group, so the
window is that many times ``--group-size`` episodes) reaches ``--promote-at``. The levels
reached, with the success rate that moved them, are printed and kept; the warm-started policy is
also evaluated on the next level, and the trained one on the next level and on the highest level
reached (compare it with a run that trains at that level from the start).

The env, learner, model and hyperparameter flags are ``textgym train``'s
(:func:`agents.cli.add_training_arguments`: ``--agent``, ``--model``, ``--lr``, ``--group-size``
(8 here), ``--config JSON``, ``--env-kwargs JSON``, ...). ``--model tiny`` trains
:meth:`agents.LMPolicy.tiny` from scratch (char tasks such as TextGen-Copy-v0; a smoke run).

``--recipe rg`` is one command for any reasoning-gym id (``RG-<dataset>-v0``): warm start, GRPO
and both evaluations with the settings of :data:`RECIPES` (flags given on the command line win)::

    python -m benchmarks.verifiable --recipe rg --env RG-letter_counting-v0 --seed 0 --out lc.json

It warm-starts on 256 train references (1 epoch, warm-start seed 0), runs GRPO (8 completions
per prompt, lr 5e-5, seed ``--seed``) for 15 minutes, and evaluates the warm-started and the
trained policy on 256 test episodes, sampled and greedy, without the KL passes (RL is judged
against the warm start). The env gets 32 new tokens (the warm start teaches a bare answer and
EOS), prompts cut to their last 64 tokens (``--env-kwargs '{"max_prompt_tokens": 1024}'`` for
boards and grids) and a test split of 1,000 questions. A dataset's level of difficulty is a
task argument: ``--env-kwargs '{"task_kwargs": {"difficulty": 0}}'`` (level 0 of its
reasoning-gym curriculum). ``--warm-start-cache DIR`` lets a second ``--seed`` reuse the first
one's warm start and its evaluation. After training, the most common sampled answer is scored on
every test prompt: the success a constant answer gets (a reward a constant can game).

``--trl`` is the peer row: TRL's ``GRPOTrainer`` (:func:`benchmarks.peers.train_trl_grpo`) trains
the same warm-started model with our GRPO's settings in TRL's words for the same minutes, and is
evaluated alike; TRL has no ``--drop-flat-groups`` (its flat groups stay in the batch).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from agents import WarmStartConfig, evaluate, warm_start
from agents.cli import (
    EVAL_SEED,
    add_training_arguments,
    build_policy,
    env_kwargs_for,
    learner_class,
    learner_overrides,
    make_envs,
    parse_json_object,
)
from agents.evaluation import distinct_share, verdict, verdict_line
from benchmarks.peers import missing, train_trl_grpo
from benchmarks.stats import cpu_flags_text, machine_info
from textgym.procedural import PROCEDURAL_IDS
from textgym.wrappers import VectorCurriculum

WARM_START_KEY = (
    "env",
    "model",
    "precision",
    "warm_start_epochs",
    "warm_start_lr",
    "warm_start_examples",
    "eval_episodes",
    "eval_seed",
    "eval_modes",
    "samples",
)  # what makes two warm starts (and their evaluations) the same, with the seed and env kwargs

GROUP_SIZE = 8  # completions per prompt of a group learner (GRPO, RLOO) without --group-size

RECIPES: dict[str, dict[str, Any]] = {
    "rg": {
        "ids": "RG-",  # the ids a recipe is for (a prefix)
        "flags": {
            "agent": "grpo",
            "warm_start_epochs": 1,
            "warm_start_examples": 256,
            "warm_start_lr": 1e-4,
            "warm_start_seed": 0,
            "group_size": 8,
            "num_envs": 16,
            "lr": 5e-5,
            "minutes": 15.0,
            "eval_episodes": 256,
            "no_untrained": True,
            "eval_kl": False,  # the training log has the KL; evaluations judge success only
            "precision": "fp32",
        },
        "env_kwargs": {
            "max_new_tokens": 32,
            "max_prompt_tokens": 64,
            "prompt_overflow": "truncate",
            "task_kwargs": {"n_test": 1000},
        },
    },
}
"""``--recipe NAME``: flag defaults and env arguments that make one command of a whole run on a
family of ids. Flags given on the command line win; ``--env-kwargs`` is merged over the recipe's
env arguments (``task_kwargs`` key by key)."""


def recipe_env_kwargs(recipe: str | None, env_id: str, given: dict) -> dict:
    """The env arguments of ``--recipe`` for ``env_id`` with ``--env-kwargs`` (``given``) on top."""
    if recipe is None:
        return given
    spec = RECIPES[recipe]
    if not env_id.startswith(spec["ids"]):
        raise SystemExit(
            f"--recipe {recipe} is for the {spec['ids']}* ids, got --env {env_id}; "
            f"e.g. --recipe {recipe} --env RG-letter_counting-v0"
        )
    tasks = {**spec["env_kwargs"].get("task_kwargs", {}), **given.get("task_kwargs", {})}
    return {**spec["env_kwargs"], **given, "task_kwargs": tasks}


def measure(
    policy_or_agent: Any, envs: Any, args: argparse.Namespace, label: str
) -> dict[str, Any]:
    """Sampled and greedy evaluations (``--eval-modes``) of ``--eval-episodes`` on the test
    split; prints the figures and ``--samples`` samples."""
    episodes, seed, samples = args.eval_episodes, args.eval_seed, args.samples
    out: dict[str, Any] = {}
    for mode in args.eval_modes:
        greedy = mode == "greedy"
        t0 = time.perf_counter()
        res = evaluate(
            policy_or_agent,
            envs,
            episodes,
            split="test",
            seed=seed,
            deterministic=greedy,
            num_samples=episodes,
            with_reference=args.eval_kl,
        )
        distinct = distinct_share([s["completion"] for s in res.samples]) or 0.0
        completions = [s["completion"] for s in res.samples]
        top = max(set(completions), key=completions.count) if completions else ""
        out[mode] = {
            **res.as_dict(),
            "distinct_completions": distinct,
            # a policy that answers the same thing everywhere (a constant that the checker
            # often accepts) shows here: its most common completion and that one's share
            "top_completion": top,
            "top_completion_share": completions.count(top) / max(len(completions), 1),
            "seconds": time.perf_counter() - t0,
            "samples": res.samples[:samples],
        }
        lo, hi = res.reward_ci
        success = ""
        if res.outcomes:  # a verifiable task's checker labels every episode
            s_lo, s_hi = res.success_ci
            success = f"success {res.success_rate:.3f} ({s_lo:.3f}..{s_hi:.3f}) {res.outcomes}, "
        print(
            f"[{label}] {mode:7s} reward {res.reward_mean:.3f} (95% CI {lo:.3f}..{hi:.3f}, "
            f"n={res.n_episodes}), {success}distinct completions {distinct:.2f} (most common "
            f"{top[:30]!r}: {out[mode]['top_completion_share']:.2f}), "
            f"{f'KL {res.kl:.2f}, ' if args.eval_kl else ''}length {res.mean_length:.1f}",
            flush=True,
        )
        if mode == "sampled":
            for s in res.samples[:samples]:
                print(f"    {s['prompt'][-60:]!r} -> {s['completion']!r} ({s['score']:.2f})")
    return out


def warm_started(
    policy: Any, envs: Any, eval_envs: Any, args: argparse.Namespace, env_kwargs: dict
) -> dict[str, Any]:
    """Warm-start ``policy`` on ``envs``' train references and evaluate it; with
    ``--warm-start-cache DIR``, reuse (or save) the weights and figures of the same warm start
    (same env, env arguments, model, warm-start settings and seed, evaluation), so that GRPO
    runs with several seeds can start from one warm start."""
    seed = args.seed if args.warm_start_seed is None else args.warm_start_seed
    key = {k: getattr(args, k) for k in WARM_START_KEY} | {"seed": seed, "env_kwargs": env_kwargs}
    digest = hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
    path = Path(args.warm_start_cache or ".") / f"warm-start-{digest[:16]}.pt"
    if args.warm_start_cache and path.exists():
        saved = torch.load(path, map_location=policy.device, weights_only=False)
        policy.model.load_state_dict(saved["state_dict"])
        if policy.ref_model is not None:  # the KL reference is the warm-started model
            object.__setattr__(policy, "ref_model", None)
            policy.ensure_reference()
        policy.reference_origin = "a frozen copy of the policy after a warm start"
        print(f"warm start: loaded from {path} (warm-start seed {seed})", flush=True)
        figures = {**saved["figures"], "warm_start_cache": str(path)}
    else:
        t0 = time.perf_counter()
        ws = warm_start(
            policy,
            envs,
            WarmStartConfig(
                epochs=args.warm_start_epochs,
                lr=args.warm_start_lr,
                seed=seed,
                max_examples=args.warm_start_examples,
            ),
        )
        seconds = time.perf_counter() - t0
        print(
            f"warm start: {ws.num_examples} references x {args.warm_start_epochs} epochs, "
            f"{seconds:.0f} s, last NLL {ws.history[-1]['loss']:.3f}",
            flush=True,
        )
        history = {"history": ws.history, "examples": ws.num_examples, "seconds": seconds}
        figures = {"warm_start": {**history, "seed": seed}}
    if "after_warm_start" not in figures:  # a fresh warm start, or a cached one not yet judged
        if args.warm_start_cache:  # the weights first: an interrupted evaluation keeps them
            save_warm_start(path, key, figures, policy)
        figures["after_warm_start"] = measure(policy, eval_envs, args, "warm start")
        if args.warm_start_cache:
            save_warm_start(path, key, figures, policy)
    return figures


def save_warm_start(path: Path, key: dict, figures: dict, policy: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    figures = {k: v for k, v in figures.items() if k != "warm_start_cache"}
    state = {"key": key, "figures": figures, "state_dict": policy.model.state_dict()}
    torch.save(state, path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)  # never a half-written file under the cache's name


def constant_answer_success(envs: Any, answer: str, n: int) -> float | None:
    """The success rate of writing ``answer`` to each of the first ``n`` test prompts: where a
    constant passes the checker often (a GCD of 1, a count of 1), part of a trained policy's
    success may be that constant. None for a task whose scorer gives no outcome labels."""
    test = envs.prompts["test"]
    examples = [test[k] for k in range(min(n, len(test)))]
    _, outcomes = envs.score_texts(examples, [answer] * len(examples))
    return None if outcomes is None else outcomes.count("correct") / len(examples)


def eval_modes(text: str) -> tuple[str, ...]:
    """``--eval-modes sampled,greedy`` -> ``("sampled", "greedy")``."""
    modes = tuple(dict.fromkeys(m.strip() for m in text.split(",") if m.strip()))
    if not modes or set(modes) - {"sampled", "greedy"}:
        raise argparse.ArgumentTypeError(f"{text!r}: give sampled, greedy or sampled,greedy")
    return modes


@dataclass(frozen=True)
class Level:
    """One level of ``--curriculum``: its name, the env id and env arguments that play it
    alone (for evaluations), and what :class:`~textgym.wrappers.VectorCurriculum` is given for
    it (a difficulty name, or a dict of task kwargs)."""

    name: str
    env_id: str
    env_kwargs: dict
    wrapper_level: str | dict


def curriculum_levels(env_id: str, curriculum: str, env_kwargs: dict) -> tuple[list[Level], int]:
    """The levels of ``--curriculum`` on ``env_id`` and the index of the one training starts at.

    * a procedural id (``TextGen-WordSorting-Easy-v0``): ``easy,medium,hard`` are its registered
      levels (``TextGen-WordSorting-Medium-v0``, ...); training starts at ``env_id``'s level;
    * a reasoning-gym id (``RG-chain_sum-v0``): ``0,1,2,3`` are levels of the dataset's own
      curriculum (reasoning-gym's difficulty knobs: each level raises every attribute, e.g.
      chain_sum's number of terms and digits; ``easy,medium,hard`` are levels 0, 1, 2); training
      starts at the first one listed.
    """
    names = [name.strip().lower() for name in curriculum.split(",") if name.strip()]
    if env_id.startswith("RG-"):
        named = {"easy": 0, "medium": 1, "hard": 2}
        try:
            ks = [named[n] if n in named else int(n) for n in names]
        except ValueError:
            ks = []
        if len(ks) < 2 or any(k < 0 for k in ks) or ks != sorted(set(ks)):
            raise SystemExit(
                f"--curriculum {curriculum!r}: needs two or more increasing reasoning-gym "
                f"curriculum levels for {env_id}, e.g. --curriculum 0,1,2,3"
            )
        given = env_kwargs.get("task_kwargs", {})
        if "difficulty" in given:
            raise SystemExit(
                f"--curriculum {curriculum!r} sets the difficulty of {env_id}; leave "
                f"difficulty out of --env-kwargs' task_kwargs (training starts at level {ks[0]})"
            )
        levels = [
            Level(
                f"level-{k}",
                env_id,
                {**env_kwargs, "task_kwargs": {**given, "difficulty": k}},
                {"difficulty": k},
            )
            for k in ks
        ]
        return levels, 0
    stem = env_id.rsplit("-", 2)[0]
    ids = {name: f"{stem}-{name.capitalize()}-v0" for name in names}
    unknown = [i for i in ids.values() if i not in PROCEDURAL_IDS]
    if len(names) < 2 or unknown or env_id not in ids.values():
        raise SystemExit(
            f"--curriculum {curriculum!r}: needs two or more levels of --env's procedural task "
            f"or curriculum levels of a reasoning-gym id, --env among them ({env_id}; unknown: "
            f"{unknown}); e.g. --env TextGen-WordSorting-Easy-v0 --curriculum easy,medium,hard, "
            f"or --env RG-chain_sum-v0 --curriculum 0,1,2,3"
        )
    levels = [Level(name, ids[name], env_kwargs, name) for name in names]
    return levels, list(ids.values()).index(env_id)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_training_arguments(p)  # `textgym train`'s: --env --agent --model --lr --config ...
    p.set_defaults(
        env="TextGen-Arithmetic-v0",
        agent="grpo",
        minutes=20.0,
        episodes=1_000_000,
        lr=2e-5,
        precision="fp32",
    )
    p.add_argument(
        "--recipe",
        choices=sorted(RECIPES),
        default=None,
        help="a whole run's settings for a family of ids (rg: any RG-* id; see RECIPES)",
    )
    p.add_argument("--warm-start-epochs", type=int, default=0)
    p.add_argument("--warm-start-lr", type=float, default=1e-4)
    p.add_argument(
        "--warm-start-examples",
        type=int,
        default=None,
        help="use at most this many train references",
    )
    p.add_argument(
        "--warm-start-seed",
        type=int,
        default=None,
        help="seed of the warm start's subset and order (default: --seed)",
    )
    p.add_argument(
        "--warm-start-cache",
        default=None,
        metavar="DIR",
        help="keep the warm-started weights and figures here and reuse them when the same "
        "warm start is asked for again (GRPO seeds from one warm start)",
    )
    p.add_argument("--drop-flat-groups", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--eval-episodes", type=int, default=100)
    p.add_argument("--eval-seed", type=int, default=EVAL_SEED)
    p.add_argument(
        "--eval-modes",
        type=eval_modes,
        default=("sampled", "greedy"),
        help="decodings evaluated: sampled (temperature 1, the policy RL trains), greedy, or "
        "both (default: sampled,greedy)",
    )
    p.add_argument("--samples", type=int, default=4, help="samples printed per evaluation")
    p.add_argument(
        "--eval-kl",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure the KL to the reference and its perplexity in every evaluation (two "
        "full forward passes per batch: --no-eval-kl halves an evaluation's time)",
    )
    p.add_argument(
        "--no-untrained",
        action="store_true",
        help="skip the untrained model's evaluation (needs --warm-start-epochs)",
    )
    p.add_argument(
        "--untrained",
        dest="no_untrained",
        action="store_false",
        help="evaluate the untrained model too (undoes --no-untrained, e.g. a recipe's)",
    )
    p.add_argument("--out", default=None, help="write the results (JSON) here")
    p.add_argument(
        "--curriculum",
        default=None,
        help="levels, easiest first: easy,medium,hard (procedural ids), 0,1,2 (RG-* ids)",
    )
    p.add_argument(
        "--trl",
        action="store_true",
        help="train with TRL's GRPOTrainer instead of our GRPO (the peer row): the same warm "
        "start, settings in TRL's words, budget and evaluations (pip install 'textgym[trl]')",
    )
    p.add_argument(
        "--promote-at", type=float, default=0.8, help="curriculum: success rate to move up"
    )
    p.add_argument(
        "--curriculum-window",
        type=int,
        default=32,
        help="curriculum: prompts judged (each by its whole group: x --group-size episodes)",
    )
    recipe = p.parse_known_args(argv)[0].recipe
    if recipe:
        p.set_defaults(**RECIPES[recipe]["flags"])
    args = p.parse_args(argv)
    given = parse_json_object(args.env_kwargs, "--env-kwargs")
    env_kwargs = env_kwargs_for(args.model, recipe_env_kwargs(recipe, args.env, given))
    levels, start_level = (
        curriculum_levels(args.env, args.curriculum, env_kwargs) if args.curriculum else ([], 0)
    )
    if args.trl and (args.agent != "grpo" or levels):
        raise SystemExit(
            f"--trl trains TRL's GRPOTrainer in place of --agent grpo, without a curriculum (got "
            f"--agent {args.agent}{' and --curriculum' if levels else ''}); drop one of them"
        )
    if args.trl and missing("trl-grpo"):  # before anything runs, not after the warm start
        raise SystemExit(f"--trl: {missing('trl-grpo')}")
    if args.no_untrained and not args.warm_start_epochs:
        raise SystemExit(
            "--no-untrained: RL is judged against the warm start; add --warm-start-epochs"
        )
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    machine = machine_info()
    print(
        f"CPU: {machine['cpu']}, flags {cpu_flags_text(machine)}, "
        f"{machine['torch_threads']} torch threads; precision {args.precision}",
        flush=True,
    )

    cls = learner_class(args.agent)
    overrides = learner_overrides(args, cls)
    if "group_size" in cls.Config.__dataclass_fields__:
        overrides.setdefault("group_size", GROUP_SIZE)
        overrides.setdefault("drop_flat_groups", args.drop_flat_groups)
    # Training envs (with a curriculum: the last level's budgets, playing the start level; the
    # warm start reads the base envs' train split, the learner steps the wrapper). The
    # curriculum's window judges whole groups: --curriculum-window prompts x the group size.
    last = levels[-1] if levels else Level(args.env, args.env, env_kwargs, "")
    envs = base_envs = make_envs(last.env_id, args.num_envs, last.env_kwargs)
    if levels:
        per_prompt = overrides.get("group_size", 1)
        window = args.curriculum_window * per_prompt
        envs = VectorCurriculum(
            base_envs,
            levels=[level.wrapper_level for level in levels],
            start_level=start_level,
            promote_at=args.promote_at,
            demote_at=0.0,
            window=window,
        )
        print(
            f"curriculum: {', '.join(level.name for level in levels)} from "
            f"{levels[start_level].name}; up when the last {window} training episodes "
            f"({args.curriculum_window} prompts x {per_prompt}) reach {args.promote_at}",
            flush=True,
        )
    first = levels[start_level] if levels else last
    eval_envs = make_envs(first.env_id, args.num_envs, first.env_kwargs)
    policy = build_policy(
        args.model,
        base_envs,
        seed=args.seed,
        precision=args.precision,
        compile=args.compile,
        kv_cache=args.kv_cache,
    )

    result: dict[str, Any] = {"args": vars(args), "machine": machine}
    if not args.no_untrained:
        result["before"] = measure(policy, eval_envs, args, "untrained")

    if args.warm_start_epochs:
        # Keyed by the start level's env arguments: the references it reads are that level's.
        result.update(warm_started(policy, base_envs, eval_envs, args, first.env_kwargs))
    # The next level up, where a curriculum run goes first: the policy before training there,
    # so that the trained policy's figures on it have something to compare with.
    next_level = levels[start_level + 1] if start_level + 1 < len(levels) else None
    if next_level:
        next_envs = make_envs(next_level.env_id, args.num_envs, next_level.env_kwargs)
        result[f"before_training_{next_level.name}"] = measure(
            policy, next_envs, args, next_level.name
        )

    config = cls.Config.for_policy(policy, seed=args.seed, **{"progress": False, **overrides})
    if args.trl:  # the peer: TRL trains policy.model in place, evaluated below like ours
        budget = {"episodes": args.episodes, "time_limit": args.minutes * 60}
        train = train_trl_grpo(policy, base_envs, config, seed=args.seed, **budget)
        print(
            f"TRL GRPOTrainer: {train['episodes']} episodes, {train['updates']} optimizer steps "
            f"in {train['seconds']:.0f} s ({train['stop_reason']})",
            flush=True,
        )
        agent, history, result["train"] = policy, [], train
    else:
        agent = cls(policy, envs, config)
        t1 = time.perf_counter()
        agent.learn(total_episodes=args.episodes, time_limit=args.minutes * 60)
        train_seconds = time.perf_counter() - t1
        history = agent.history
        dropped = sum(r.get("dropped_groups", 0) for r in history)
        kept = sum(r.get("update_groups", 0) for r in history)
        print(
            f"{cls.__name__}: {agent.episodes} episodes, {agent.iteration} updates in "
            f"{train_seconds:.0f} s ({agent.stop_reason}); flat groups dropped "
            f"{dropped:.0f}, groups trained on {kept:.0f}",
            flush=True,
        )
        result["train"] = {
            "learner": cls.__name__,
            "config": {k: v for k, v in vars(config).items()},
            "episodes": agent.episodes,
            "updates": agent.iteration,
            "seconds": train_seconds,
            "stop_reason": agent.stop_reason,
            "flat_groups_dropped": dropped,
            "groups_kept": kept,
            "reward_curve": [[r.get("episodes"), r.get("reward")] for r in history],
        }
    reached = None
    if levels:  # the level each iteration trained at (its mean over the rollout's steps)
        curve = [
            [r.get("episodes"), r.get("curriculum_level"), r.get("success_rate")] for r in history
        ]
        result["train"]["curriculum_curve"] = curve
        top = max([start_level, envs.level] + [int(c[1]) for c in curve if c[1] is not None])
        reached = levels[top]
        result["train"]["level_reached"] = reached.name
        level = start_level
        for episodes, mean_level, _ in curve:
            while mean_level is not None and int(mean_level) > level:
                level += 1
                print(f"curriculum: {levels[level].name} reached by episode {episodes}")
        print(f"curriculum: reached {reached.name} (promote at {args.promote_at})", flush=True)
    result["after"] = measure(agent, eval_envs, args, "trained")
    # The trained policy on the next level and on the highest one reached, if higher: what a
    # curriculum is for (compare with a run that trains at that level from the start).
    judged = {x.name: x for x in (next_level, reached) if x and x != first}
    for level in judged.values():
        level_envs = make_envs(level.env_id, args.num_envs, level.env_kwargs)
        result[f"after_{level.name}"] = measure(agent, level_envs, args, f"trained, {level.name}")
    # Reward gaming check: the trained (and starting) policy's most common sampled completion
    # written to every test prompt.
    for key in ("after_warm_start", "after"):
        if key in result and "success_rate" in result[key]["sampled"]:
            top = result[key]["sampled"]["top_completion"]
            rate = constant_answer_success(eval_envs, top, args.eval_episodes)
            result.setdefault("constant_answer", {})[key] = {"answer": top, "success": rate}
            print(
                f"[{key.replace('_', ' ')}] its most common answer {top[:40]!r} on every test "
                f"prompt: success {rate:.3f}"
            )
    result["total_seconds"] = time.perf_counter() - started
    # RL's own gain: against the warm-started model when there is one, else the untrained one;
    # on the success rate for a verifiable task, else on the mean reward.
    start = "after_warm_start" if "after_warm_start" in result else "before"
    metric = "success" if "success_rate" in result["after"]["sampled"] else "reward"
    key = "success_rate" if metric == "success" else "reward_mean"
    for mode in args.eval_modes:
        b, a = result[start][mode], result["after"][mode]
        separated = a[f"{metric}_ci_low"] > b[f"{metric}_ci_high"]
        result.setdefault("cis_separated", {})[mode] = separated
        print(
            f"{mode} {metric} ({start.replace('_', ' ')} -> trained) {b[key]:.3f} "
            f"[{b[f'{metric}_ci_low']:.3f}, {b[f'{metric}_ci_high']:.3f}] -> {a[key]:.3f} "
            f"[{a[f'{metric}_ci_low']:.3f}, {a[f'{metric}_ci_high']:.3f}]: 95% CIs "
            f"{'do not overlap' if separated else 'overlap'}"
        )
        name = "untrained" if start == "before" else "warm-started"
        result.setdefault("verdict", {})[mode] = verdict(a, {name: b})
        print(f"{mode} {verdict_line(a, b, name)}")
    print(f"total {result['total_seconds'] / 60:.1f} min")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1, default=str)
    return result


if __name__ == "__main__":
    main()
