"""The ``textgym`` command line.

textgym list [--family F]          registered environment ids, one line each, by family
textgym info ID                    spaces, reward, data and arguments of an id
textgym play ID [--seed S]         play an environment in the terminal
textgym train --env ID --agent ppo --model smollm2-135m --episodes N --out DIR [--resume]
                                   train a learner; checkpoints, logs and run.json go into DIR
textgym eval DIR                   test-split metrics and samples of DIR's latest checkpoint
textgym eval --env ID --model M    ... or of an untrained model
textgym bench [--preset quick]     the quality benchmark (agents x tasks x seeds, leaderboard)
textgym serve ID [--port P] ...    serve an id over OpenEnv's HTTP/WebSocket protocol

list, info and play live here; train and eval are agents/cli.py's commands and bench is
benchmarks/__main__.py's, imported only when one of them runs (textgym never imports the
packages built on top of it otherwise); serve is textgym/server/serve.py's (the `serve` extra).
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

import gymnasium as gym

import textgym
from textgym.errors import TextgymError
from textgym.registry import FAMILIES

PLAY_HELP = """Type text to append it (it is tokenised into actions; \\n in it is a newline), or a
command:
  :ids 12 345 ...   append these token ids
  :nl               append a newline
  :eos              append the EOS token
  :show             show the prompt and the text so far (a secret stays hidden)
  :quit             stop playing
