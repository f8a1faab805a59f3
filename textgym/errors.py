"""Exceptions textgym raises. Each message says what went wrong and how to fix it."""

from __future__ import annotations

from gymnasium.error import InvalidAction


class InvalidTokenError(InvalidAction, ValueError):
    """An action that is not a valid token id for the environment's vocabulary."""


class EmptyPromptSetError(ValueError):
    """A prompt source (or one of its splits) holds no prompts."""


class PromptTooLongError(ValueError):
    """A prompt does not fit the environment's prompt budget and truncation is off."""


class ScorerError(RuntimeError):
    """A task's scorer raised, or returned scores of the wrong shape or non-finite values."""
