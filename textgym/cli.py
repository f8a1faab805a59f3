"""The ``textgym`` command line.

textgym list                       registered environment ids, one line each
textgym info ID                    spaces, reward, data and arguments of an id
textgym play ID [--seed S]         play an environment in the terminal
textgym train --env ID --agent ppo --model smollm2-135m --episodes N --out DIR [--resume]
                                   train a learner; checkpoints, logs and run.json go into DIR
textgym eval DIR                   test-split metrics and samples of DIR's latest checkpoint
textgym eval --env ID --model M    ... or of an untrained model
textgym bench [--preset quick]     the quality benchmark (agents x tasks x seeds, leaderboard)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import gymnasium as gym

import textgym
from textgym.errors import CheckpointError, TextgymError

PLAY_HELP = """Type text to append it (it is tokenised into actions), or a command:
  :ids 12 345 ...   append these token ids
  :eos              append the EOS token
  :show             show the prompt and the completion so far
  :quit             stop playing
"""


def _make(env_id: str, **kwargs) -> gym.Env:
    if env_id not in gym.registry:
        raise SystemExit(f"unknown environment id {env_id!r}; `textgym list` shows the ids")
    with _env_argument_errors(env_id):
        return gym.make(env_id, **kwargs).unwrapped


class _env_argument_errors:  # noqa: N801  (a context manager used like a function)
    """Turn "unexpected keyword argument" TypeErrors of an env constructor into a one-line
    error that says where the arguments are listed."""

    def __init__(self, env_id: str):
        self.env_id = env_id

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, error: Any, tb: Any) -> bool:
        if kind is not None and issubclass(kind, TypeError) and "keyword argument" in str(error):
            raise SystemExit(
                f"{self.env_id}: {str(error).split(': ', 1)[-1]} (an env argument it does not "
                f"take); `textgym info {self.env_id}` lists its arguments"
            ) from None
        return False


def cmd_list(args: argparse.Namespace, out: TextIO) -> int:
    ids = textgym.registered_ids()
    width = max(len(i) for i in ids)
    for env_id in ids:
        out.write(f"{env_id:<{width}}  {textgym.summary(env_id)}\n")
    return 0


def cmd_info(args: argparse.Namespace, out: TextIO) -> int:
    _make(args.env_id)  # a clear error for an unknown id
    out.write(textgym.describe(args.env_id) + "\n")
    return 0


def _parse_ids(words: list[str], vocab_size: int) -> list[int]:
    ids = []
    for w in words:
        try:
            token = int(w)
        except ValueError:
            raise ValueError(f"{w!r} is not an integer token id") from None
        if not 0 <= token < vocab_size:
            raise ValueError(f"token id {token} is outside the vocabulary 0..{vocab_size - 1}")
        ids.append(token)
    if not ids:
        raise ValueError("':ids' needs at least one token id, e.g. ':ids 12 345'")
    return ids


def cmd_play(args: argparse.Namespace, out: TextIO, inp: TextIO) -> int:
    env = _make(args.env_id, render_mode="ansi")
    tok = env.tokenizer
    out.write(PLAY_HELP)
    for episode in range(args.episodes):
        _, info = env.reset(
            seed=None if args.seed is None else args.seed + episode, options={"split": args.split}
        )
        out.write(f"\n=== episode {episode + 1}/{args.episodes} ===\nprompt: {info['prompt']}\n")
        done = False
        while not done:
            out.write("> ")
            out.flush()
            line = inp.readline()
            if not line or line.strip() == ":quit":
                out.write("\nbye\n")
                return 0
            line = line.rstrip("\n")
            try:
                if line.strip() == ":show":
                    out.write(env.render())
                    continue
                if line.strip() == ":eos":
                    actions = [tok.eos_token_id]
                elif line.strip().startswith(":ids"):
                    actions = _parse_ids(line.split()[1:], env.action_space.n)
                elif line.startswith(":"):
                    raise ValueError(f"unknown command {line.split()[0]!r}")
                elif not line:
                    raise ValueError("empty input: type some text, or :help-style commands above")
                else:
                    actions = tok.encode(line, add_special_tokens=False)
            except ValueError as e:
                out.write(f"error: {e}\n")
                continue
            for k, action in enumerate(actions):
                _, reward, terminated, truncated, info = env.step(int(action))
                piece = tok.decode([int(action)])
                out.write(f"  token {int(action):>6} {piece!r}\n")
                if terminated or truncated:
                    dropped = len(actions) - k - 1
                    why = "terminated" if terminated else "truncated: token budget reached"
                    out.write(
                        f"episode {why}"
                        + (f" ({dropped} token(s) not used)" if dropped else "")
                        + f"\ncompletion: {info['completion']!r}\nreward: {reward:.4f}\n"
                    )
                    done = True
                    break
    return 0


# -- training and evaluation helpers (shared with benchmarks/ and textgym.demo) ------------------

AGENTS = ("ppo", "grpo", "rloo", "reinforce", "a2c", "nlpo")
RUN_FILE = "run.json"  # everything `train --resume` and `eval DIR` need to rebuild a run
TINY = {"n_layer": 2, "n_embd": 64, "n_head": 4}  # the "tiny" model: tiny_lm sized to the vocab


def learner_class(agent: str) -> type:
    """The learner class of an agent name (one of ``AGENTS``)."""
    from agents import LEARNERS

    if agent not in LEARNERS:
        raise SystemExit(f"unknown agent {agent!r}; choose one of {', '.join(AGENTS)}")
    return LEARNERS[agent]


def env_kwargs_for(model: str, env_kwargs: dict | None = None) -> dict:
    """Env arguments for ``model``: a model other than the default and ``tiny`` brings its own
    tokenizer (the env's actions are that model's token ids) unless one is given."""
    kwargs = dict(env_kwargs or {})
    if model not in ("tiny", "smollm2-135m") and "tokenizer" not in kwargs:
        kwargs["tokenizer"] = model
    return kwargs


def make_envs(env_id: str, num_envs: int, env_kwargs: dict | None = None) -> Any:
    """``gym.make_vec(env_id, num_envs)`` with a clear error for an unknown id."""
    if env_id not in gym.registry:
        raise SystemExit(f"unknown environment id {env_id!r}; `textgym list` shows the ids")
    with _env_argument_errors(env_id):
        return gym.make_vec(env_id, num_envs=num_envs, **(env_kwargs or {}))


def build_policy(
    model: str, envs: Any, *, seed: int = 0, precision: str = "auto", tiny: dict | None = None
) -> Any:
    """An :class:`agents.LMPolicy` for ``envs``: ``"tiny"`` is :meth:`agents.LMPolicy.tiny` (a
    seeded random tiny LM sized to the env, with its from-scratch learner defaults);
    anything else goes to :func:`~textgym.models.load_lm` (``"smollm2-135m"``, an HF id or a
    folder) and must share the env's tokenizer."""
    from agents import LMPolicy
    from textgym.char_tokenizer import CharTokenizer

    tok = envs.tokenizer
    if model == "tiny":
        return LMPolicy.tiny(envs, seed=seed, precision=precision, **{**TINY, **(tiny or {})})
    if isinstance(tok, CharTokenizer):
        raise SystemExit(
            f"this environment uses the character tokenizer (vocabulary {len(tok)}); "
            f"model {model!r} has its own vocabulary: use --model tiny"
        )
    policy = LMPolicy.from_pretrained(model, precision=precision, seed=seed)
    vocab = policy.model.get_output_embeddings().weight.shape[0]
    if vocab < envs.single_action_space.n:
        raise SystemExit(
            f"model {model!r} has {vocab} output tokens but the env's action space has "
            f"{envs.single_action_space.n}: pass the model's tokenizer to the env"
        )
    return policy


