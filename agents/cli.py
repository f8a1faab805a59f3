"""The training command line: ``textgym train`` and ``textgym eval`` (``python -m agents.train``).

textgym train --env ID --agent ppo --model smollm2-135m --episodes N --out DIR [--resume]
                                   train a learner; checkpoints, logs and run.json go into DIR
textgym train ... --eval-episodes 64
                                   ... and evaluate on the test split before and after training
textgym eval DIR                   test-split metrics and samples of DIR's latest checkpoint
textgym eval --env ID --model M    ... or of an untrained model

``python -m agents.train ...`` is ``textgym train ...``, and works under a launcher
(``torchrun --nproc_per_node 4 -m agents.train ...``, ``accelerate launch -m agents.train ...``):
every rank trains on its own device with its own envs, rank 0 prints and writes.

The helpers that rebuild a run from its folder (``run.json``: :func:`read_run`,
:func:`write_run`, :func:`latest_checkpoint`) and build what a run needs (:func:`make_envs`,
:func:`build_policy`, :func:`learner_class`, :func:`check_config`) are public: the demo and the
benchmarks use them.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import io
import json
import os
import sys
import time
import types
import typing
from pathlib import Path
from typing import Any, TextIO

import gymnasium as gym
import torch
from safetensors.torch import load_model

import textgym
from agents import LEARNERS, Learner, LMPolicy, distributed, evaluate
from agents.checkpoint import check_model_file, read_checkpoint_state, verify_checkpoint_files
from agents.evaluation import verdict, verdict_line
from textgym.char_tokenizer import CharTokenizer
from textgym.errors import CheckpointError, TextgymError

RUN_FILE = "run.json"  # everything `train --resume` and `eval DIR` need to rebuild a run
RUN_FIELDS = ("env_id", "env_kwargs", "agent", "model", "precision", "seed", "num_envs", "config")
EVAL_FILE = "evaluation.json"  # `train --eval-episodes N`: the before/after figures
EVAL_SEED = 1234  # seeds the test prompts and sampling of every evaluation of a command
TINY = {"n_layer": 2, "n_embd": 64, "n_head": 4}  # the "tiny" model: tiny_lm sized to the vocab
SETTING_FLAGS = ("lr", "kl_coef", "update_epochs", "minibatch_size", "group_size")
MODEL_HELP = (
    '"smollm2-135m" (default, offline), any Hugging Face id or folder, or "tiny" '
    "(a small random LM sized to the env's vocabulary: for character tasks and tests)"
)


# -- building a run ---------------------------------------------------------------------------


def learner_class(agent: str) -> type:
    """The learner class of an agent name (a key of :data:`agents.LEARNERS`)."""
    if agent not in LEARNERS:
        raise SystemExit(f"unknown agent {agent!r}; choose one of {', '.join(LEARNERS)}")
    return LEARNERS[agent]


def env_kwargs_for(model: str, env_kwargs: dict | None = None) -> dict:
    """Env arguments for ``model``: a model other than the default and ``tiny`` brings its own
    tokenizer (the env's actions are that model's token ids) unless one is given."""
    kwargs = dict(env_kwargs or {})
    if model not in ("tiny", "smollm2-135m") and "tokenizer" not in kwargs:
        kwargs["tokenizer"] = model
    return kwargs


def make_envs(env_id: str, num_envs: int, env_kwargs: dict | None = None) -> Any:
    """``gym.make_vec(env_id, num_envs)`` with one-line errors for an unknown id and for an
    argument the env does not take."""
    if env_id not in gym.registry:
        raise SystemExit(f"unknown environment id {env_id!r}; `textgym list` shows the ids")
    try:
        return gym.make_vec(env_id, num_envs=num_envs, **(env_kwargs or {}))
    except TypeError as error:
        if "keyword argument" not in str(error):
            raise
        raise SystemExit(
            f"{env_id}: {str(error).split(': ', 1)[-1]} (an env argument it does not "
            f"take); `textgym info {env_id}` lists its arguments"
        ) from None


def build_policy(
    model: str,
    envs: Any,
    *,
    seed: int = 0,
    precision: str = "auto",
    tiny: dict | None = None,
    device: Any = None,
    compile: bool | str = "auto",
    kv_cache: str = "auto",
) -> Any:
    """An :class:`agents.LMPolicy` for ``envs``: ``"tiny"`` is :meth:`agents.LMPolicy.tiny` (a
    seeded random tiny LM sized to the env, with its from-scratch learner defaults; on the CPU
    unless ``device`` says otherwise); anything else goes to :func:`~textgym.models.load_lm`
    (``"smollm2-135m"``, an HF id or a folder; ``device`` None: CUDA if available) and must
    share the env's tokenizer."""
    options = {"precision": precision, "compile": compile, "kv_cache": kv_cache}
    tok = envs.tokenizer
    if model == "tiny":
        policy = LMPolicy.tiny(envs, seed=seed, **options, **{**TINY, **(tiny or {})})
        return policy if device is None else policy.to(device)
    if isinstance(tok, CharTokenizer):
        raise SystemExit(
            f"this environment uses the character tokenizer (vocabulary {len(tok)}); "
            f"model {model!r} has its own vocabulary: use --model tiny"
        )
    policy = LMPolicy.from_pretrained(model, device=device, seed=seed, **options)
    vocab = policy.model.get_output_embeddings().weight.shape[0]
    if vocab < envs.single_action_space.n:
        raise SystemExit(
            f"model {model!r} has {vocab} output tokens but the env's action space has "
            f"{envs.single_action_space.n}: pass the model's tokenizer to the env"
        )
    return policy


