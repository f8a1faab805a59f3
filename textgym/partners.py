"""Goal-directed dialogue games and the partners that answer the agent in them.

A **game** holds the rules: the opening text (instructions plus the partner's first message),
how a secret is drawn, whether an agent turn reaches the goal, and the rule-based answer to a
turn. A **partner** writes the reply that the environment appends after each agent turn:

* :class:`RulePartner` (the default): the game's rule-based answer; deterministic and free.
* :class:`LMPartner`: a transformers causal LM writes the reply from a prompt template (greedy
  decoding, so deterministic too). The game still decides whether the goal was reached.

Partners answer *every* slot that ended a turn in one call (``partner(game, secrets, turns,
histories)``), so an LM partner runs one batched ``generate`` per environment step at most.

Games:

* :class:`GuessNumber`: find a secret integer in ``[low, high]``; the partner answers ``>``
  (the secret is higher), ``<`` (lower), ``=`` (correct) or ``!`` (not a number in range).
* :class:`TwentyQuestions`: find a hidden object from a small built-in list by asking yes/no
  questions about its attributes (``animal``, ``big``, ``fly``, ``water``, ``wheels``,
  ``food``) and naming it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from textgym.errors import InvalidArgumentError

# -- games ---------------------------------------------------------------------------------------


class Game:
    """Base class of a dialogue game; subclasses fill in the rules.

    Attributes:
        name: short identifier (error messages, infos).
        rules: one sentence about how the partner answers (for an LM partner's prompt).
    """

    name = "game"
    rules = ""

    def opening(self) -> str:
        """Instructions plus the partner's first message: the left-padded prompt of an episode."""
        raise NotImplementedError

    def sample_secret(self, rng: np.random.Generator) -> Any:
        """A secret drawn with the episode's seeded RNG."""
        raise NotImplementedError

    def check_secret(self, secret: Any) -> Any:
        """``secret`` normalised, or ``ValueError`` (for ``reset(options={"secret": ...})``)."""
        raise NotImplementedError

    def solved(self, secret: Any, turn: str) -> bool:
        """Whether the agent's turn ``turn`` (decoded text) reaches the goal."""
        raise NotImplementedError

    def answer(self, secret: Any, turn: str) -> str:
        """The rule-based reply to ``turn``, as the text appended to the dialogue."""
        raise NotImplementedError

    def replies(self) -> list[str]:
        """Every reply :meth:`answer` can give (sizes the token budget of a reply)."""
        raise NotImplementedError

    def wrap_reply(self, text: str) -> str:
        """Turn a free-text reply (an LM partner's) into the dialogue's reply format."""
        return text

    def example_turns(self) -> list[str]:
        """Typical agent turns without the end-of-turn text (size the default turn budget)."""
        return []


class GuessNumber(Game):
    """Find a secret integer in ``[low, high]``; the partner says higher / lower / correct.

    The agent writes a guess (the first integer in its turn counts) and ends its turn with the
    end-of-turn token or the per-turn token budget. Replies are single characters, so the game
    fits the 99-token character tokenizer: ``>`` the secret is higher, ``<`` lower, ``=``
    correct, ``!`` no number in range. A dialogue reads
    ``Guess my number (1-8):4?>6?<5?=``.

    Args:
        low, high: the range of the secret, both included (1 and 8).
    """

    name = "guess_number"
    HIGHER, LOWER, CORRECT, INVALID = ">", "<", "=", "!"

    def __init__(self, low: int = 1, high: int = 8):
        if not 0 <= low <= high:
            raise ValueError(f"need 0 <= low <= high, got low={low}, high={high}")
        self.low, self.high = int(low), int(high)
        self.rules = (
            f"The secret is a number from {low} to {high}. Answer '>' if the secret is higher "
            f"than the guess, '<' if it is lower, '=' if it is the guess, '!' if there is no guess."
        )

    def opening(self) -> str:
        return f"Guess my number ({self.low}-{self.high}):"

    def sample_secret(self, rng: np.random.Generator) -> int:
        return int(rng.integers(self.low, self.high + 1))

    def check_secret(self, secret: Any) -> int:
        if isinstance(secret, (bool, np.bool_)) or not isinstance(secret, (int, np.integer)):
            raise InvalidArgumentError(
                f"options['secret']: a {self.name} secret is an int, got {secret!r:.60}"
            )
        if not self.low <= secret <= self.high:
            raise InvalidArgumentError(
                f"options['secret']: secret {secret} is outside [{self.low}, {self.high}]"
            )
        return int(secret)

    def guess(self, turn: str) -> int | None:
        """The first integer in ``turn`` if it lies in the range, else None."""
        found = re.search(r"\d+", turn)
        value = int(found.group()) if found else None
        return value if value is not None and self.low <= value <= self.high else None

    def solved(self, secret: int, turn: str) -> bool:
        return self.guess(turn) == secret

    def answer(self, secret: int, turn: str) -> str:
        guess = self.guess(turn)
        if guess is None:
            return self.INVALID
        if guess == secret:
            return self.CORRECT
        return self.HIGHER if secret > guess else self.LOWER

    def replies(self) -> list[str]:
        return [self.HIGHER, self.LOWER, self.CORRECT, self.INVALID]

    def example_turns(self) -> list[str]:
        return [str(self.high)]


# name -> attributes; the attributes the partner knows about are TwentyQuestions.ATTRIBUTES.
OBJECTS: dict[str, frozenset[str]] = {
    name: frozenset(attrs.split())
    for name, attrs in {
        "cat": "animal",
        "dog": "animal",
        "horse": "animal big",
        "cow": "animal big food",
        "bird": "animal fly",
        "fish": "animal water food",
        "whale": "animal water big",
        "car": "wheels big",
        "bike": "wheels",
        "boat": "water big",
        "plane": "fly wheels big",
        "apple": "food",
        "bread": "food",
        "tree": "big",
        "book": "",
        "chair": "",
    }.items()
}


class TwentyQuestions(Game):
    """Find a hidden object from a small list by yes/no questions about its attributes.

    The opening lists the candidate objects and the attributes the partner knows. A turn that
    names an object (``"Is it a cat?"``, plural forms too) is a guess: ``Yes, it is a cat!``
    ends the game, ``No.`` does not. Otherwise the first attribute word in the turn is answered
    ``Yes.`` or ``No.`` (synonyms: ``animals``, ``large``, ``flies``, ``wings``, ``swim``,
    ``sea``, ``wheel``, ``eat``, ``edible``; ``small``/``little`` ask for the opposite of
    ``big``); a turn with neither gets ``I can't tell.``. Every reply ends with ``Q:`` so the
    agent's next question follows it.

    Args:
        objects: ``{name: set of attributes}`` (default: 16 built-in objects).
    """

    name = "twenty_questions"
    ATTRIBUTES = ("animal", "big", "fly", "water", "wheels", "food")
    # word -> (attribute, negated)
    KEYWORDS: dict[str, tuple[str, bool]] = {
        **{a: (a, False) for a in ATTRIBUTES},
        "animals": ("animal", False),
        "large": ("big", False),
        "huge": ("big", False),
        "small": ("big", True),
        "little": ("big", True),
        "tiny": ("big", True),
        "flies": ("fly", False),
        "flying": ("fly", False),
        "wings": ("fly", False),
        "swim": ("water", False),
        "swims": ("water", False),
        "sea": ("water", False),
        "wheel": ("wheels", False),
        "eat": ("food", False),
        "edible": ("food", False),
    }
    YES, NO, UNKNOWN, NEXT = " Yes.", " No.", " I can't tell.", " Q:"

    def __init__(self, objects: Mapping[str, Sequence[str]] | None = None):
        source = OBJECTS if objects is None else objects
        self.objects = {str(k).lower(): frozenset(v) for k, v in source.items()}
        if not self.objects:
            raise ValueError("objects must name at least one object")
        self.names = sorted(self.objects)
        self.rules = (
            "The secret is one of: " + ", ".join(self.names) + ". Answer yes/no questions about "
            "it truthfully and briefly; say 'Yes, it is the <object>!' when it is named."
        )

    def opening(self) -> str:
        return (
            "Let's play twenty questions. I am thinking of one of: " + ", ".join(self.names) + ". "
            "Ask yes/no questions (animal? big? fly? water? wheels? food?) or name it. Q:"
        )

    def sample_secret(self, rng: np.random.Generator) -> str:
        return self.names[int(rng.integers(len(self.names)))]

    def check_secret(self, secret: Any) -> str:
        if not isinstance(secret, str) or secret.lower() not in self.objects:
            raise InvalidArgumentError(
                f"options['secret']: a {self.name} secret is one of {self.names}, got "
                f"{secret!r:.60}"
            )
        return secret.lower()

    def _parse(self, turn: str) -> tuple[str, Any]:
        """``("guess", name)``, ``("attribute", (attribute, negated))`` or ``("none", None)``."""
        words = re.findall(r"[a-z]+", turn.lower())
        for word in words:
            for name in (word, word[:-1] if word.endswith("s") else None):
                if name in self.objects:
                    return "guess", name
        for word in words:
            if word in self.KEYWORDS:
                return "attribute", self.KEYWORDS[word]
        return "none", None

    def solved(self, secret: str, turn: str) -> bool:
        kind, value = self._parse(turn)
        return kind == "guess" and value == secret

    def answer(self, secret: str, turn: str) -> str:
        kind, value = self._parse(turn)
        if kind == "guess":
            return f" Yes, it is the {secret}!" if value == secret else self.NO + self.NEXT
        if kind == "attribute":
            attribute, negated = value
            yes = (attribute in self.objects[secret]) != negated
            return (self.YES if yes else self.NO) + self.NEXT
        return self.UNKNOWN + self.NEXT

    def replies(self) -> list[str]:
        wins = [f" Yes, it is the {name}!" for name in self.names]
        return [r + self.NEXT for r in (self.YES, self.NO, self.UNKNOWN)] + wins

    def wrap_reply(self, text: str) -> str:
        return " " + text.strip() + self.NEXT

    def example_turns(self) -> list[str]:
        return [" Does it live in the water", " Is it a " + max(self.names, key=len)]


GAMES: dict[str, type[Game]] = {"guess_number": GuessNumber, "twenty_questions": TwentyQuestions}


def make_game(game: str | Game, **game_kwargs: Any) -> Game:
    """A :class:`Game` object from a name in :data:`GAMES` (with ``game_kwargs``) or as given."""
    if isinstance(game, Game):
        if game_kwargs:
            raise ValueError("game_kwargs apply to a named game only, not to a Game object")
        return game
    if game not in GAMES:
        raise ValueError(f"unknown game {game!r}; built-in games: {sorted(GAMES)}")
    return GAMES[game](**game_kwargs)


# -- partners ------------------------------------------------------------------------------------


class RulePartner:
    """Answers with the game's rules (:meth:`Game.answer`). Deterministic; the default."""

    max_reply_tokens: int | None = None  # the env sizes the budget from Game.replies()

    def __call__(
        self, game: Game, secrets: Sequence[Any], turns: Sequence[str], histories: Sequence[str]
    ) -> list[str]:
        return [game.answer(s, t) for s, t in zip(secrets, turns)]


DEFAULT_TEMPLATE = (
    "You are the host of a guessing game. {rules}\nThe secret is: {secret}.\n"
    "The conversation so far:\n{history}\nThe player's last message: {turn}\n"
    "Your short answer:"
)


class LMPartner:
    """A causal LM writes the partner's replies (greedy, so deterministic; not the default).

    The prompt is ``template.format(rules=game.rules, secret=..., history=..., turn=...)``;
    the reply is the generated text up to the first newline, passed through
    :meth:`Game.wrap_reply`. The environment encodes it with its own tokenizer and keeps at most
    ``max_reply_tokens`` tokens. All slots that ended a turn are answered in one batched
    ``generate`` call (left padding).

    Args:
        model: a model name for :func:`textgym.models.load_lm` (``"smollm2-135m"``), or a
            transformers causal LM (then ``tokenizer`` is needed too).
        tokenizer: the model's tokenizer (loaded with the model when ``model`` is a name).
        template: the prompt template (fields ``rules``, ``secret``, ``history``, ``turn``).
        max_new_tokens: generation budget of one reply (in the partner model's tokens).
        max_reply_tokens: how many of the environment's tokens of a reply are kept (16).
        device: where the model runs (default: the model's device).
    """

    def __init__(
        self,
        model: Any = "smollm2-135m",
        tokenizer: Any = None,
        template: str = DEFAULT_TEMPLATE,
        max_new_tokens: int = 12,
        max_reply_tokens: int = 16,
        device: Any = None,
    ):
        if isinstance(model, str):
            from textgym.models import load_lm

            model, tokenizer = load_lm(model, device=device)
        elif tokenizer is None:
            raise ValueError("pass the model's tokenizer with a model object")
        self.model, self.tokenizer = model, tokenizer
        self.template = template
        self.max_new_tokens = int(max_new_tokens)
        self.max_reply_tokens = int(max_reply_tokens)
        if self.max_new_tokens < 1 or self.max_reply_tokens < 1:
            raise ValueError("max_new_tokens and max_reply_tokens must be >= 1")

    def __call__(
        self, game: Game, secrets: Sequence[Any], turns: Sequence[str], histories: Sequence[str]
    ) -> list[str]:
        import torch

        prompts = [
            self.template.format(rules=game.rules, secret=s, history=h, turn=t)
            for s, t, h in zip(secrets, turns, histories)
        ]
        tok = self.tokenizer
        ids = tok(prompts)["input_ids"]
        width = max(len(x) for x in ids)
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        input_ids = torch.full((len(ids), width), int(pad or 0), dtype=torch.long)
        attention = torch.zeros((len(ids), width), dtype=torch.long)
        for k, row in enumerate(ids):
            input_ids[k, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            attention[k, width - len(row) :] = 1
        device = next(self.model.parameters()).device
        with torch.no_grad():
            out = self.model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attention.to(device),
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                pad_token_id=int(pad or 0),
            )
        texts = tok.batch_decode(out[:, width:].tolist(), skip_special_tokens=True)
        return [game.wrap_reply(t.split("\n")[0]) for t in texts]
