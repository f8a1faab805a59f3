"""The reasoning-gym adapter: any dataset of the ``reasoning-gym`` package as a textgym Task.

reasoning-gym (``pip install reasoning-gym``) generates over a hundred verifiable reasoning
datasets (arithmetic, algorithms, logic, games, graphs, ...) from a seed, in pure Python and
offline, and scores an answer with each dataset's own ``score_answer(answer, entry)``. The
adapter turns entries into examples (the question plus one line on the answer format), reads
the answer from a completion the same way as textgym's own checkers
(:func:`~textgym.procedural.base.extract_answer`: after the last ``Answer:``, else the whole
completion) and reports the same outcomes. The package is optional: nothing here imports it
until a task is built, and :func:`reasoning_gym_ids` is empty without it.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import random
import sys
from collections.abc import Callable
from typing import Any

from textgym.errors import InvalidArgumentError
from textgym.procedural.answer_safety import (
    EXPRESSION_DATASETS,
    make_evals_literal,
    safe_expression,
)
from textgym.procedural.base import (
    DIFFICULTIES,
    NO_ANSWER,
    RIGHT,
    WRONG_ANSWER,
    Checker,
    Verdict,
    answer_text,
    check_split_sizes,
    in_test_split,
    partial,
)
from textgym.tasks import Example, LazyExamples, PromptSet, Task

ANSWER_INSTRUCTION = 'Write your final answer after "Answer:".'

KNOWN_DATASETS: tuple[str, ...] = (
    "ab",
    "acre",
    "advanced_geometry",
    "aiw",
    "arc_1d",
    "arc_agi",
    "base_conversion",
    "basic_arithmetic",
    "bf",
    "binary_alternation",
    "binary_matrix",
    "bitwise_arithmetic",
    "boxnet",
    "caesar_cipher",
    "calendar_arithmetic",
    "chain_sum",
    "circuit_logic",
    "codeio",
    "coin_flip",
    "color_cube_rotation",
    "complex_arithmetic",
    "composite",
    "count_bits",
    "count_primes",
    "countdown",
    "course_schedule",
    "cryptarithm",
    "decimal_arithmetic",
    "decimal_chain_sum",
    "dice",
    "emoji_mystery",
    "family_relationships",
    "figlet_font",
    "fraction_simplification",
    "futoshiki",
    "game_of_life",
    "game_of_life_halting",
    "gcd",
    "graph_color",
    "group_anagrams",
    "gsm_symbolic",
    "intermediate_integration",
    "isomorphic_strings",
    "jugs",
    "kakurasu",
    "knight_swap",
    "knights_knaves",
    "largest_island",
    "lcm",
    "leg_counting",
    "letter_counting",
    "letter_jumble",
    "list_functions",
    "mahjong_puzzle",
    "manipulate_matrix",
    "maze",
    "mini_sudoku",
    "modulo_grid",
    "n_queens",
    "needle_haystack",
    "number_filtering",
    "number_format",
    "number_sequence",
    "number_sorting",
    "palindrome_generation",
    "palindrome_partitioning",
    "path_star",
    "polynomial_equations",
    "polynomial_multiplication",
    "pool_matrix",
    "power_function",
    "prime_factorization",
    "products",
    "propositional_logic",
    "puzzle24",
    "quantum_lock",
    "ransom_note",
    "rearc",
    "rectangle_count",
    "rotate_matrix",
    "rotten_oranges",
    "rubiks_cube",
    "rush_hour",
    "self_reference",
    "sentence_reordering",
    "shortest_path",
    "simple_equations",
    "simple_geometry",
    "simple_integration",
    "sokoban",
    "spell_backward",
    "spiral_matrix",
    "string_insertion",
    "string_manipulation",
    "string_splitting",
    "string_synthesis",
    "sudoku",
    "survo",
    "syllogism",
    "time_intervals",
    "tower_of_hanoi",
    "tsumego",
    "word_ladder",
    "word_sequence_reversal",
    "word_sorting",
    "zebra_puzzles",
)
"""The datasets of reasoning-gym 0.1.19 (``reasoning_gym.factory.DATASETS``), listed
here so that registering their ids does not import reasoning-gym (about 2 s): ``import
textgym`` stays fast. ``tests/test_reasoning_gym.py`` checks the list against the installed
package."""

LEVELS = {name: level for level, name in enumerate(DIFFICULTIES)}
"""``difficulty`` names -> reasoning-gym curriculum levels (easy 0, medium 1, hard 2)."""

NOT_STANDALONE = frozenset({"composite"})
"""Datasets that do not build alone (``composite`` mixes other datasets and needs their list)."""

UNSOUND_SCORERS = {
    "game_of_life_halting": "its score_answer compares bool(answer) with bool(oracle), so any "
    "non-empty answer scores 1.0",
}
"""Datasets whose ``score_answer`` rewards junk answers in full; :func:`reasoning_gym` builds
them when asked, :func:`reasoning_gym_ids` leaves them out."""

NOT_REPRODUCIBLE = {
    "list_functions": "the same seed gives different first entries from one build to the next, "
    "so an env is not deterministic under its seed",
}
"""Datasets whose entries are not a function of the seed; :func:`reasoning_gym` builds them
when asked, :func:`reasoning_gym_ids` leaves them out."""

EXECUTES_CODE = {
    "codeio": "it makes an entry by exec-ing a Python snippet from reasoning-gym's data file in "
    "the calling process, unsandboxed (one snippet writes sailor_performance.csv into the "
    "current folder)",
}
"""Datasets whose generators run code from their data files inside our process; neither
:func:`reasoning_gym` nor :func:`reasoning_gym_ids` builds them."""

MAX_PROBES = 1000
"""Dataset entries :func:`reasoning_gym` tries for one example of a split before it gives up."""

MIN_SIZE = 64
"""The smallest dataset size :func:`reasoning_gym` asks for, so that a split of a few examples
still has entries of its own to draw from."""


class EntryAnswer(str):
    """A reference: the entry's oracle answer as text, with the whole reasoning-gym entry as
    ``.entry`` for its ``score_answer``.

    Being a ``str`` keeps references what the rest of textgym expects (text to show, to write
    to JSON, or to imitate in a supervised warm start). The text is ``""`` for datasets whose
    entries have no single answer (several are right; ``score_answer`` checks any of them).
    """

    entry: dict[str, Any]

    def __new__(cls, entry: dict[str, Any], recipe: Recipe | None = None) -> EntryAnswer:
        answer = entry.get("answer")
        self = super().__new__(cls, "" if answer is None else str(answer))
        self.entry, self.recipe = entry, recipe
        return self

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # Entries may hold what pickle cannot (arc_1d keeps lambdas in its metadata): a pickled
        # reference is its recipe, and unpickling generates the same entry again.
        if self.recipe is not None:
            return _rebuild_reference, self.recipe
        return EntryAnswer, (self.entry,)

    def __copy__(self) -> EntryAnswer:
        return self  # a reference is a value: copies share it

    def __deepcopy__(self, memo: dict) -> EntryAnswer:
        return self


Recipe = tuple[str, dict, int]
"""How to generate an entry again: (dataset, config fields, index)."""

_GENERATORS: dict[str, Any] = {}


def _generator(dataset: str, fields: dict) -> Any:
    """The dataset's generator for config ``fields``, built once per process."""
    key = f"{dataset}:{fields!r}"  # plain values and dataclasses: a deterministic repr
    if key not in _GENERATORS:
        from reasoning_gym.factory import DATASETS

        make_evals_literal()
        dataset_cls, config_cls = DATASETS[dataset][:2]
        _GENERATORS[key] = dataset_cls(config=config_cls(**fields))
    return _GENERATORS[key]