def has_tensorboard() -> bool:
    """Whether TensorBoard logs can be written (``progress.csv`` is written either way)."""
    return importlib.util.find_spec("tensorboard") is not None


def check_config(cls: type, overrides: dict, what: str = "--config") -> None:
    """Config fields exist and have the right type (SystemExit naming the field if not)."""
    hints = typing.get_type_hints(cls.Config)
    for key, value in overrides.items():
        if key not in hints:
            raise SystemExit(
                f"{what}: {cls.__name__} has no setting {key!r}; its settings: "
                f"{', '.join(sorted(hints))}"
            )
        hint = hints[key]
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        allowed = typing.get_args(hint) if union else (hint,)
        if not any(_fits(value, t) for t in allowed):
            names = " or ".join(getattr(t, "__name__", str(t)) for t in allowed)
            raise SystemExit(f"{what}: {key} must be {names}, got {value!r:.60}")


def _fits(value: Any, kind: Any) -> bool:
    if kind is type(None):
        return value is None
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is str:
        return isinstance(value, str)
    return True  # containers and anything unusual: the learner checks them


def parse_json_object(text: str | None, what: str) -> dict:
    """A JSON object given on the command line (``{}`` for None); SystemExit naming ``what``."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise SystemExit(f"{what} is not valid JSON ({e.msg}): {text!r}") from None
    if not isinstance(value, dict):
        raise SystemExit(f"{what} must be a JSON object, e.g. '{{\"max_new_tokens\": 16}}'")
    return value


def learner_overrides(args: argparse.Namespace, cls: type) -> dict:
    """The config fields a command line sets for ``cls``: ``--config``'s, then the named flags
    (``--lr``, ``--kl-coef``, ...), checked with :func:`check_config`."""
    overrides = parse_json_object(args.config, "--config")
    for key in SETTING_FLAGS:
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    check_config(cls, overrides)
    return overrides


# -- the run folder ---------------------------------------------------------------------------


def latest_checkpoint(out_dir: str | os.PathLike) -> Path | None:
    """The newest checkpoint folder of a ``textgym train`` run (None if there is none)."""
    root = Path(out_dir) / "checkpoints"
    if (root / "latest").exists():
        try:
            name = (root / "latest").read_text().strip()
        except (OSError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{root / 'latest'}: unreadable ({e})") from None
        if not name.startswith("iter-") or "/" in name or not (root / name).is_dir():
            raise CheckpointError(f"{root / 'latest'}: points to {name!r:.60}, not a checkpoint")
        return root / name
    return None


def read_run(out_dir: str | os.PathLike) -> dict:
    """``run.json`` of a ``textgym train`` folder, checked (CheckpointError naming the file)."""
    file = Path(out_dir) / RUN_FILE
    if not file.exists():
        raise SystemExit(
            f"no {RUN_FILE} in {str(out_dir)!r}: is it a `textgym train --out` folder?"
        )
    try:
        run = json.loads(file.read_text())
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{file}: not valid JSON ({e}); the run cannot be rebuilt") from None
    missing = [k for k in RUN_FIELDS if not isinstance(run, dict) or k not in run]
    if missing:
        raise CheckpointError(f"{file}: missing fields {missing}; the run cannot be rebuilt")
    if not isinstance(run["env_kwargs"], dict) or not isinstance(run["config"], dict):
        raise CheckpointError(f"{file}: env_kwargs and config must be JSON objects")
    return run


def write_run(out_dir: str | os.PathLike, run: dict) -> None:
    """Write ``run.json`` into ``out_dir`` (atomically)."""
    write_json(Path(out_dir) / RUN_FILE, run)


def write_json(path: Path, data: Any) -> None:
    """``data`` as indented JSON, written to a temporary file and renamed."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


