"""Human feedback as textgym scorers: ratings of completions, and pairwise preferences."""

from __future__ import annotations

import itertools
import math
import os
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import IO, Any

import numpy as np

from textgym.feedback.log import JsonlLog, now_record
from textgym.feedback.session import PAIR, RATING, Batch, Item, RatingScale, parse_choice
from textgym.feedback.terminal import TerminalInterface
from textgym.feedback.web import WebInterface
from textgym.rewards import as_text, check_batch_lengths
from textgym.tasks import read_jsonl

INTERFACES = ("terminal", "web")
REWARD_MAPS = ("linear", "centered", "raw")


class RatingTimeout(TimeoutError):
    """Raised by a :class:`HumanRatingScorer` with ``fallback="raise"`` when a batch is not
    fully rated before ``timeout_s`` (or the terminal input closes). The ratings that were given
    are in the log and are reused by the next call, or by a new run with ``resume=True``."""


def _json_safe(reference: Any) -> Any:
    if reference is None or isinstance(reference, str):
        return reference
    if isinstance(reference, (list, tuple)):
        return [str(r) for r in reference]
    return str(reference)


class _HumanFeedback:
    """Front end + log + batch bookkeeping shared by ratings and comparisons."""

    kind = RATING

    def __init__(
        self,
        interface: str | Any,
        log_path: str | os.PathLike,
        timeout_s: float | None,
        resume: bool,
        input: IO[str] | None,
        output: IO[str] | None,
        host: str,
        port: int,
        open_browser: bool,
    ):
        if isinstance(interface, str):
            if interface == "terminal":
                self.ui: Any = TerminalInterface(input=input, output=output)
            elif interface == "web":
                self.ui = WebInterface(
                    host=host, port=port, output=output, open_browser=open_browser
                )
            else:
                raise ValueError(
                    f"interface must be one of {INTERFACES} (or an object with "
                    f"collect(batch, deadline)), got {interface!r}"
                )
            self.interface = interface
        elif hasattr(interface, "collect"):
            self.ui, self.interface = interface, type(interface).__name__
        else:
            raise TypeError(
                f"interface must be 'terminal', 'web' or an object with "
                f"collect(batch, deadline), got {type(interface).__name__}"
            )
        if timeout_s is not None and not timeout_s > 0:
            raise ValueError(
                f"timeout_s must be a positive number of seconds or None, got {timeout_s}"
            )
        self.timeout_s = timeout_s
        self.resume = resume
        self.log = JsonlLog(log_path)
        self.session = uuid.uuid4().hex[:8]
        self._batch_counter = itertools.count(1)
        self.last_call: dict[str, Any] = {}

    @property
    def log_path(self) -> str:
        return str(self.log.path)

    @property
    def url(self) -> str:
        """The rating page's address (web interface only; starts the server)."""
        if not isinstance(self.ui, WebInterface):
            raise AttributeError(f"interface {self.interface!r} has no URL; use interface='web'")
        return self.ui.url

    def start(self) -> None:
        """Start the web server now (it otherwise starts at the first call). No-op for the terminal."""
        if isinstance(self.ui, WebInterface):
            self.ui.start()

    def close(self) -> None:
        """Stop the web server, if any. The log needs no closing (every record is already on disk)."""
        if isinstance(self.ui, WebInterface):
            self.ui.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _deadline(self) -> float | None:
        return None if self.timeout_s is None else time.monotonic() + self.timeout_s

    def _new_batch(self, items: list[Item], parse, on_answer, scale=None) -> Batch:
        batch_id = f"{self.session}-{next(self._batch_counter)}"
        return Batch(self.kind, items, parse, on_answer, batch_id, scale)

    def _record(self, batch: Batch, index: int, **fields: Any) -> dict[str, Any]:
        return {
            "type": self.kind if self.kind == RATING else "comparison",
            **now_record(),
            "session": self.session,
            "batch": batch.batch_id,
            "item": index,
            "interface": self.interface,
            **fields,
        }


