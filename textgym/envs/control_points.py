"""Control points: where a generation engine must hand control back to the environment.

The environment is the single source of truth for an episode's tokens; an engine (a per-token
LM loop, vLLM, a remote server, a script) only proposes them. An engine may run a slot on its
own, without calling ``step``, until the next **control point**, where the environment may act
(run a tool call and append its result, let a dialogue partner reply) or end the episode. Then
``step`` consumes the proposed tokens one by one, exactly as if they had been chosen one step at
a time, and the engine continues from the environment's new ids.

``env.control_points()`` returns one :class:`ControlPoints` (a vector env: a list, one per slot),
computed from the environment's own rules (:func:`text_gen_points`, :func:`dialogue_points`,
:func:`tool_use_points`). The guarantee: feeding the tokens an engine wrote up to its first
control point never ends the episode and never adds environment tokens before that point. At
the point the environment ends the episode or acts, or, for the points marked *may*, looks and
finds nothing to do (a newline that ends no answer line): then the engine asks again.

Strings are matched in the text the agent writes from the moment the points were asked for, as
vLLM's ``stop`` does (decoded with special tokens skipped). When the text before that moment
ends with the start of a string, the rest of the string is a point too (one that *may* end the
episode: only if it comes right away), so a string split across the moment is not missed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: the newline after which a tool-use episode may end (its ``Answer: ...`` line)
ANSWER_LINE_END = "\n"


@dataclass(frozen=True)
class ControlPoints:
    """Where an engine writing one slot's next tokens must hand control back to the env.

    Attributes:
        max_tokens: how many tokens the agent may write before the env acts or ends the episode
            by its budget: what is left of ``max_new_tokens`` (TextGen, tool use) or of the
            turn's ``max_turn_tokens`` (dialogue). 0 for a slot with no live episode (a vector
            env's slot that finished: its next step starts a new episode and ignores the action).
        stop_token_ids: ids that end the episode when the agent writes them (EOS, with
            ``stop_on_eos``).
        stop_strings: strings that end the episode when the completion comes to contain them
            (TextGen's ``stop_strings``).
        act_token_ids: ids after which the env acts in the same step (a dialogue's end-of-turn
            tokens: the partner replies, or the game ends).
        act_strings: strings after which the env may act (tool use: a tool's closing tag, where
            a complete call runs and its result is appended; the newline that may end the
            ``Answer:`` line and the episode).
    """

    max_tokens: int
    stop_token_ids: tuple[int, ...] = ()
    stop_strings: tuple[str, ...] = ()
    act_token_ids: tuple[int, ...] = ()
    act_strings: tuple[str, ...] = ()

    @property
    def token_ids(self) -> tuple[int, ...]:
        """Every id at which control goes back (stop and act ids): an engine's stop ids."""
        return self.stop_token_ids + tuple(
            i for i in self.act_token_ids if i not in self.stop_token_ids
        )

    @property
    def strings(self) -> tuple[str, ...]:
        """Every string at which control goes back (stop and act strings): an engine's stops."""
        return tuple(dict.fromkeys(self.stop_strings + self.act_strings))


def _split_strings(strings: Sequence[str], before: str) -> tuple[str, ...]:
    """``strings`` plus the rest of each one whose start ``before`` ends with."""
    out = list(strings)
    for s in strings:
        out += [s[k:] for k in range(1, len(s)) if before.endswith(s[:k])]
    return tuple(dict.fromkeys(out))


def _eos(core: Any) -> tuple[int, ...]:
    return () if core.eos_id is None else (int(core.eos_id),)


def text_gen_points(core: Any, ep: Any, slots: np.ndarray) -> list[ControlPoints]:
    """TextGen's points: EOS and the stop strings end the episode; the budget truncates it."""
    left = core.max_new_tokens - ep.num_generated[slots]
    started = slots[(ep.num_generated[slots] > 0) & bool(core.stop_strings)]
    texts = dict(zip(started.tolist(), core.decode(ep, started))) if started.size else {}
    return [
        ControlPoints(
            max_tokens=int(n),
            stop_token_ids=_eos(core),
            stop_strings=_split_strings(core.stop_strings, texts.get(s, "")),
        )
        for s, n in zip(slots.tolist(), left)
    ]


def dialogue_points(core: Any, ep: Any, slots: np.ndarray) -> list[ControlPoints]:
    """A dialogue's points: EOS ends it (the agent gives up); an end-of-turn token, or the
    turn's last token by ``max_turn_tokens``, hands the turn to the partner."""
    written = ep.num_generated[slots] - ep.turn_start[slots]
    act = tuple(np.flatnonzero(core.ends_turn).tolist())
    return [
        ControlPoints(max_tokens=int(n), stop_token_ids=_eos(core), act_token_ids=act)
        for n in core.max_turn_tokens - written
    ]


def tool_use_points(
    core: Any, ep: Any, slots: np.ndarray, texts: Sequence[str]
) -> list[ControlPoints]:
    """Tool use's points: EOS ends the episode; a tool's closing tag may complete a call (the
    env runs it and appends the result); a newline may end the answer line (and the episode);
    the budget truncates it. ``texts``: what the agent of each slot wrote since the last
    result."""
    left = core.max_new_tokens - ep.num_generated[slots]
    tags = [f"</{name}>" for name in core.tools] + [ANSWER_LINE_END]
    return [
        ControlPoints(
            max_tokens=int(n), stop_token_ids=_eos(core), act_strings=_split_strings(tags, text)
        )
        for n, text in zip(left, texts)
    ]


def slot_points(rule: Any, core: Any, ep: Any, live: np.ndarray) -> list[ControlPoints]:
    """One :class:`ControlPoints` per slot of ``ep`` by ``rule``; ``max_tokens=0`` for the
    slots that are not ``live``."""
    points = [ControlPoints(max_tokens=0)] * len(live)
    slots = np.flatnonzero(live)
    for s, p in zip(slots.tolist(), rule(core, ep, slots) if slots.size else []):
        points[s] = p
    return points