def _rebuild_reference(dataset: str, fields: dict, index: int) -> EntryAnswer:
    return EntryAnswer(_generator(dataset, fields)[index], (dataset, fields, index))


class ReasoningGymChecker(Checker):
    """Scores an answer with a reasoning-gym dataset's ``score_answer(answer, entry)``.

    The answer is the text after the last ``Answer:`` (else the whole completion), as for every
    procedural task; a completion with none is a format error (0). The dataset's score ``s``
    then gives the outcome: correct when ``s >= 1`` (score 1.0), partial when ``credit_floor <=
    s < 1`` (score ``s``: the dataset's own partial credit, e.g. a near answer), wrong below
    (0). The floor (default 0.3) removes credit that the datasets give to any answer at all:
    many score every non-empty answer 0.01-0.05 (a format bonus), and a few give junk up to
    0.25 (letter overlap with the oracle, trivial tautologies). A ``score_answer`` that raises
    on a malformed answer counts as a format error. References must be the
    :class:`EntryAnswer` objects that :func:`reasoning_gym` makes.
    """

    def __init__(
        self,
        score_answer: Callable[[str, dict[str, Any]], float] | None,
        credit_floor: float = 0.3,
        recipe: tuple[str, dict] | None = None,
        source: Source | None = None,
    ):
        if not 0.0 <= credit_floor <= 1.0:
            raise InvalidArgumentError(f"credit_floor must be in [0, 1], got {credit_floor!r}")
        if score_answer is None and source is None:
            raise InvalidArgumentError("give score_answer, or the source of a reasoning_gym task")
        self._score_answer = score_answer
        self.credit_floor = credit_floor
        self.recipe = recipe  # (dataset, config fields): how a pickled checker is rebuilt
        self.source = source  # or how the dataset is built, when it is built on first use

    @property
    def score_answer(self) -> Callable[[str, dict[str, Any]], float]:
        """The dataset's ``score_answer`` (the dataset is built on first use)."""
        if self._score_answer is None:
            self._score_answer = _dataset(self.source).score_answer
        return self._score_answer

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        if self.source is not None:
            return ReasoningGymChecker, (None, self.credit_floor, None, self.source)
        if self.recipe is None:
            return ReasoningGymChecker, (self.score_answer, self.credit_floor)
        return _rebuild_checker, (*self.recipe, self.credit_floor)

    def check(self, completion: str, reference: EntryAnswer) -> Verdict:
        # The marker rule only, not the quote and period trimming of extract_answer: the
        # dataset's scorer normalizes in its own way, and some answers end with a period.
        answer = answer_text(completion)
        return self.judge(answer, reference) if answer else NO_ANSWER

    def judge(self, answer: str, reference: EntryAnswer) -> Verdict:
        entry = getattr(reference, "entry", None)
        if entry is None:
            raise InvalidArgumentError(
                f"reasoning-gym references must be the EntryAnswer objects reasoning_gym() "
                f"makes, got {type(reference).__name__} {reference!r:.40}"
            )
        kind = EXPRESSION_DATASETS.get(entry.get("metadata", {}).get("source_dataset"))
        if kind is not None and not safe_expression(answer, kind):
            return NO_ANSWER  # never handed to a scorer that would run it (answer_safety)
        try:
            score = float(self.score_answer(answer, entry))
        except Exception:  # the datasets' scorers raise on answers they cannot parse
            return NO_ANSWER
        if score >= 1.0:
            return RIGHT
        return partial(score) if score > 0.0 and score >= self.credit_floor else WRONG_ANSWER