class HumanRatingScorer(_HumanFeedback):
    """A textgym scorer that asks a person to rate completions, one screen per batch.

    Called as ``scorer(prompts, completions, references)`` (by the environment, once per step
    for every episode that ended in that step), it shows the whole batch at once, in the
    terminal or on a local web page, collects one rating per completion, and returns the
    ratings mapped to rewards as a float32 array.

    * **Validation**: empty, non-numeric, non-whole (on an integer scale) and out-of-range
      ratings get a message saying what is accepted, and that item is asked again; on the web
      page the valid ratings of a submission are kept and saved, the others are marked.
    * **Log**: every valid rating is appended to ``log_path`` (JSONL, flushed and fsync-ed)
      the moment it is given, with ``time`` (ISO-8601 UTC), ``unix``, ``prompt``,
      ``completion``, ``reference``, ``rating``, ``reward``, ``scale``, ``session``, ``batch``,
      ``item`` and ``interface``.
    * **Resume** (``resume=True``): ratings in an existing log are loaded at start, and an
      identical (prompt, completion) pair is never asked twice (from the log or from earlier in
      this run; the last rating wins). A run killed mid-batch loses nothing: restarted with the
      same ``log_path``, it asks only for what was not rated yet. Log lines on a different scale
      are not reused. Within one batch, identical pairs are always asked once.
    * **Timeout**: ``timeout_s`` bounds the wait for one batch (``None``: wait forever). A
      closed terminal input (EOF) counts as a timeout. What happens to the items still unrated
      is ``fallback``:

      - ``"raise"`` (default): raise :class:`RatingTimeout` (inside an env it reaches you as a
        ``ScorerError`` whose cause is the ``RatingTimeout``). The ratings given are logged.
      - a number: that reward (in reward units, after ``reward`` mapping) for each unrated item;
        e.g. ``0.5`` for "neutral" with ``reward="linear"``.
      - a scorer ``f(prompts, completions, references)``, e.g. ``textgym.rewards.VaderSentiment()``:
        called once on the unrated items only.

      Fallback scores are not logged (the log holds human ratings only), so a later call or run
      asks for those items again.

    Args:
        interface: ``"terminal"``, ``"web"``, or an object with ``collect(batch, deadline)``.
        scale: ``(low, high)`` rating range, inclusive; whole numbers only when both ends are
            ints (override with ``integer``).
        log_path: the JSONL log (created with its folder if missing).
        timeout_s: seconds to wait for one batch, or ``None``.
        fallback: ``"raise"``, a number or a scorer (see above).
        reward: how a rating becomes the returned score: ``"linear"`` (default,
            ``(rating - low) / (high - low)`` in [0, 1]), ``"centered"`` (the same in [-1, 1]),
            ``"raw"`` (the rating itself) or a function ``rating -> float``.
        resume: reuse ratings from the log and from earlier calls (see above).
        integer: accept only whole numbers (default: whether both ends of ``scale`` are ints).
        input / output: terminal streams (default stdin / stdout); ``output`` also receives the
            web page's URL and status lines.
        host / port / open_browser: the web server (``127.0.0.1``; ``port=0`` picks a free port,
            see :attr:`url`; a fixed port keeps the same address across restarts).

    Use ``reward_mode="sparse"`` (the default) in the env: dense rewards would ask after every
    token. With a vector env, all episodes that end in the same step share one screen; with
    ``stop_on_eos=False`` every episode lasts ``max_new_tokens`` steps, so all ``num_envs``
    completions of a rollout come on one screen.
    """

    kind = RATING

    def __init__(
        self,
        interface: str | Any = "terminal",
        scale: tuple[float, float] = (1, 5),
        log_path: str | os.PathLike = "human_ratings.jsonl",
        timeout_s: float | None = None,
        fallback: str | float | Callable[..., Any] = "raise",
        reward: str | Callable[[float], float] = "linear",
        resume: bool = True,
        integer: bool | None = None,
        input: IO[str] | None = None,
        output: IO[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        open_browser: bool = False,
    ):
        super().__init__(
            interface, log_path, timeout_s, resume, input, output, host, port, open_browser
        )
        self.scale = RatingScale(scale[0], scale[1], integer)
        if isinstance(fallback, str):
            if fallback != "raise":
                raise ValueError(
                    f"fallback must be 'raise', a number or a scorer, got {fallback!r}"
                )
        elif isinstance(fallback, (int, float)) and not isinstance(fallback, bool):
            if not math.isfinite(fallback):
                raise ValueError(
                    f"a fallback score must be finite (the env rejects NaN), got {fallback}"
                )
        elif not callable(fallback):
            raise TypeError(
                f"fallback must be 'raise', a number or a scorer, got {type(fallback).__name__}"
            )
        self.fallback = fallback
        if isinstance(reward, str) and reward not in REWARD_MAPS:
            raise ValueError(f"reward must be one of {REWARD_MAPS} or a function, got {reward!r}")
        self.reward = reward
        self._known: dict[tuple[str, str], float] = {}
        if resume:
            self._load_log()

    def __repr__(self) -> str:
        return (
            f"HumanRatingScorer(interface={self.interface!r}, scale={self.scale.as_list()}, "
            f"log_path={self.log_path!r}, known_ratings={len(self._known)})"
        )

    @property
    def reward_range(self) -> tuple[float, float]:
        return (self.to_reward(self.scale.low), self.to_reward(self.scale.high))

    def to_reward(self, rating: float) -> float:
        """The score returned for ``rating`` (see ``reward``)."""
        if callable(self.reward):
            return float(self.reward(rating))
        if self.reward == "raw":
            return float(rating)
        unit = (rating - self.scale.low) / (self.scale.high - self.scale.low)
        return float(unit if self.reward == "linear" else 2.0 * unit - 1.0)

    def _load_log(self) -> None:
        other_scale = 0
        for row in read_jsonl(self.log.path, missing_ok=True, skip_bad_lines=True):
            if row.get("type", RATING) != RATING or "rating" not in row:
                continue
            if row.get("scale") != self.scale.as_list():
                other_scale += 1
                continue
            self._known[(as_text(row.get("prompt")), as_text(row.get("completion")))] = row[
                "rating"
            ]
        if other_scale:
            warnings.warn(
                f"{self.log.path}: {other_scale} rating(s) on another scale than "
                f"{self.scale.as_list()} are not reused",
                stacklevel=3,
            )

    def known_ratings(self) -> dict[tuple[str, str], float]:
        """``{(prompt, completion): rating}`` that would be reused (empty unless ``resume``)."""
        return dict(self._known)

    def __call__(
        self,
        prompts: Sequence[str],
        completions: Sequence[str],
        references: Sequence[Any] | None = None,
    ) -> np.ndarray:
        n = check_batch_lengths(completions, prompts=prompts, references=references)
        if references is None:
            references = [None] * n
        prompts = [as_text(p) for p in prompts]
        completions = [as_text(c) for c in completions]
        keys = list(zip(prompts, completions))
        known = self._known if self.resume else {}

        todo: dict[tuple[str, str], int] = {}  # key -> index of its item in the batch
        items: list[Item] = []
        for k, key in enumerate(keys):
            if key not in known and key not in todo:
                todo[key] = len(items)
                items.append(Item(prompts[k], completions[k], references[k]))
        ratings: dict[tuple[str, str], float] = {key: known[key] for key in keys if key in known}

        closed = None
        if items:

            def on_answer(i: int, rating: float) -> None:
                item = items[i]
                self.log.append(
                    self._record(
                        batch,
                        i,
                        prompt=item.prompt,
                        completion=item.completion,
                        reference=_json_safe(item.reference),
                        rating=rating,
                        reward=self.to_reward(rating),
                        scale=self.scale.as_list(),
                    )
                )
                self._known[(item.prompt, item.completion)] = rating

            batch = self._new_batch(items, self.scale.parse, on_answer, self.scale)
            self._describe_fallback()
            self.ui.collect(batch, self._deadline())
            closed = batch.closed_reason
            for key, i in todo.items():
                if i in batch.answers:
                    ratings[key] = batch.answers[i]

        missing = [k for k, key in enumerate(keys) if key not in ratings]
        scores = np.zeros(n, dtype=np.float32)
        for k, key in enumerate(keys):
            if key in ratings:
                scores[k] = self.to_reward(ratings[key])
        self.last_call = {
            "batch_size": n,
            "asked": len(items),
            "reused": sum(1 for key in set(keys) if key not in todo),
            "fallback": len(missing),
            "closed": closed,
        }
        if missing:
            scores[missing] = self._fallback(missing, prompts, completions, references, closed)
        return scores

    def _describe_fallback(self) -> None:
        if isinstance(self.ui, WebInterface):
            self.ui.fallback_note = (
                "Training stopped with an error (fallback='raise')."
                if self.fallback == "raise"
                else "Unrated items were scored by the fallback."
            )

    def _fallback(self, missing, prompts, completions, references, closed) -> np.ndarray:
        what = f"{len(missing)} of {len(prompts)} completion(s) were not rated ({closed})"
        if self.fallback == "raise":
            raise RatingTimeout(
                f"{what} within timeout_s={self.timeout_s}. The ratings given are in "
                f"{self.log_path} and are reused by the next call or by a new run with "
                f"resume=True; pass fallback=<score> or fallback=<scorer> to keep going instead"
            )
        if callable(self.fallback):
            sub = self.fallback(
                [prompts[k] for k in missing],
                [completions[k] for k in missing],
                [references[k] for k in missing],
            )
            values = np.asarray(sub, dtype=np.float32).reshape(-1)
            if values.shape != (len(missing),):
                raise ValueError(
                    f"the fallback scorer returned shape {values.shape} for {len(missing)} items"
                )
            note = f"scored by the fallback scorer {type(self.fallback).__name__}"
        else:
            values = np.full(len(missing), float(self.fallback), dtype=np.float32)
            note = f"given the fallback score {self.fallback}"
        self.ui.print(f"({what}: {note})")
        return values


class PreferenceCollector(_HumanFeedback):
    """Ask a person which of two completions of a prompt is better; log comparisons to JSONL.

    ``collector(prompts, completions_a, completions_b)`` shows all pairs on one screen (the
    web page puts A and B side by side with "A better / B better / tie"; the terminal asks
    ``a / b / t``) and returns one of ``"a"``, ``"b"``, ``"tie"`` per pair, or ``None`` for a
    pair left unanswered at the timeout (or EOF). Each answer is appended to ``path`` at once
    (flush + fsync) as ``{"type": "comparison", "prompt", "chosen", "rejected", "tie", "a",
    "b", "choice", "time", ...}``: the format :func:`agents.reward_model.train_reward_model`
    and :func:`read_comparisons` read (for a tie, ``chosen``/``rejected`` are A/B and ``tie``
    is true). With ``resume=True`` a pair (prompt, A, B) already in the file is not asked again.
    Arguments as for :class:`HumanRatingScorer`.
    """

    kind = PAIR

    def __init__(
        self,
        path: str | os.PathLike = "preferences.jsonl",
        interface: str | Any = "web",
        timeout_s: float | None = None,
        resume: bool = True,
        input: IO[str] | None = None,
        output: IO[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        open_browser: bool = False,
    ):
        super().__init__(
            interface, path, timeout_s, resume, input, output, host, port, open_browser
        )
        self._known: dict[tuple[str, str, str], str] = {}
        if resume:
            for row in read_jsonl(self.log.path, missing_ok=True, skip_bad_lines=True):
                if row.get("type") == "comparison" and row.get("choice") in ("a", "b", "tie"):
                    self._known[(as_text(row["prompt"]), as_text(row["a"]), as_text(row["b"]))] = (
                        row["choice"]
                    )

    def __call__(
        self,
        prompts: Sequence[str],
        completions_a: Sequence[str],
        completions_b: Sequence[str],
    ) -> list[str | None]:
        if not len(prompts) == len(completions_a) == len(completions_b):
            raise ValueError(
                f"prompts, completions_a and completions_b differ in length "
                f"({len(prompts)}, {len(completions_a)}, {len(completions_b)})"
            )
        keys = [
            (as_text(p), as_text(a), as_text(b))
            for p, a, b in zip(prompts, completions_a, completions_b)
        ]
        known = self._known if self.resume else {}
        todo: dict[tuple[str, str, str], int] = {}
        items: list[Item] = []
        for key in keys:
            if key not in known and key not in todo:
                todo[key] = len(items)
                items.append(Item(key[0], key[1], None, key[2]))
        choices = {key: known[key] for key in keys if key in known}
        closed = None
        if items:

            def on_answer(i: int, choice: str) -> None:
                item = items[i]
                chosen, rejected = (
                    (item.completion_b, item.completion)
                    if choice == "b"
                    else (item.completion, item.completion_b)
                )
                self.log.append(
                    self._record(
                        batch,
                        i,
                        prompt=item.prompt,
                        chosen=chosen,
                        rejected=rejected,
                        tie=choice == "tie",
                        a=item.completion,
                        b=item.completion_b,
                        choice=choice,
                    )
                )
                self._known[(item.prompt, item.completion, item.completion_b)] = choice

            batch = self._new_batch(items, parse_choice, on_answer)
            if isinstance(self.ui, WebInterface):
                self.ui.fallback_note = "Unanswered pairs were left out."
            self.ui.collect(batch, self._deadline())
            closed = batch.closed_reason
            for key, i in todo.items():
                if i in batch.answers:
                    choices[key] = batch.answers[i]
        result = [choices.get(key) for key in keys]
        self.last_call = {
            "batch_size": len(keys),
            "asked": len(items),
            "unanswered": sum(c is None for c in result),
            "closed": closed,
        }
        return result

    def comparisons(self) -> list[dict[str, Any]]:
        """Every comparison in the file, as ``{"prompt", "chosen", "rejected", "tie"}`` dicts."""
        return read_comparisons(self.log.path)


def collect_preferences(
    prompts: Sequence[str],
    completions_a: Sequence[str],
    completions_b: Sequence[str],
    path: str | os.PathLike = "preferences.jsonl",
    interface: str = "web",
    **kwargs: Any,
) -> list[str | None]:
    """One-shot :class:`PreferenceCollector`: ask about all pairs, close the server, return choices."""
    with PreferenceCollector(path, interface=interface, **kwargs) as collector:
        return collector(prompts, completions_a, completions_b)


def read_ratings(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rating records of a :class:`HumanRatingScorer` log, in the order they were given."""
    return [
        r
        for r in read_jsonl(path, skip_bad_lines=True)
        if r.get("type", RATING) == RATING and "rating" in r
    ]


def read_comparisons(
    source: str | os.PathLike | Iterable[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """Comparisons as ``{"prompt", "chosen", "rejected", "tie"}`` dicts, from a JSONL file or rows.

    Rows need ``prompt`` (may be empty), ``chosen`` and ``rejected``; ``tie`` defaults to false.
    Rows of another ``type`` than ``"comparison"`` (e.g. ratings in a shared log) are skipped;
    a comparison row without the needed fields raises a ``ValueError`` naming it.
    """
    if isinstance(source, (str, os.PathLike)):
        where = str(source)
        rows: Iterable[Mapping[str, Any]] = read_jsonl(source, skip_bad_lines=True)
    else:
        where, rows = "comparisons", source
    out = []
    for k, row in enumerate(rows):
        if row.get("type", "comparison") != "comparison":
            continue
        missing = [f for f in ("chosen", "rejected") if f not in row]
        if missing:
            raise ValueError(
                f"{where} row {k}: missing {missing} (fields: {sorted(row)}); a comparison needs "
                f"'prompt', 'chosen' and 'rejected'"
            )
        out.append(
            {
                "prompt": as_text(row.get("prompt")),
                "chosen": as_text(row["chosen"]),
                "rejected": as_text(row["rejected"]),
                "tie": bool(row.get("tie", False)),
            }
        )
    return out


def comparisons_from_ratings(
    source: str | os.PathLike | Iterable[Mapping[str, Any]], min_gap: float = 1e-9
) -> list[dict[str, Any]]:
    """Turn ratings into comparisons: for every prompt, every two completions whose ratings
    differ by at least ``min_gap`` make one ``{"prompt", "chosen", "rejected", "tie": False}``
    (the last rating of a repeated (prompt, completion) counts)."""
    rows = read_ratings(source) if isinstance(source, (str, os.PathLike)) else list(source)
    by_prompt: dict[str, dict[str, float]] = {}
    for row in rows:
        by_prompt.setdefault(as_text(row.get("prompt")), {})[as_text(row["completion"])] = float(
            row["rating"]
        )
    out = []
    for prompt, rated in by_prompt.items():
        for (c1, r1), (c2, r2) in itertools.combinations(rated.items(), 2):
            if abs(r1 - r2) >= min_gap:
                chosen, rejected = (c1, c2) if r1 > r2 else (c2, c1)
                out.append({"prompt": prompt, "chosen": chosen, "rejected": rejected, "tie": False})
    return out
