"""Tasks: where prompts come from and how completions are scored.

A :class:`Task` pairs a :class:`PromptSet` (examples with ``train``/``test`` splits) with a
batched scorer ``score(prompts, completions, references) -> np.ndarray[float32]``. The
environments sample prompts from a task and call its scorer once per step for every episode
that ended in that step, which is what makes learned or LM-based rewards affordable.

Prompts can come from

* a built-in set that ships with the package (``PromptSet.builtin("reviews")``),
* a Python list of strings, dicts or :class:`Example` (``PromptSet.from_list``),
* a JSONL file (``PromptSet.from_jsonl``),
* a Hugging Face ``datasets`` dataset or ``DatasetDict`` (``PromptSet.from_dataset``),
* a generator of examples by index (:class:`LazyExamples`: the procedural tasks draw example
  ``k`` only when an episode first asks for it),

and :func:`PromptSet.coerce` turns any of these into a ``PromptSet``, so an environment's
``prompts=`` argument accepts them all. :func:`read_jsonl` is textgym's one JSONL reader (prompt
files, task data, feedback logs) and :func:`load_rows` reads a task factory's ``data=``.

The named tasks (``TASKS``, ``make_task``) are in :mod:`textgym.task_suite`, one layer up: they
need the scorers of :mod:`textgym.rewards`, which need the types defined here.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from textgym.errors import EmptyPromptSetError, InvalidArgumentError

SPLITS = ("train", "test")

Reference = str | tuple[str, ...] | None


@dataclass(frozen=True)
class Example:
    """One prompt, with an optional reference answer (or several) and free-form metadata."""

    prompt: str
    reference: Reference = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str):
            raise InvalidArgumentError(
                f"Example.prompt must be a str, got {type(self.prompt).__name__} "
                f"{self.prompt!r:.60}"
            )


class LazyExamples(Sequence[Example]):
    """``size`` examples made on demand: item ``k`` is ``make(k)``, made once and kept.

    A split of a generated task (a procedural or reasoning-gym task) is one of these, so that
    building the task costs nothing and an environment draws only the examples its episodes use.
    ``make`` must be a pure function of ``k`` (the same example every time, in any process).
    It reads like a list: ``len``, indexing, slices (a list), iteration, ``+`` with a list, and
    ``==`` with a sequence of the same examples.
    """

    def __init__(self, size: int, make: Callable[[int], Example]):
        self.size, self.make = size, make
        self._made: dict[int, Example] = {}

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, k: Any) -> Any:
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(self.size))]
        k = int(k)
        if k < 0:
            k += self.size
        if not 0 <= k < self.size:
            raise IndexError(f"example {k} of {self.size}")
        if k not in self._made:
            self._made[k] = self.make(k)
        return self._made[k]

    def __add__(self, other: Sequence[Example]) -> list[Example]:
        return list(self) + list(other)

    def __radd__(self, other: Sequence[Example]) -> list[Example]:
        return list(other) + list(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or len(other) != self.size:
            return False
        return all(a == b for a, b in zip(self, other))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"LazyExamples({self.size}, made={len(self._made)})"


def _to_example(item: Any, where: str, prompt_field: str, reference_field: str | None) -> Example:
    if isinstance(item, Example):
        return item
    if isinstance(item, str):
        return Example(item)
    if isinstance(item, Mapping):
        if prompt_field not in item:
            raise KeyError(
                f"{where}: no {prompt_field!r} field (fields: {sorted(item)}); "
                f"pass prompt_field= to name the field that holds the prompt"
            )
        reference = item.get(reference_field) if reference_field else None
        if isinstance(reference, list):
            reference = tuple(str(r) for r in reference)
        meta = {k: v for k, v in item.items() if k not in (prompt_field, reference_field, "split")}
        if not isinstance(item[prompt_field], str):
            raise InvalidArgumentError(
                f"{where}: the {prompt_field!r} field must be a str, got "
                f"{type(item[prompt_field]).__name__} {item[prompt_field]!r:.60}"
            )
        return Example(item[prompt_field], reference, meta)
    raise InvalidArgumentError(
        f"{where}: expected a str, a dict or an Example, got {type(item).__name__} {item!r:.60}"
    )


class PromptSet:
    """Examples split into ``train`` and ``test``.

    Args:
        train: examples used for training (``split="train"``).
        test: held-out examples (``split="test"``).
        name: shown in error messages and ``repr``.
    """

    def __init__(self, train: Sequence[Example], test: Sequence[Example], name: str = "custom"):
        self.name = name
        self.splits: dict[str, Sequence[Example]] = {
            split: examples if isinstance(examples, LazyExamples) else list(examples)
            for split, examples in (("train", train), ("test", test))
        }
        if not len(self.splits["train"]) and not len(self.splits["test"]):
            raise EmptyPromptSetError(
                f"prompt set {name!r} is empty: give at least one prompt "
                f"(a list of strings, a JSONL file with a 'prompt' field, or a dataset)"
            )

    def __repr__(self) -> str:
        return f"PromptSet({self.name!r}, train={len(self['train'])}, test={len(self['test'])})"

    def __getitem__(self, split: str) -> Sequence[Example]:
        """The examples of ``split``; raises a clear error for an unknown or empty split."""
        if split not in self.splits:
            raise InvalidArgumentError(f"unknown split {split!r}; use one of {SPLITS}")
        examples = self.splits[split]
        if not len(examples):
            raise EmptyPromptSetError(
                f"split {split!r} of prompt set {self.name!r} has no prompts; "
                f"add {split} examples or use the other split"
            )
        return examples

    # -- constructors ------------------------------------------------------------------------

    @classmethod
    def from_list(
        cls,
        items: Iterable[Any],
        test: Iterable[Any] | None = None,
        test_fraction: float | None = None,
        seed: int = 0,
        prompt_field: str = "prompt",
        reference_field: str | None = "reference",
        name: str = "list",
    ) -> PromptSet:
        """Build from strings, dicts (``{"prompt": ..., "reference": ..., "split": ...}``) or Examples.

        The test split is, in order of precedence: ``test`` if given; the items whose ``split``
        field is ``"test"`` if any item has a ``split`` field; a seeded random ``test_fraction``
        of the items; otherwise the same examples as train (no held-out split).
        """
        items = list(items)
        has_split_field = any(isinstance(i, Mapping) and "split" in i for i in items)

        def convert(rows: list[Any], label: str) -> list[Example]:
            return [
                _to_example(r, f"{name} {label} item {k}", prompt_field, reference_field)
                for k, r in enumerate(rows)
            ]

        if test is not None:
            return cls(convert(items, "train"), convert(list(test), "test"), name)
        if has_split_field:
            splits: dict[str, list[Any]] = {"train": [], "test": []}
            for k, item in enumerate(items):
                split = item.get("split", "train") if isinstance(item, Mapping) else "train"
                if split not in splits:
                    raise InvalidArgumentError(
                        f"{name} item {k}: split {split!r} is not one of {SPLITS}"
                    )
                splits[split].append(item)
            return cls(convert(splits["train"], "train"), convert(splits["test"], "test"), name)
        examples = convert(items, "train")
        if test_fraction is None:
            return cls(examples, examples, name)
        if not 0.0 < test_fraction < 1.0:
            raise InvalidArgumentError(f"test_fraction must be in (0, 1), got {test_fraction}")
        order = np.random.default_rng(seed).permutation(len(examples))
        n_test = max(1, round(test_fraction * len(examples)))
        test_idx = set(order[:n_test].tolist())
        return cls(
            [e for k, e in enumerate(examples) if k not in test_idx],
            [e for k, e in enumerate(examples) if k in test_idx],
            name,
        )

    @classmethod
    def from_jsonl(
        cls,
        path: str | os.PathLike,
        prompt_field: str = "prompt",
        reference_field: str | None = "reference",
        test_fraction: float | None = None,
        seed: int = 0,
    ) -> PromptSet:
        """Build from a JSONL file, one JSON object per line (see :meth:`from_list` for splits)."""
        path = Path(path)
        return cls.from_list(
            read_jsonl(path),
            test_fraction=test_fraction,
            seed=seed,
            prompt_field=prompt_field,
            reference_field=reference_field,
            name=path.name,
        )

    @classmethod
    def from_dataset(
        cls,
        dataset: Any,
        prompt_field: str = "prompt",
        reference_field: str | None = None,
        train_split: str = "train",
        test_split: str = "test",
        test_fraction: float | None = None,
        seed: int = 0,
    ) -> PromptSet:
        """Build from a ``datasets.Dataset`` or ``DatasetDict`` (any mapping of split -> rows).

        For a ``DatasetDict`` the ``train_split``/``test_split`` entries are used; a single
        dataset is split as in :meth:`from_list`.
        """
        name = str(getattr(dataset, "info", None) and dataset.info.dataset_name or "dataset")
        if isinstance(dataset, Mapping):
            missing = [s for s in (train_split, test_split) if s not in dataset]
            if missing:
                raise KeyError(
                    f"dataset has splits {sorted(dataset)}, not {missing}; "
                    f"pass train_split=/test_split= to choose"
                )
            rows = {s: list(dataset[s]) for s in (train_split, test_split)}
            return cls.from_list(
                rows[train_split],
                test=rows[test_split],
                prompt_field=prompt_field,
                reference_field=reference_field,
                name=name,
            )
        return cls.from_list(
            list(dataset),
            test_fraction=test_fraction,
            seed=seed,
            prompt_field=prompt_field,
            reference_field=reference_field,
            name=name,
        )

    @classmethod
    def builtin(cls, name: str) -> PromptSet:
        """A prompt set that ships with the package (``textgym/data/<name>.jsonl``)."""
        return cls.from_list(read_builtin(name), name=name)

    @classmethod
    def coerce(cls, source: Any) -> PromptSet:
        """Turn a PromptSet, a list, a JSONL path or a dataset into a PromptSet."""
        if isinstance(source, PromptSet):
            return source
        if isinstance(source, (str, os.PathLike)):
            if not Path(source).is_file():
                raise InvalidArgumentError(
                    f"prompts={str(source)!r:.80} is not a file; pass a JSONL path, or a list "
                    f"of prompts such as [{str(source)!r:.40}]"
                )
            return cls.from_jsonl(source)
        if isinstance(source, bytes):
            raise InvalidArgumentError("prompts must be a list of str prompts or a path, not bytes")
        if isinstance(source, Mapping) or type(source).__module__.startswith("datasets"):
            return cls.from_dataset(source, reference_field="reference")
        if isinstance(source, Iterable):
            return cls.from_list(source)
        raise InvalidArgumentError(
            f"cannot use {type(source).__name__} as prompts; pass a list of strings/dicts, "
            f"a JSONL path, a datasets.Dataset or a PromptSet"
        )


Scorer = Callable[[Sequence[str], Sequence[str], Sequence[Reference]], np.ndarray]
"""``score(prompts, completions, references) -> float32 array of shape (len(prompts),)``."""


@dataclass
class Task:
    """A prompt set plus a batched scorer.

    Attributes:
        name: short identifier, used in error messages.
        prompts: the examples, with train/test splits.
        scorer: ``scorer(prompts, completions, references)`` returns one score per completion.
        reward_range: the range the scorer's values lie in (documentation and sanity checks).
        description: one line for ``textgym info``-style listings.
    """

    name: str
    prompts: PromptSet
    scorer: Scorer
    reward_range: tuple[float, float] = (-float("inf"), float("inf"))
    description: str = ""


# -- reading data ----------------------------------------------------------------------------


def read_jsonl(
    path: str | os.PathLike, missing_ok: bool = False, skip_bad_lines: bool = False
) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL file (one object per line), in order; blank lines are ignored.

    A line that is not valid JSON, or not a JSON object, raises an
    :class:`~textgym.errors.InvalidArgumentError` naming the file and line. With
    ``skip_bad_lines`` (append-only logs, whose last line a crash may have torn) such a line is
    skipped with a warning instead, and undecodable bytes read as U+FFFD. ``missing_ok``: a
    missing file reads as empty.
    """
    path = Path(path)
    if not path.is_file():
        if missing_ok and not path.exists():
            return []
        raise FileNotFoundError(f"JSONL file {str(path)!r} does not exist (or is not a file)")
    rows = []
    with path.open(encoding="utf-8", errors="replace" if skip_bad_lines else "strict") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                problem = None if isinstance(row, dict) else "not a JSON object"
            except json.JSONDecodeError as e:
                problem = f"not valid JSON ({e.msg})"
            if problem is None:
                rows.append(row)
            elif skip_bad_lines:
                warnings.warn(
                    f"{path}:{line_no}: skipping a line that is {problem}; "
                    f"probably a write cut short by a crash",
                    stacklevel=2,
                )
            else:
                raise InvalidArgumentError(
                    f"{path}:{line_no}: {problem}; each line must hold one JSON object, "
                    f'such as {{"prompt": "..."}}'
                )
    return rows