def _config(
    dataset: str, difficulty: str | int | None, seed: int, size: int, overrides: dict
) -> Any:
    """The dataset's config object: its defaults, or its curriculum at a level; then
    ``overrides``."""
    from reasoning_gym.coaching.base_curriculum import (
        DefaultCurriculumContext,
        RangeAttributeMode,
    )
    from reasoning_gym.factory import DATASETS, create_curriculum, has_curriculum

    config_cls = DATASETS[dataset][1]
    fields = sorted(
        f.name for f in dataclasses.fields(config_cls) if f.name not in ("seed", "size")
    )
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise InvalidArgumentError(
            f"reasoning-gym dataset {dataset!r} has no config field(s) {unknown}; "
            f"its fields are {fields} (seed and size come from seed=, n_train= and n_test=)"
        )
    if difficulty is None:
        config = config_cls(seed=seed, size=size)
    else:
        level = LEVELS.get(difficulty, difficulty) if isinstance(difficulty, str) else difficulty
        if isinstance(level, bool) or not isinstance(level, int) or level < 0:
            raise InvalidArgumentError(
                f"difficulty must be None, one of {DIFFICULTIES} or a curriculum level >= 0, "
                f"got {difficulty!r:.40}"
            )
        if not has_curriculum(dataset):
            raise InvalidArgumentError(
                f"reasoning-gym dataset {dataset!r} has no curriculum, so no difficulty levels; "
                f"leave difficulty=None and set its config fields instead: {fields}"
            )
        curriculum = create_curriculum(dataset)
        curriculum.set_global_level(level)  # each attribute stops at its top level
        context = DefaultCurriculumContext(mode=RangeAttributeMode.INCLUSIVE)
        config = curriculum.generate_configuration({"seed": seed, "size": size}, context)
    config = dataclasses.replace(config, **overrides)
    try:
        if hasattr(config, "validate"):
            config.validate()
    except (AssertionError, ValueError) as e:
        raise InvalidArgumentError(f"reasoning-gym dataset {dataset!r}: bad config: {e}") from None
    return config