def has_tensorboard() -> bool:
    """Whether TensorBoard logs can be written (``progress.csv`` is written either way)."""
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


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


RUN_FIELDS = ("env_id", "env_kwargs", "agent", "model", "precision", "seed", "num_envs", "config")


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


def check_config(cls: type, overrides: dict, what: str = "--config") -> None:
    """Config fields exist and have the right type (SystemExit naming the field if not)."""
    import types
    import typing

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


def _parse_json_arg(text: str | None, what: str) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise SystemExit(f"{what} is not valid JSON ({e.msg}): {text!r}") from None
    if not isinstance(value, dict):
        raise SystemExit(f"{what} must be a JSON object, e.g. '{{\"max_new_tokens\": 16}}'")
    return value


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


def cmd_train(args: argparse.Namespace, out: TextIO) -> int:
    import dataclasses

    import torch

    out_dir = Path(args.out)
    run_file = out_dir / RUN_FILE
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.resume:
        if not run_file.exists():
            raise SystemExit(f"--resume: no {RUN_FILE} in {str(out_dir)!r}; train without it first")
        run = read_run(out_dir)
        if args.episodes is not None:
            run["episodes"] = args.episodes
    else:
        if latest_checkpoint(out_dir) is not None:
            raise SystemExit(
                f"{str(out_dir)!r} already holds a run: continue it with --resume, "
                f"or choose another --out"
            )
        if args.env is None:
            raise SystemExit("train needs --env ID (`textgym list` shows the ids)")
        cls = learner_class(args.agent)  # a clear error for an unknown agent
        overrides = _parse_json_arg(args.config, "--config")
        for key in ("lr", "kl_coef", "update_epochs", "minibatch_size", "group_size"):
            if getattr(args, key) is not None:
                overrides[key] = getattr(args, key)
        check_config(cls, overrides)
        run = {
            "env_id": args.env,
            "env_kwargs": env_kwargs_for(
                args.model, _parse_json_arg(args.env_kwargs, "--env-kwargs")
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
    cls = learner_class(run["agent"])
    envs = make_envs(run["env_id"], run["num_envs"], run["env_kwargs"])
    policy = build_policy(run["model"], envs, seed=run["seed"], precision=run["precision"])
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
    agent = cls(policy, envs, config)
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
    _write_json(run_file, run)
    out.write(
        f"training {cls.__name__} on {run['env_id']} with {run['model']} ({run['num_envs']} envs, "
        f"{run['episodes']} episodes) -> {out_dir}\n"
    )
    out.flush()
    start = time.perf_counter()
    time_limit = args.minutes * 60 if args.minutes else None
    agent.learn(total_episodes=run["episodes"], time_limit=time_limit)
    seconds = time.perf_counter() - start
    last = agent.history[-1] if agent.history else {}
    out.write(
        f"done: iteration {agent.iteration}, {agent.episodes} episodes, {agent.tokens} tokens in "
        f"{seconds:.1f} s"
        + (f"; last training reward {last['reward']:.4f}" if last else "")
        + (f" ({agent.stop_reason})" if agent.stop_reason else "")
        + f"\ncheckpoint: {latest_checkpoint(out_dir)}\nlogs: {out_dir / 'progress.csv'}\n"
        f"evaluate it with: textgym eval {out_dir}\n"
    )
    return 0


def cmd_eval(args: argparse.Namespace, out: TextIO) -> int:
    import torch
    from safetensors.torch import load_model

    from agents import Learner, evaluate

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
                args.model, _parse_json_arg(args.env_kwargs, "--env-kwargs")
            ),
        }
    envs = make_envs(run["env_id"], args.num_envs, run["env_kwargs"])
    policy = build_policy(run["model"], envs, seed=run["seed"], precision=run["precision"])
    policy.ensure_reference()  # the untrained weights are the reference (KL, perplexity)
    what, evaluated = f"untrained {run['model']}", policy
    if checkpoint is not None:
        from agents.base import check_model_file, read_checkpoint_state, verify_checkpoint_files

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
        _write_json(
            Path(args.json),
            {
                "run": run,
                "checkpoint": str(checkpoint) if checkpoint else None,
                **result.as_dict(),
                "samples": result.samples,
            },
        )
    return 0