def read_builtin(name: str) -> list[dict[str, Any]]:
    """The rows of a data set that ships with the package (``textgym/data/<name>.jsonl``)."""
    data = resources.files("textgym") / "data" / f"{name}.jsonl"
    if not data.is_file():
        available = sorted(
            p.name.removesuffix(".jsonl")
            for p in (resources.files("textgym") / "data").iterdir()
            if p.name.endswith(".jsonl")
        )
        raise InvalidArgumentError(f"no built-in data set {name!r}; available: {available}")
    with resources.as_file(data) as path:
        return read_jsonl(path)


def load_rows(data: Any, builtin: str) -> list[dict]:
    """Rows (dicts) from a task factory's ``data`` or, when it is None, the built-in set.

    ``data``: a list of dicts, a JSONL path, a ``datasets.Dataset`` or a ``DatasetDict`` /
    mapping of split name -> rows (each row gets ``split`` set to its split name).
    """
    if data is None:
        return read_builtin(builtin)
    if isinstance(data, (str, os.PathLike)):
        return read_jsonl(data)
    if isinstance(data, Mapping):
        rows = []
        for split, split_rows in data.items():
            rows += [{**dict(r), "split": split} for r in split_rows]
        return rows
    if isinstance(data, Iterable):
        rows = [dict(r) for r in data]
        if rows and not isinstance(rows[0], Mapping):
            raise TypeError(f"data rows must be dicts, got {type(rows[0]).__name__}")
        return rows
    raise TypeError(
        f"cannot read task data from {type(data).__name__}; pass a list of dicts, a JSONL path "
        f"or a datasets Dataset/DatasetDict"
    )