def reasoning_gym(
    dataset: str,
    difficulty: str | int | None = None,
    n_train: int = 1000,
    n_test: int = 100,
    seed: int = 0,
    credit_floor: float = 0.3,
    **config: Any,
) -> Task:
    """A reasoning-gym dataset as a task: ``reasoning_gym("letter_counting", "medium")``.

    ## Description

    Entries of the reasoning-gym dataset ``dataset`` (of size ``n_train + n_test``, at least
    :data:`MIN_SIZE`, generated from ``seed``), each made when an episode first draws it: nothing is generated, and for a
    dataset with its default config reasoning-gym is not even imported, until then. Train
    example ``k`` is the dataset's item ``k``, test example ``k`` its item ``n_train + k``,
    unless the item's question belongs to the other split (a hash of the question decides,
    :func:`~textgym.procedural.base.in_test_split`: a fifth of all questions are test
    questions); then seeded draws of other items replace it. So the splits are disjoint and
    reproducible, and a split may repeat a question. Each prompt is the entry's question and
    the line ``Write your final answer after "Answer:".``; each reference is an
    :class:`EntryAnswer` (the oracle answer, carrying the entry). Needs ``pip install
    reasoning-gym``; generation is offline. Datasets that run code from their data files
    (:data:`EXECUTES_CODE`) are refused.

    ## Difficulty

    ``difficulty=None`` (default) uses the dataset's default config. Otherwise the dataset's
    curriculum (most datasets have one) sets the config: ``"easy"``, ``"medium"`` and
    ``"hard"`` are curriculum levels 0, 1 and 2, and an int is any level. Every attribute of the
    curriculum (sizes, ranges, counts) takes that level's values, or its top level's when it has
    fewer levels; as in reasoning-gym's own default, a range spans the levels up to the chosen
    one (``"hard"`` questions include easier ones). A few curricula make configs their dataset
    rejects at some levels (an :class:`~textgym.errors.InvalidArgumentError` says which).

    ## Rewards

    :class:`ReasoningGymChecker`: the dataset's ``score_answer`` on the extracted answer, in
    [0, 1]. 1 is correct; values from ``credit_floor`` up are the dataset's partial credit (for
    many datasets, the oracle answer inside a longer answer earns ``len(oracle) /
    len(answer)``); lower values, which many datasets give to any answer, count as wrong (0); no
    answer is a format error (0). The scores are only as sound as the dataset's scorer: see
    :data:`UNSOUND_SCORERS`.

    ## Arguments

    * ``dataset``: a reasoning-gym dataset name (``reasoning_gym.factory.DATASETS``).
    * ``difficulty``: None, ``"easy"``/``"medium"``/``"hard"`` or a curriculum level (see
      Difficulty).
    * ``n_train`` / ``n_test``: entries per split (1000 and 100).
    * ``seed``: the dataset seed (0).
    * ``credit_floor``: dataset scores below it count as wrong (0.3; 0 keeps them).
    * ``**config``: fields of the dataset's config class, applied last (for example
      ``min_words=5`` for ``"letter_counting"``).
    """
    if not _installed():
        raise ModuleNotFoundError(
            "the reasoning_gym task needs the reasoning-gym package: pip install reasoning-gym"
        )
    if dataset in EXECUTES_CODE:
        raise InvalidArgumentError(
            f"reasoning-gym dataset {dataset!r} is not built: {EXECUTES_CODE[dataset]}"
        )
    if dataset not in KNOWN_DATASETS or dataset in NOT_STANDALONE:
        available = sorted(set(_datasets()) - NOT_STANDALONE - set(EXECUTES_CODE))
        raise InvalidArgumentError(
            f"unknown reasoning-gym dataset {dataset!r:.60}; available: {available}"
        )
    check_split_sizes(n_train, n_test, seed)
    if not 0.0 <= credit_floor <= 1.0:
        raise InvalidArgumentError(f"credit_floor must be in [0, 1], got {credit_floor!r}")
    size = max(n_train + n_test, MIN_SIZE)
    source: Source = (dataset, difficulty, seed, size, tuple(sorted(config.items())))
    if difficulty is not None or config:
        _dataset(source)  # check the level and the config fields now (imports reasoning-gym)
    name = f"reasoning_gym/{dataset}"

    return Task(
        name=name,
        prompts=PromptSet(
            LazyExamples(n_train, _Entry(source, n_train, test=False)),
            LazyExamples(n_test, _Entry(source, n_train, test=True)),
            name,
        ),
        scorer=ReasoningGymChecker(None, credit_floor, source=source),
        reward_range=ReasoningGymChecker.reward_range,
        description=f"reasoning-gym {dataset} (the dataset's score_answer, in [0, 1])",
    )