# -- train ------------------------------------------------------------------------------------


def new_run(args: argparse.Namespace, out_dir: Path) -> dict:
    """The run ``train`` starts from its flags (what ``run.json`` records)."""
    if latest_checkpoint(out_dir) is not None:
        raise SystemExit(
            f"{str(out_dir)!r} already holds a run: continue it with --resume, "
            f"or choose another --out"
        )
    if args.env is None:
        raise SystemExit("train needs --env ID (`textgym list` shows the ids)")
    overrides = learner_overrides(args, learner_class(args.agent))
    return {
        "env_id": args.env,
        "env_kwargs": env_kwargs_for(
            args.model, parse_json_object(args.env_kwargs, "--env-kwargs")
        ),
        "agent": args.agent,
        "model": args.model,
        "precision": args.precision,
        "seed": args.seed,
        "num_envs": args.num_envs,
        "episodes": args.episodes if args.episodes is not None else 1000,
        "config": overrides,
        "checkpoint_every": args.checkpoint_every,
        "textgym_version": textgym.__version__,
    }


def cmd_train(args: argparse.Namespace, out: TextIO) -> int:
    rank = distributed.env_info()  # under torchrun / accelerate launch: this process's place
    if not rank.is_main:
        out = io.StringIO()  # rank 0 prints and writes; the other ranks train quietly
    out_dir = Path(args.out)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.resume:
        if not (out_dir / RUN_FILE).exists():
            raise SystemExit(f"--resume: no {RUN_FILE} in {str(out_dir)!r}; train without it first")
        run = read_run(out_dir)
        if args.episodes is not None:
            run["episodes"] = args.episodes
    else:
        run = new_run(args, out_dir)
    if args.save_optimizer is not None:  # also when resuming: finish a run with weights only
        run["config"] = {**run["config"], "save_optimizer": args.save_optimizer}
    cls = learner_class(run["agent"])
    envs = make_envs(run["env_id"], run["num_envs"], run["env_kwargs"])
    policy = build_policy(
        run["model"],
        envs,
        seed=run["seed"],
        precision=run["precision"],
        device=distributed.default_device(rank) if rank.enabled else None,
        compile=args.compile,
        kv_cache=args.kv_cache,
    )
    try:
        config = cls.Config.for_policy(
            policy,
            seed=run["seed"],
            log_dir=str(out_dir),
            checkpoint_dir=str(out_dir / "checkpoints"),
            checkpoint_every=run["checkpoint_every"],
            progress=not args.no_progress,
            **{"tensorboard": has_tensorboard(), **run["config"]},
        )
    except (TypeError, ValueError) as e:
        raise SystemExit(f"bad hyperparameter for {run['agent']}: {e}") from None
    try:
        agent = cls(policy, envs, config)  # joins the launcher's process group, if any
        if rank.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
        run["config_resolved"] = {
            k: v
            for k, v in dataclasses.asdict(config).items()
            if k not in ("log_dir", "checkpoint_dir")
        }
        if args.resume:
            agent.resume(out_dir / "checkpoints")
            out.write(
                f"resumed {run['agent']} on {run['env_id']} at iteration {agent.iteration} "
                f"({agent.episodes} episodes)\n"
            )
        if rank.is_main:
            write_run(out_dir, run)
        out.write(
            f"training {cls.__name__} on {run['env_id']} with {run['model']} "
            f"({run['num_envs']} envs, {run['episodes']} episodes) -> {out_dir}\n"
        )
        out.flush()
        figures = {}
        eval_seconds = 0.0
        if args.eval_episodes:
            eval_envs = make_envs(run["env_id"], run["num_envs"], run["env_kwargs"])
            eval_start = time.perf_counter()
            before = evaluate(
                agent, eval_envs, args.eval_episodes, split="test", seed=EVAL_SEED, gather=True
            )
            eval_seconds += time.perf_counter() - eval_start
            out.write(f"before: {before}\n")
            out.flush()
            figures["before"] = {**before.as_dict(), "samples": before.samples}
        start = time.perf_counter()
        time_limit = args.minutes * 60 if args.minutes else None
        agent.learn(total_episodes=run["episodes"], time_limit=time_limit)
        seconds = time.perf_counter() - start
        last = agent.history[-1] if agent.history else {}
        out.write(
            f"done: iteration {agent.iteration}, {agent.episodes} episodes, {agent.tokens} tokens "
            f"in {seconds:.1f} s"
            + (f"; last training reward {last['reward']:.4f}" if last else "")
            + (f" ({agent.stop_reason})" if agent.stop_reason else "")
            + f"\ncheckpoint: {latest_checkpoint(out_dir)}\nlogs: {out_dir / 'progress.csv'}\n"
        )
        if args.eval_episodes:
            eval_start = time.perf_counter()
            after = evaluate(
                agent, eval_envs, args.eval_episodes, split="test", seed=EVAL_SEED, gather=True
            )
            eval_seconds += time.perf_counter() - eval_start
            out.write(f"after:  {after}\n{verdict_line(after, before)}\n\n{after.table()}\n")
            figures["after"] = {**after.as_dict(), "samples": after.samples}
            figures["verdict"] = verdict(after, {"untrained": before})
            if rank.is_main:
                figures.update(split="test", seed=EVAL_SEED, train_seconds=seconds)
                write_json(out_dir / EVAL_FILE, figures)
                out.write(f"evaluation: {out_dir / EVAL_FILE}\n")
        out.write(time_spent(agent, seconds, eval_seconds) + "\n")
        out.write(f"evaluate it with: textgym eval {out_dir}\n")
    finally:
        distributed.cleanup()
    return 0


