"""Procedural verifiable reasoning tasks: generated offline from a seed, checked exactly.

Six tasks, each in its own module with ``difficulty="easy" | "medium" | "hard"`` and disjoint
train/test splits:

* :func:`~textgym.procedural.countdown.countdown`: reach a target with ``+ - * /``;
* :func:`~textgym.procedural.multistep_arithmetic.multistep_arithmetic`: evaluate expressions
  with carries, precedence and parentheses;
* :func:`~textgym.procedural.letter_counting.letter_counting`: count a letter;
* :func:`~textgym.procedural.spell_backward.spell_backward`: spell a word backward;
* :func:`~textgym.procedural.word_sorting.word_sorting`: sort words alphabetically;
* :func:`~textgym.procedural.ordering_puzzle.ordering_puzzle`: place people in a row from
  clues (a unique solution, checked by brute force);

plus :func:`~textgym.procedural.reasoning_gym.reasoning_gym`, any dataset of the optional
``reasoning-gym`` package. Every prompt says how to answer and ends with ``Answer:``; every
scorer is a :class:`~textgym.procedural.base.Checker`, which tells correct, partial, wrong and
format-error answers apart (``checker.score_with_outcomes(prompts, completions, references)``).

:data:`PROCEDURAL_TASKS` maps task names to factories (``factory(**task_kwargs) -> Task``) and
:data:`PROCEDURAL_IDS` proposes Gymnasium ids with their ``TextGenEnv`` kwargs; budgets fit the
SmolLM2 tokenizer. :func:`~textgym.procedural.reasoning_gym.reasoning_gym_ids` proposes one id
per reasoning-gym dataset.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# The modules keep their names as attributes of the package (each factory is named after its
# module: countdown.countdown), so `import textgym.procedural.countdown` finds the module.
from textgym.procedural import (
    countdown,
    letter_counting,
    multistep_arithmetic,
    ordering_puzzle,
    reasoning_gym,
    spell_backward,
    word_sorting,
)
from textgym.procedural.base import DIFFICULTIES, OUTCOMES, Checker
from textgym.procedural.reasoning_gym import reasoning_gym_ids
from textgym.tasks import Task

PROCEDURAL_TASKS: dict[str, Callable[..., Task]] = {
    "countdown": countdown.countdown,
    "multistep_arithmetic": multistep_arithmetic.multistep_arithmetic,
    "letter_counting": letter_counting.letter_counting,
    "spell_backward": spell_backward.spell_backward,
    "word_sorting": word_sorting.word_sorting,
    "ordering_puzzle": ordering_puzzle.ordering_puzzle,
    "reasoning_gym": reasoning_gym.reasoning_gym,
}
"""Task name -> factory; each factory's docstring documents the task."""

_LINE = ("\n",)  # every procedural answer is one line

# id stem -> (task name, {difficulty: (max_new_tokens, max_prompt_tokens)})
_BUDGETS: dict[str, tuple[str, dict[str, tuple[int, int]]]] = {
    "Countdown": ("countdown", {"easy": (16, 64), "medium": (24, 64), "hard": (32, 80)}),
    "MultiStepArithmetic": (
        "multistep_arithmetic",
        {"easy": (8, 32), "medium": (12, 40), "hard": (16, 48)},
    ),
    "LetterCounting": ("letter_counting", {"easy": (8, 40), "medium": (8, 40), "hard": (8, 48)}),
    "SpellBackward": ("spell_backward", {"easy": (16, 32), "medium": (20, 32), "hard": (32, 32)}),
    "WordSorting": ("word_sorting", {"easy": (16, 40), "medium": (24, 48), "hard": (32, 56)}),
    "OrderingPuzzle": (
        "ordering_puzzle",
        {"easy": (12, 64), "medium": (16, 96), "hard": (20, 128)},
    ),
}

PROCEDURAL_IDS: dict[str, dict[str, Any]] = {
    f"TextGen-{stem}-{difficulty.capitalize()}-v0": {
        "task": task,
        "task_kwargs": {"difficulty": difficulty},
        "max_new_tokens": new_tokens,
        "max_prompt_tokens": prompt_tokens,
        "stop_strings": _LINE,
    }
    for stem, (task, budgets) in _BUDGETS.items()
    for difficulty, (new_tokens, prompt_tokens) in budgets.items()
}
"""Proposed id -> TextGenEnv kwargs (``TextGen-Countdown-Easy-v0``, ...): 18 ids, the prompt
budget fits every prompt and the token budget the longest reference, with the SmolLM2
tokenizer."""

__all__ = [
    "DIFFICULTIES",
    "OUTCOMES",
    "PROCEDURAL_IDS",
    "PROCEDURAL_TASKS",
    "Checker",
    "reasoning_gym_ids",
]