class _Entry:
    """Example ``k`` of one split of :func:`reasoning_gym` (a class, not a closure, so that a
    task and the environments holding it pickle)."""

    def __init__(self, source: Source, n_train: int, test: bool):
        self.source, self.n_train, self.test = source, n_train, test

    def __call__(self, k: int) -> Example:
        dataset, size = self.source[0], self.source[3]
        name, generator = f"reasoning_gym/{dataset}", _dataset(self.source)
        fields = _fields(generator)
        for j in range(MAX_PROBES):
            probe = random.Random(f"{name}/{self.test}/{k}/{j}").randrange(size)
            index = (self.n_train + k if self.test else k) if j == 0 else probe
            entry = generator[index]
            if in_test_split(name, entry["question"]) == self.test:
                reference = EntryAnswer(entry, (dataset, fields, index))
                return Example(f"{entry['question']}\n{ANSWER_INSTRUCTION}", reference)
        split = "test" if self.test else "train"
        raise RuntimeError(f"{name}: no {split} question among {MAX_PROBES} entries")


Source = tuple[str, Any, int, int, tuple]
"""How :func:`reasoning_gym` builds its dataset: (dataset, difficulty, seed, size, config
overrides as sorted items)."""


def _dataset(source: Source) -> Any:
    """The dataset generator of a :data:`Source`, built once per process."""
    key = repr(source)
    if key not in _SOURCES:
        dataset, difficulty, seed, size, overrides = source
        built = _config(dataset, difficulty, seed, size, dict(overrides))
        _SOURCES[key] = _generator(dataset, _fields(built))
    return _SOURCES[key]


_SOURCES: dict[str, Any] = {}


def _fields(config_or_generator: Any) -> dict:
    config = getattr(config_or_generator, "config", config_or_generator)
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}  # shallow


def describe_dataset(dataset: str) -> str:
    """Markdown about one reasoning-gym dataset: what its generator says of itself, its config
    defaults, and its first train example with the reference answer (imports reasoning-gym
    and generates that one example)."""
    from reasoning_gym.factory import DATASETS

    dataset_cls, config_cls = DATASETS[dataset][:2]
    about = " ".join((dataset_cls.__doc__ or config_cls.__doc__ or "").split())
    config = config_cls()
    fields = [
        f"* ``{f.name}={getattr(config, f.name)!r}``"
        for f in dataclasses.fields(config)
        if f.name not in ("seed", "size")
    ]
    example = reasoning_gym(dataset, n_train=1, n_test=1).prompts["train"][0]
    question = "\n".join("    " + line for line in example.prompt.splitlines())
    answer = str(example.reference) or "(several answers are right; score_answer checks any)"
    lines = [f"reasoning-gym's ``{dataset}`` dataset ({dataset_cls.__module__}): {about}", ""]
    lines += ["Config defaults (``task_kwargs`` may override any):", "", *fields, ""]
    lines += ["An example prompt:", "", question, "", f"Its reference answer: ``{answer[:300]}``"]
    return "\n".join(lines)


def _installed() -> bool:
    """Whether reasoning-gym can be imported (without importing it: that takes seconds)."""
    if "reasoning_gym" in sys.modules:
        return sys.modules["reasoning_gym"] is not None
    try:
        return importlib.util.find_spec("reasoning_gym") is not None
    except (ImportError, ValueError):
        return False


def _datasets() -> list[str]:
    from reasoning_gym.factory import DATASETS

    return list(DATASETS)


def _rebuild_checker(dataset: str, fields: dict, credit_floor: float) -> ReasoningGymChecker:
    score_answer = _generator(dataset, fields).score_answer
    return ReasoningGymChecker(score_answer, credit_floor, (dataset, fields))


def reasoning_gym_ids() -> dict[str, dict[str, Any]]:
    """Proposed Gymnasium ids of every reasoning-gym dataset that builds alone and offline:
    ``"RG-<dataset>-v0"`` -> TextGenEnv kwargs; empty when reasoning-gym is not installed.
    Datasets in :data:`UNSOUND_SCORERS`, :data:`NOT_REPRODUCIBLE` and :data:`EXECUTES_CODE` are
    left out.

    The ids use a dash prefix, not ``rg:<dataset>``: Gymnasium reads ``module:id`` as "import
    ``module``, then make ``id``", so a colon form would send ``gym.make`` looking for a module
    named ``rg``. Questions can be long (grids, boards, code) and answers several lines, so the
    budgets are generous (2048 prompt tokens, 256 new tokens) and there is no stop string;
    pass ``task_kwargs={"dataset": ..., "difficulty": ...}`` or other budgets to change them.
    """
    if not _installed():
        return {}
    return {
        f"RG-{name}-v0": {
            "task": "reasoning_gym",
            "task_kwargs": {"dataset": name},
            "max_new_tokens": 256,
            "max_prompt_tokens": 2048,
        }
        for name in KNOWN_DATASETS
        if name not in NOT_STANDALONE | set(UNSOUND_SCORERS) | set(NOT_REPRODUCIBLE)
        and name not in EXECUTES_CODE
    }