def time_spent(agent: Learner, train_seconds: float, eval_seconds: float) -> str:
    """Where a command's time went: the iterations (their mean and longest), the rest of
    training (checkpoints), and the before/after evaluation."""
    its = agent.iteration_seconds
    text = f"time: training {train_seconds:.1f} s"
    if its:
        text += (
            f" = {len(its)} iterations x {sum(its) / len(its):.1f} s (longest "
            f"{max(its):.1f} s) + {max(train_seconds - sum(its), 0.0):.1f} s checkpoints"
        )
    return text + (f"; evaluation {eval_seconds:.1f} s" if eval_seconds else "")


# -- eval -------------------------------------------------------------------------------------


def cmd_eval(args: argparse.Namespace, out: TextIO) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    checkpoint = None
    if args.dir is not None:
        run = read_run(args.dir)
        if not args.untrained:
            checkpoint = latest_checkpoint(args.dir)
            if checkpoint is None:
                raise SystemExit(f"{args.dir!r} has no checkpoint yet (use --untrained)")
    else:
        if args.env is None:
            raise SystemExit("eval needs a run folder DIR, or --env ID [--model M] (untrained)")
        run = {
            "env_id": args.env,
            "model": args.model,
            "seed": args.seed,
            "precision": "auto",
            "env_kwargs": env_kwargs_for(
                args.model, parse_json_object(args.env_kwargs, "--env-kwargs")
            ),
        }
    envs = make_envs(run["env_id"], args.num_envs, run["env_kwargs"])
    policy = build_policy(run["model"], envs, seed=run["seed"], precision=run["precision"])
    policy.ensure_reference()  # the untrained weights are the reference (KL, perplexity)
    what, evaluated = f"untrained {run['model']}", policy
    if checkpoint is not None:
        missing = [f for f in ("state.json", "model.safetensors") if not (checkpoint / f).is_file()]
        if missing:
            raise CheckpointError(f"checkpoint {checkpoint} is incomplete: missing {missing}")
        state = read_checkpoint_state(checkpoint)
        if not all(k in state for k in ("learner", "episodes")):
            raise CheckpointError(f"{checkpoint / 'state.json'}: missing fields learner, episodes")
        check_model_file(checkpoint / "model.safetensors", policy)  # fits, finite weights
        verify_checkpoint_files(checkpoint, state)
        load_model(policy, str(checkpoint / "model.safetensors"), device=str(policy.device))
        what = f"{state['learner']} checkpoint {checkpoint} ({state['episodes']} episodes)"
        cls = learner_class(run["agent"])
        if cls.acting_policy is not Learner.acting_policy:
            # A learner that acts through more than its policy (NLPO: under its mask policy) is
            # evaluated as it acts: rebuild it from the run and resume its checkpoint.
            config = cls.Config(seed=run["seed"], progress=False, **run["config"])
            train_envs = make_envs(run["env_id"], run["num_envs"], run["env_kwargs"])
            evaluated = cls(policy, train_envs, config).resume(checkpoint)
    result = evaluate(
        evaluated,
        envs,
        args.episodes,
        split=args.split,
        seed=args.eval_seed,
        deterministic=args.greedy,
        num_samples=args.samples,
    )
    out.write(f"{run['env_id']}, {what}, {args.split} split:\n{result}\n\n{result.table()}\n")
    if args.json:
        write_json(
            Path(args.json),
            {
                "run": run,
                "checkpoint": str(checkpoint) if checkpoint else None,
                **result.as_dict(),
                "samples": result.samples,
            },
        )
    return 0


