"""textgym ids played through GEM's API by scripted agents (no LM), offline.

    pip install gem-llm             # GEM (import gem)
    python examples/export_gem.py --episodes 5

``import textgym.integrations.gem`` registers every textgym id with GEM as ``"textgym:<id>"``,
so ``gem.make`` gives a ``gem.Env`` that GEM's wrappers and training loops take. The agents
below are functions of the conversation so far, ``env.messages()`` (OpenAI-style role/content
dicts), where a GEM loop would put an LM: one answers an arithmetic question in one turn, one
finds the number of GuessNumber by binary search over the partner's replies, one calls the
calculator and answers with its result. The script prints each id's mean return and solved
fraction, and the last episode's messages.
"""

from __future__ import annotations

import argparse
import re

import gem

from textgym.integrations.gem import PREFIX  # importing it registers the textgym ids with GEM


def arithmetic(messages: list[dict[str, str]]) -> str:
    """TextGen-Arithmetic-v0 ("Q: What is 37 + 45?\\nA:"): the result, then the newline that
    ends the episode."""
    a, op, b = re.search(r"What is (\d+) ([-+]) (\d+)\?", messages[0]["content"]).groups()
    return f" {int(a) + int(b) if op == '+' else int(a) - int(b)}\n"


def guess_number(messages: list[dict[str, str]]) -> str:
    """TextDialogue-GuessNumber-v0: guess the middle of the range the replies leave open
    (">": the secret is higher, "<": lower)."""
    low, high = map(int, re.search(r"\((\d+)-(\d+)\)", messages[0]["content"]).groups())
    for guess, reply in zip(messages[1::2], messages[2::2]):
        number = int(guess["content"].rstrip("?"))
        if reply["content"] == ">":
            low = number + 1
        elif reply["content"] == "<":
            high = number - 1
    return f"{(low + high) // 2}?"


def calculator(messages: list[dict[str, str]]) -> str:
    """TextTools-Arithmetic-v0: call the calculator on the question, then answer with its
    result (the tool's message)."""
    last = messages[-1]
    if last["role"] == "tool":
        return f"Answer: {re.search(r'<result>(.*?)</result>', last['content']).group(1)}\n"
    a, b = re.search(r"What is (\d+) \* (\d+)\?", messages[0]["content"]).groups()
    return f"<calc>{a} * {b}</calc>"


AGENTS = {
    "TextGen-Arithmetic-v0": arithmetic,
    "TextDialogue-GuessNumber-v0": guess_number,
    "TextTools-Arithmetic-v0": calculator,
}


def solved(info: dict) -> bool:
    """Whether the episode was won: a dialogue's ``solved``, otherwise a full score."""
    return bool(info["solved"]) if "solved" in info else info["score"] == 1.0


def main(episodes: int = 5, seed: int = 0, verbose: bool = False) -> dict[str, tuple[float, float]]:
    """Play ``episodes`` episodes of each id; ``{id: (mean return, solved fraction)}``."""
    results = {}
    for env_id, agent in AGENTS.items():
        env = gem.make(PREFIX + env_id, seed=seed)  # the first reset's seed; the rest follow
        returns, wins = [], []
        for _ in range(episodes):
            env.reset()
            total, done = 0.0, False
            while not done:
                _, reward, terminated, truncated, info = env.step(agent(env.messages()))
                total, done = total + reward, terminated or truncated
            returns.append(total)
            wins.append(solved(info))
        results[env_id] = (sum(returns) / episodes, sum(wins) / episodes)
        print(f"{env_id:30s} mean return {results[env_id][0]:.2f}  solved {results[env_id][1]:.0%}")
        if verbose:
            for message in env.messages():
                print(f"  {message['role']:>9}: {message['content']!r}")
        env.close()
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="leave out the last episodes' text")
    args = parser.parse_args()
    main(args.episodes, args.seed, verbose=not args.quiet)