def _import_benchmarks() -> Any:
    """``benchmarks`` lives next to the package in the repository; make it importable from an
    editable install when the command runs outside the repository root."""
    try:
        import benchmarks.__main__ as bench
    except ModuleNotFoundError:
        root = Path(__file__).resolve().parents[1]
        if not (root / "benchmarks" / "harness.py").exists():
            raise SystemExit(
                "`textgym bench` needs the repository's benchmarks/ folder "
                "(run it from a source checkout)"
            ) from None
        sys.path.insert(0, str(root))
        import benchmarks.__main__ as bench
    return bench


def cmd_bench(argv: list[str]) -> int:
    return _import_benchmarks().main(argv)


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="textgym",
        description=__doc__.split("\n")[0],
        epilog=__doc__.split("\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="registered environment ids")
    info = sub.add_parser("info", help="spaces, reward, data and arguments of an id")
    info.add_argument("env_id")
    play = sub.add_parser("play", help="play an environment in the terminal")
    play.add_argument("env_id")
    play.add_argument("--seed", type=int, default=None)
    play.add_argument("--split", default="train", choices=["train", "test"])
    play.add_argument("--episodes", type=_count(1), default=1)

    model_help = (
        '"smollm2-135m" (default, offline), any Hugging Face id or folder, or "tiny" '
        "(a small random LM sized to the env's vocabulary: for character tasks and tests)"
    )
    train = sub.add_parser(
        "train",
        help="train a learner on an env (checkpoints, logs, run.json in --out)",
        description="Train a learner on a textgym env. --out DIR receives run.json (env, agent, "
        "model, hyperparameters, seed), progress.csv and TensorBoard logs, and checkpoints/; "
        "`--resume` continues the run from DIR alone, `textgym eval DIR` evaluates it.",
    )
    train.add_argument("--env", help="environment id (`textgym list`)")
    train.add_argument("--agent", default="ppo", choices=AGENTS)
    train.add_argument("--model", default="smollm2-135m", help=model_help)
    train.add_argument(
        "--episodes",
        type=_count(1),
        default=None,
        help="training episodes in all, resumed ones included (default 1000)",
    )
    train.add_argument(
        "--minutes", type=_positive_float, default=None, help="stop after this much time"
    )
    train.add_argument("--out", required=True, help="run folder")
    train.add_argument("--resume", action="store_true", help="continue the run in --out")
    train.add_argument("--num-envs", type=_count(1), default=16, help="episodes per iteration (16)")
    train.add_argument("--seed", type=_count(0), default=0)
    train.add_argument("--lr", type=float, default=None, help="learning rate (agent default)")
    train.add_argument("--kl-coef", type=float, default=None, help="KL penalty weight")
    train.add_argument("--update-epochs", type=_count(1), default=None)
    train.add_argument("--minibatch-size", type=_count(1), default=None)
    train.add_argument(
        "--group-size", type=_count(1), default=None, help="grpo/rloo: completions per prompt"
    )
    train.add_argument(
        "--config",
        default=None,
        metavar="JSON",
        help='other config fields, e.g. \'{"ent_coef": 0.01, "target_kl": null}\'',
    )
    train.add_argument(
        "--env-kwargs",
        default=None,
        metavar="JSON",
        help="env arguments, e.g. '{\"max_new_tokens\": 16}'",
    )
    train.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    train.add_argument("--checkpoint-every", type=_count(0), default=10, metavar="ITERATIONS")
    train.add_argument("--threads", type=_count(1), default=None, help="torch threads")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")

    ev = sub.add_parser(
        "eval",
        help="test-split metrics and samples of a run's checkpoint (or an untrained model)",
        description="Evaluate the latest checkpoint of a `textgym train` run folder (or its "
        "untrained model with --untrained), or an untrained --model on --env: mean reward with a "
        "95%% CI, KL to the untrained model, perplexity, distinct-1/2, and a samples table.",
    )
    ev.add_argument("dir", nargs="?", default=None, help="a `textgym train --out` folder")
    ev.add_argument("--env", default=None, help="without DIR: environment id")
    ev.add_argument("--model", default="smollm2-135m", help="without DIR: " + model_help)
    ev.add_argument("--env-kwargs", default=None, metavar="JSON")
    ev.add_argument("--seed", type=_count(0), default=0, help="without DIR: model seed (tiny)")
    ev.add_argument("--untrained", action="store_true", help="evaluate DIR's initial model")
    ev.add_argument("--episodes", type=_count(1), default=64)
    ev.add_argument("--split", default="test", choices=["train", "test"])
    ev.add_argument("--num-envs", type=_count(1), default=16)
    ev.add_argument("--samples", type=_count(0), default=8, help="rows in the samples table")
    ev.add_argument("--eval-seed", type=_count(0), default=1234, help="seeds prompts and sampling")
    ev.add_argument("--greedy", action="store_true", help="greedy decoding")
    ev.add_argument("--json", default=None, help="also write the figures and samples here")
    ev.add_argument("--threads", type=_count(1), default=None)

    sub.add_parser("bench", help="the quality benchmark (`textgym bench --help`)", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "bench":  # its own parser (benchmarks/__main__.py)
        return cmd_bench(argv[1:])
    args = build_parser().parse_args(argv)
    commands = {"list": cmd_list, "info": cmd_info, "train": cmd_train, "eval": cmd_eval}
    try:
        if args.command in commands:
            return commands[args.command](args, sys.stdout)
        return cmd_play(args, sys.stdout, sys.stdin)
    except (TextgymError, FileNotFoundError) as e:
        # A user error (bad argument, bad checkpoint, missing file): one line, no traceback.
        raise SystemExit(f"textgym {args.command}: error: {e}") from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None


if __name__ == "__main__":
    sys.exit(main())