# -- the parsers ------------------------------------------------------------------------------


def _count(minimum: int) -> Any:
    """An argparse type: an integer >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def add_training_arguments(p: argparse.ArgumentParser) -> None:
    """The flags that say what to train and how (``train``'s, shared with the scripts in
    benchmarks/ that train a learner): env, agent, model, budget, hyperparameters, precision."""
    p.add_argument("--env", help="environment id (`textgym list`)")
    p.add_argument("--agent", default="ppo", choices=list(LEARNERS))
    p.add_argument("--model", default="smollm2-135m", help=MODEL_HELP)
    p.add_argument(
        "--episodes",
        type=_count(1),
        default=None,
        help="training episodes in all, resumed ones included (default 1000)",
    )
    p.add_argument(
        "--minutes", type=_positive_float, default=None, help="stop after this much time"
    )
    p.add_argument("--num-envs", type=_count(1), default=16, help="episodes per iteration (16)")
    p.add_argument("--seed", type=_count(0), default=0)
    p.add_argument("--lr", type=float, default=None, help="learning rate (agent default)")
    p.add_argument("--kl-coef", type=float, default=None, help="KL penalty weight")
    p.add_argument("--update-epochs", type=_count(1), default=None)
    p.add_argument("--minibatch-size", type=_count(1), default=None)
    p.add_argument(
        "--group-size", type=_count(1), default=None, help="grpo/rloo: completions per prompt"
    )
    p.add_argument(
        "--config",
        default=None,
        metavar="JSON",
        help='other config fields, e.g. \'{"ent_coef": 0.01, "target_kl": null}\'',
    )
    p.add_argument(
        "--env-kwargs",
        default=None,
        metavar="JSON",
        help="env arguments, e.g. '{\"max_new_tokens\": 16}'",
    )
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument(
        "--compile",
        default="auto",
        help="torch.compile backend, 'off', or 'auto' (inductor on CUDA)",
    )
    p.add_argument("--kv-cache", default="auto", choices=["auto", "dynamic", "static"])
    p.add_argument("--threads", type=_count(1), default=None, help="torch threads")


def train_parser(prog: str = "textgym train") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Train a learner on a textgym env. --out DIR receives run.json (env, agent, "
        "model, hyperparameters, seed), progress.csv and TensorBoard logs, and checkpoints/; "
        "`--resume` continues the run from DIR alone, `textgym eval DIR` evaluates it. Under "
        "torchrun / accelerate launch every rank trains, rank 0 prints and writes.",
    )
    add_training_arguments(p)
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--checkpoint-every", type=_count(0), default=10, metavar="ITERATIONS")
    p.add_argument(
        "--save-optimizer",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="checkpoints hold the optimizer state, needed to --resume (default); "
        "--no-save-optimizer writes weights-only checkpoints (a third of the size with AdamW) "
        "for a finished run: `textgym eval` reads them, --resume refuses them",
    )
    p.add_argument(
        "--eval-episodes",
        type=_count(0),
        default=0,
        help=f"evaluate on this many test episodes before and after training ({EVAL_FILE})",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def eval_parser(prog: str = "textgym eval") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Evaluate the latest checkpoint of a `textgym train` run folder (or its "
        "untrained model with --untrained), or an untrained --model on --env: mean reward with a "
        "95% CI, KL to the untrained model, perplexity, distinct-1/2, and a samples table.",
    )
    p.add_argument("dir", nargs="?", default=None, help="a `textgym train --out` folder")
    p.add_argument("--env", default=None, help="without DIR: environment id")
    p.add_argument("--model", default="smollm2-135m", help="without DIR: " + MODEL_HELP)
    p.add_argument("--env-kwargs", default=None, metavar="JSON")
    p.add_argument("--seed", type=_count(0), default=0, help="without DIR: model seed (tiny)")
    p.add_argument("--untrained", action="store_true", help="evaluate DIR's initial model")
    p.add_argument("--episodes", type=_count(1), default=64)
    p.add_argument("--split", default="test", choices=["train", "test"])
    p.add_argument("--num-envs", type=_count(1), default=16)
    p.add_argument("--samples", type=_count(0), default=8, help="rows in the samples table")
    p.add_argument(
        "--eval-seed", type=_count(0), default=EVAL_SEED, help="seeds prompts and sampling"
    )
    p.add_argument("--greedy", action="store_true", help="greedy decoding")
    p.add_argument("--json", default=None, help="also write the figures and samples here")
    p.add_argument("--threads", type=_count(1), default=None)
    return p


COMMANDS = {"train": (train_parser, cmd_train), "eval": (eval_parser, cmd_eval)}


def run_command(command: str, argv: list[str], prog: str | None = None) -> int:
    """Parse ``argv`` with ``command``'s parser (``"train"`` or ``"eval"``) and run it; a user
    error (bad argument, bad checkpoint, missing file, a disk that is full or read-only) exits
    with one line, no traceback. The ``textgym`` console script and ``python -m agents.train``
    call this."""
    make_parser, cmd = COMMANDS[command]
    parser = make_parser(prog or f"textgym {command}")
    args = parser.parse_args(argv)
    try:
        return cmd(args, sys.stdout)
    except (TextgymError, OSError) as e:  # OSError: a missing file, a full or read-only disk
        raise SystemExit(f"{parser.prog}: error: {e}") from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
