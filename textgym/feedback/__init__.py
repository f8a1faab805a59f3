"""Human feedback for textgym: people rate completions, or compare two, and the answers become
rewards or training data for a reward model.

* :class:`HumanRatingScorer` is a scorer (``scorer(prompts, completions, references)``): it
  shows a whole batch on one screen, in the terminal or on a local web page, validates every
  rating, appends each one to a JSONL log the moment it is given (flush + fsync), reuses logged
  ratings after a restart (``resume=True``), and has a timeout with a documented fallback.
* :class:`PreferenceCollector` / :func:`collect_preferences` ask "which is better, A or B?"
  and write ``{"prompt", "chosen", "rejected"}`` comparisons to JSONL, which
  ``agents.reward_model.train_reward_model`` trains a Bradley-Terry reward model on.
* :func:`read_ratings`, :func:`read_comparisons`, :func:`comparisons_from_ratings` read the logs.

Only the standard library is used (``http.server`` for the page, which loads no external assets).
"""

from __future__ import annotations

from textgym.feedback.log import JsonlLog
from textgym.feedback.scorer import (
    HumanRatingScorer,
    PreferenceCollector,
    RatingTimeout,
    collect_preferences,
    comparisons_from_ratings,
    read_comparisons,
    read_ratings,
)
from textgym.feedback.session import Batch, Item, RatingScale, parse_choice
from textgym.feedback.terminal import TerminalInterface
from textgym.feedback.web import WebInterface

__all__ = [
    "Batch",
    "HumanRatingScorer",
    "Item",
    "JsonlLog",
    "PreferenceCollector",
    "RatingScale",
    "RatingTimeout",
    "TerminalInterface",
    "WebInterface",
    "collect_preferences",
    "comparisons_from_ratings",
    "parse_choice",
    "read_comparisons",
    "read_ratings",
]