What the env writes itself after your turn (a partner's reply, a tool's result) is echoed.
"""
DISPATCHED = ("train", "eval", "bench")  # commands with their own parsers, in other packages


def _make(env_id: str, **kwargs) -> gym.Env:
    if env_id not in gym.registry:
        raise SystemExit(f"unknown environment id {env_id!r}; `textgym list` shows the ids")
    return gym.make(env_id, **kwargs).unwrapped


def cmd_list(args: argparse.Namespace, out: TextIO) -> int:
    """The ids (of one family, or all: textgym's own first), each with its one line; nothing
    is built."""
    ids = textgym.registered_ids(args.family)
    width = max(len(i) for i in ids)
    for env_id in ids:
        out.write(f"{env_id:<{width}}  {textgym.summary(env_id)}\n")
    return 0


def cmd_info(args: argparse.Namespace, out: TextIO) -> int:
    if args.env_id not in textgym.registered_ids():  # a clear error; nothing is built
        raise SystemExit(f"unknown environment id {args.env_id!r}; `textgym list` shows the ids")
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


def _generated(obs: dict) -> list[int]:
    """The ids after the prompt in an observation: the agent's and the env's own."""
    ids = obs["input_ids"][obs["attention_mask"].astype(bool)]
    count = int(obs["num_generated"][0])
    return ids[len(ids) - count :].tolist() if count else []


def _outcome(info: dict) -> str:
    """The end of an episode in words: the checker's outcome, or a dialogue's solved/turns."""
    parts = []
    if "outcome" in info:
        parts.append(str(info["outcome"]))
    if "solved" in info:
        parts.append(f"{'solved' if info['solved'] else 'not solved'} in {info['turns']} turn(s)")
    if "secret" in info:
        parts.append(f"the secret was {info['secret']!r}")
    return "; ".join(parts)


def cmd_play(args: argparse.Namespace, out: TextIO, inp: TextIO) -> int:
    env = _make(args.env_id, render_mode="ansi")
    tok = env.tokenizer
    out.write(PLAY_HELP)
    for episode in range(args.episodes):
        obs, info = env.reset(
            seed=None if args.seed is None else args.seed + episode, options={"split": args.split}
        )
        prompt = info["prompt"]
        out.write(f"\n=== episode {episode + 1}/{args.episodes} ===\nprompt: {prompt}\n")
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
                if line.strip() == ":show":  # not env.render(): a dialogue's shows its secret
                    text = tok.decode(_generated(obs), skip_special_tokens=False)
                    out.write(f"{prompt}{text}\n")
                    continue
                if line.strip() == ":eos":
                    actions = [tok.eos_token_id]
                elif line.strip() == ":nl" or "\\n" in line:
                    text = "\n" if line.strip() == ":nl" else line.replace("\\n", "\n")
                    actions = tok.encode(text, add_special_tokens=False)
                    if "\n" not in tok.decode(actions):
                        raise ValueError("this env's tokenizer has no newline token")
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
                before = int(obs["num_generated"][0])
                obs, reward, terminated, truncated, info = env.step(int(action))
                piece = tok.decode([int(action)])
                out.write(f"  token {int(action):>6} {piece!r}\n")
                added = int(obs["num_generated"][0]) - before - 1  # written by the env itself
                if added > 0:
                    reply = tok.decode(_generated(obs)[-added:], skip_special_tokens=False)
                    out.write(f"  env wrote: {reply!r}\n")
                if terminated or truncated:
                    dropped = len(actions) - k - 1
                    why = "terminated" if terminated else "truncated: token budget reached"
                    out.write(
                        f"episode {why}"
                        + (f" ({dropped} token(s) not used)" if dropped else "")
                        + f"\ncompletion: {info['completion']!r}\nreward: {reward:.4f}\n"
                        + (f"outcome: {_outcome(info)}\n" if _outcome(info) else "")
                    )
                    done = True
                    break
    return 0


def _dispatch(argv: list[str]) -> int:
    """``train``/``eval`` (:mod:`agents.cli`) and ``bench`` (``benchmarks``): the layers above
    textgym, imported here only, when one of their commands runs."""
    command, rest = argv[0], argv[1:]
    package = "benchmarks" if command == "bench" else "agents"
    try:
        if command == "bench":
            import benchmarks.__main__ as bench
        else:
            import agents.cli as training
    except ModuleNotFoundError as e:
        if e.name != package:
            raise
        raise SystemExit(
            f"`textgym {command}` needs the {package} package, which is not installed "
            "(install textgym from a source checkout: pip install -e .)"
        ) from None
    if command == "bench":
        return bench.main(rest)
    return training.run_command(command, rest, prog=f"textgym {command}")


def _positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="textgym",
        description=__doc__.split("\n")[0],
        epilog=__doc__.split("\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list", help="registered environment ids")
    listing.add_argument(
        "--family",
        choices=FAMILIES,
        help="only this family's ids (default: all, textgym's own first)",
    )
    info = sub.add_parser("info", help="spaces, reward, data and arguments of an id")
    info.add_argument("env_id", help="a registered id (`textgym list`)")
    play = sub.add_parser("play", help="play an environment in the terminal")
    play.add_argument("env_id", help="a registered id (`textgym list`)")
    play.add_argument(
        "--seed", type=int, default=None, help="reset seed of the first episode (default: random)"
    )
    play.add_argument(
        "--split", default="train", choices=["train", "test"], help="prompt split (train)"
    )
    play.add_argument(
        "--episodes", type=_positive_int, default=1, help="episodes to play, one after another (1)"
    )

    # Listed for --help; main() hands them to their own parsers before this one parses.
    sub.add_parser("train", help="train a learner on an env (`textgym train --help`)")
    sub.add_parser("eval", help="test-split metrics of a run's checkpoint or of a model")
    sub.add_parser("bench", help="the quality benchmark (`textgym bench --help`)")
    sub.add_parser("serve", help="serve an id over OpenEnv's protocol (`textgym serve --help`)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in DISPATCHED:
        return _dispatch(argv)
    if argv and argv[0] == "serve":  # its own parser; fastapi etc. imported only here
        from textgym.server.serve import main as serve

        return serve(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        if args.command == "list":
            return cmd_list(args, sys.stdout)
        if args.command == "info":
            return cmd_info(args, sys.stdout)
        return cmd_play(args, sys.stdout, sys.stdin)
    except (TextgymError, FileNotFoundError) as e:
        # A user error (bad argument, bad data, missing file): one line, no traceback.
        raise SystemExit(f"textgym {args.command}: error: {e}") from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None


if __name__ == "__main__":
    sys.exit(main())
