"""Argument checks shared by the environments: each names the argument and says what to pass.

Every check raises :class:`~textgym.errors.InvalidArgumentError` (a ``ValueError`` and a
``TypeError``) before anything is loaded or allocated, so a rejected call changes nothing.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from textgym.errors import InvalidArgumentError

# Sizes past these are typos, not experiments: refuse them before allocating anything.
MAX_TOKENS = 1 << 20  # max_new_tokens, max_prompt_tokens
MAX_VOCAB = 1 << 24
MAX_NUM_ENVS = 1 << 20
MAX_EPISODE_BYTES = 16 << 30  # the episode arrays of a vector env


def check_int(name: str, value: Any, low: int, high: int, example: int) -> int:
    """``value`` as an ``int`` in ``[low, high]`` (Python or numpy integers, not bools)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise InvalidArgumentError(
            f"{name} must be an integer, got {type(value).__name__} {value!r:.60}; "
            f"pass e.g. {name}={example}"
        )
    if not low <= value <= high:
        raise InvalidArgumentError(
            f"{name} must be between {low} and {high}, got {value}; pass e.g. {name}={example}"
        )
    return int(value)


def check_text(name: str, text: Any) -> str:
    """``text``, a ``str`` that UTF-8 can encode. A lone surrogate (``"\\ud800"``, what
    ``bytes.decode(errors="surrogateescape")`` leaves) has no UTF-8 form: a Hugging Face
    tokenizer raises a bare ``TypeError`` on it, the character tokenizer maps it to ``<unk>``."""
    if not isinstance(text, str):
        raise InvalidArgumentError(f"{name} must be a str, got {type(text).__name__} {text!r:.60}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidArgumentError(
            f"{name} holds {text[e.start : e.end]!r:.40} at index {e.start}, which UTF-8 cannot "
            f"encode (a lone surrogate), so no tokenizer can: {text[:60]!r}; remove it, or decode "
            f"the bytes it came from with errors='replace'"
        ) from None
    return text


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidArgumentError(
            f"{name} must be True or False, got {type(value).__name__} {value!r:.60}"
        )
    return bool(value)


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise InvalidArgumentError(f"{name} must be one of {list(choices)}, got {value!r:.60}")
    return value


def check_seed(seed: Any, name: str = "seed") -> int | None:
    """A reset seed: None or a non-negative Python/numpy integer."""
    if seed is None:
        return None
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise InvalidArgumentError(
            f"{name} must be None or a non-negative integer, got {type(seed).__name__} {seed!r:.60}"
        )
    if seed < 0:
        raise InvalidArgumentError(f"{name} must be a non-negative integer, got {seed}")
    return int(seed)


def vector_seeds(seed: Any, num_envs: int) -> list[int | None]:
    """One reset seed per slot of a vector env: ``seed + i`` for an integer ``seed``, all None
    for None, or a list of ``num_envs`` seeds (None keeps a slot's RNG), each checked."""
    if seed is None or isinstance(seed, (int, np.integer)):
        seed = check_seed(seed)
        return [None if seed is None else seed + i for i in range(num_envs)]
    if isinstance(seed, (list, tuple, np.ndarray)) and len(seed) == num_envs:
        return [check_seed(s, f"seed[{i}]") for i, s in enumerate(seed)]
    raise InvalidArgumentError(
        f"seed must be None, an int or a list of {num_envs} ints/None, got {seed!r:.60}"
    )


def check_render_mode(cls: type, render_mode: Any) -> Any:
    """Gymnasium's own environments accept an unknown render mode with a warning (SB3's
    ``make_vec_env`` passes ``"rgb_array"``); textgym does the same. ``render()`` then returns
    None."""
    if render_mode is not None and render_mode not in cls.metadata["render_modes"]:
        if not isinstance(render_mode, str):
            raise InvalidArgumentError(
                f"render_mode must be None or a string, got {type(render_mode).__name__}"
            )
        warnings.warn(
            f"{cls.__name__} renders text only: render_mode={render_mode!r} is not one of "
            f"{cls.metadata['render_modes']}, so render() returns None",
            stacklevel=3,
        )
    return render_mode
