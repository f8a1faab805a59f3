"""The built-in task suite: sentiment, arithmetic, copy/reverse/sort, keywords, translation,
summarization and QA.

Each task is a factory ``name(**task_kwargs) -> Task`` in :data:`TASKS`, the table of named
tasks (``make_task("arithmetic", digits=3)``; environments take ``task="arithmetic",
task_kwargs={...}``). A factory's docstring is the task's documentation (Description, Rewards,
Arguments, Data); :func:`textgym.describe` joins it with the environment's common sections for
any registered id.

Data ships in ``textgym/data`` and works offline; the hand-written sets (translation, passages
for summarization and QA, keyword sets) were written for textgym. Procedural tasks (arithmetic,
copy, reverse, sort) are generated from a seed with disjoint train/test splits. Every
data-backed factory takes ``data=``: a list of dicts, a JSONL path, or a ``datasets``
``Dataset``/``DatasetDict`` with the same fields as the built-in file (rows with a ``split``
field of ``"train"``/``"test"``; a ``DatasetDict``'s split names are used; without any split
information, every row is in both splits).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from textgym.errors import InvalidArgumentError
from textgym.procedural import PROCEDURAL_TASKS
from textgym.rewards import (
    BLEU,
    DEFAULT_JUDGE_TEMPLATE,
    TER,
    ChrF,
    ConceptCoverage,
    ExactMatch,
    Fluency,
    LMJudge,
    LMScore,
    NumericMatch,
    PositionAccuracy,
    Rouge,
    TokenF1,
    VaderSentiment,
    WeightedSum,
)
from textgym.tasks import PromptSet, Task, load_rows

# -- data rows ---------------------------------------------------------------------------------


def _need(row: Mapping, fields: tuple[str, ...], where: str) -> None:
    missing = [f for f in fields if f not in row]
    if missing:
        raise KeyError(f"{where}: row without field(s) {missing} (fields: {sorted(row)})")


def _prompt_set(rows: list[dict], name: str) -> PromptSet:
    """``rows`` are dicts with prompt/reference/split; no ``split`` anywhere -> both splits."""
    return PromptSet.from_list(rows, name=name)


# -- sentiment ---------------------------------------------------------------------------------


def sentiment(
    scorer: str = "vader",
    judge_model: Any = "smollm2-135m",
    judge_tokenizer: Any = None,
    judge_template: str | None = None,
    data: Any = None,
) -> Task:
    """Continue a review opening so that the continuation is positive.

    ## Description

    400 openings of product, place and service reviews (``"The cold brew they make in small
    batches"``) from 20 domains, 320 train / 80 test. The agent writes the rest of the review;
    only what it writes is scored, so copying a positive prompt earns nothing.

    ## Rewards

    * ``scorer="vader"`` (default): VADER compound sentiment of the completion, in [-1, 1].
      Rule-based, ~10k texts/s on one core.
    * ``scorer="lm_judge"``: :class:`~textgym.rewards.LMJudge`, the log-odds of " positive"
      vs " negative" under a reference LM (``judge_model``) after a prompt template
      (``judge_template``, default :data:`~textgym.rewards.DEFAULT_JUDGE_TEMPLATE`). Batched,
      on the GPU when there is one; a real number (positive = judged positive).

    ## Arguments

    * ``scorer``: ``"vader"`` or ``"lm_judge"``.
    * ``judge_model`` / ``judge_tokenizer``: a name for ``load_lm`` or a model object (and its
      tokenizer) for the LM judge.
    * ``judge_template``: a ``str.format`` template with ``{prompt}`` and ``{completion}``.
    * ``data``: your own openings: rows with a ``prompt`` field (and optional ``split``).
    """
    if scorer == "vader":
        score, reward_range = VaderSentiment(), (-1.0, 1.0)
    elif scorer == "lm_judge":
        score = LMJudge(
            judge_model, judge_tokenizer, template=judge_template or DEFAULT_JUDGE_TEMPLATE
        )
        reward_range = (-float("inf"), float("inf"))
    else:
        raise ValueError(f"scorer must be 'vader' or 'lm_judge', got {scorer!r}")
    rows = load_rows(data, "reviews")
    for k, r in enumerate(rows):
        _need(r, ("prompt",), f"sentiment data row {k}")
    return Task(
        name="sentiment",
        prompts=_prompt_set(rows, "sentiment"),
        scorer=score,
        reward_range=reward_range,
        description="continue a review opening positively (VADER compound or an LM judge)",
    )


# -- arithmetic --------------------------------------------------------------------------------

ARITHMETIC_TEMPLATE = "Q: What is {question}?\nA:"


def _expressions(
    rng: np.random.Generator, digits: int, operators: str, steps: int, count: int
) -> Iterator[tuple[str, int]]:
    """``count`` random ``(expression, value)`` pairs, drawn in one batch (scalar draws are slow)."""
    operands = rng.integers(10**digits, size=(count, steps + 1)).tolist()
    for numbers, which in zip(operands, rng.integers(len(operators), size=(count, steps)).tolist()):
        ops, terms = [operators[o] for o in which], [numbers[0]]  # terms: signed products
        for op, number in zip(ops, numbers[1:]):
            if op == "*":
                terms[-1] *= number
            else:
                terms.append(number if op == "+" else -number)
        text = " ".join([str(numbers[0])] + [f"{op} {n}" for op, n in zip(ops, numbers[1:])])
        yield text, sum(terms)


def arithmetic(
    digits: int = 2,
    operators: str = "+-",
    steps: int = 1,
    partial_credit: bool = False,
    n_train: int = 5000,
    n_test: int = 500,
    seed: int = 0,
    template: str = ARITHMETIC_TEMPLATE,
    answer: str = "last",
) -> Task:
    """Answer arithmetic questions with the exact number: ``"Q: What is 37 + 45?\\nA:"`` -> 82.

    ## Description

    Questions are generated from ``seed``: ``steps`` operations (``operators``) on operands of
    up to ``digits`` digits, evaluated with the usual precedence (``3 + 4 * 2 = 11``); results
    may be negative. The train and test questions are disjoint (each distinct question is in
    one split only). Default: 5,000 train / 500 test two-digit additions and subtractions.

    ## Rewards

    :class:`~textgym.rewards.NumericMatch`: 1 if the last number in the completion (up to
    the newline that ends the episode; ``answer="first"``: the first one) equals the result,
    else 0, so both "82" and "37 + 45 = 82" count. With ``partial_credit=True`` a wrong
    number earns ``0.5 * max(0, 1 - |error| / max(|result|, 1))``.

    ## Arguments

    * ``digits``: operand size, operands are in ``[0, 10**digits)`` (2).
    * ``operators``: any of ``"+-*"`` (``"+-"``).
    * ``steps``: operations per question, 1 = ``a + b``, 2 = ``a + b - c``, ... (1).
    * ``partial_credit``, ``answer``: see Rewards.
    * ``n_train`` / ``n_test``: questions per split (capped by how many distinct questions
      exist: then 10% of them are the test split).
    * ``seed``: the generator seed (0).
    * ``template``: the prompt, a ``str.format`` template with ``{question}``.
    """
    if digits < 1 or steps < 1:
        raise ValueError(f"digits and steps must be >= 1, got {digits} and {steps}")
    if not operators or set(operators) - set("+-*"):
        raise ValueError(f"operators must be a non-empty subset of '+-*', got {operators!r}")
    operators = "".join(dict.fromkeys(operators))
    possible = (10**digits) ** (steps + 1) * len(operators) ** steps
    wanted = n_train + n_test
    if possible <= 2 * wanted:  # small spaces: enumerate by sampling many times, then split
        n_test = max(1, possible // 10)
        n_train = possible - n_test
        wanted = possible
    rng = np.random.default_rng(seed)
    seen: dict[str, int] = {}
    for _ in range(50):  # batches of `wanted` draws, as many draws as before at most
        seen.update(_expressions(rng, digits, operators, steps, wanted))  # first places kept
        if len(seen) >= wanted:
            break
    questions = list(seen)[:wanted]
    n_test = min(n_test, len(questions) // 2)
    splits = {"test": questions[:n_test], "train": questions[n_test : n_test + n_train]}
    rows = [
        {
            "prompt": template.format(question=q),
            "reference": str(seen[q]),
            "question": q,
            "split": split,
        }
        for split, qs in splits.items()
        for q in qs
    ]
    return Task(
        name="arithmetic",
        prompts=_prompt_set(rows, "arithmetic"),
        scorer=NumericMatch(which=answer, partial_credit=partial_credit),
        reward_range=(0.0, 1.0),
        description="answer arithmetic questions with the exact number (1/0)",
    )


# -- algorithmic: copy, reverse, sort ----------------------------------------------------------

_TRANSFORMS: dict[str, Callable[[str], str]] = {
    "copy": lambda s: s,
    "reverse": lambda s: s[::-1],
    "sort": lambda s: "".join(sorted(s)),
}


def algorithmic(
    kind: str = "copy",
    alphabet: str = "abcde",
    min_len: int = 3,
    max_len: int = 6,
    n_train: int = 2000,
    n_test: int = 200,
    seed: int = 0,
    separator: str = "=",
) -> Task:
    """Copy, reverse or sort a short string, one character per token.

    ## Description

    The prompt is a random string over ``alphabet`` followed by ``separator`` (``"cabd="``);
    the target is the string itself (copy), reversed (``"dbac"``) or sorted (``"abcd"``). Made
    for the built-in character tokenizer (``tokenizer="char"``, 99 ids, one per character):
    small enough that small policies and Stable-Baselines3 learn it from scratch on a CPU.
    Strings are generated from ``seed``; train and test strings are disjoint. Default:
    2,000 train / 200 test strings of length 3-6 over ``"abcde"``. The registered ids give
    ``max_new_tokens = max_len + 1`` (room for the answer and EOS).

    ## Rewards

    :class:`~textgym.rewards.PositionAccuracy`: characters equal to the target at the same
    position, divided by ``max(len(target), len(completion))``, in [0, 1]; 1 exactly when the
    completion is the target (ending with EOS, or at the token budget).

    ## Arguments

    * ``kind``: ``"copy"``, ``"reverse"`` or ``"sort"``.
    * ``alphabet``: the characters strings are made of (``"abcde"``).
    * ``min_len`` / ``max_len``: string lengths (3 and 6).
    * ``n_train`` / ``n_test``: strings per split (capped by how many exist).
    * ``seed``: the generator seed (0).
    * ``separator``: written after the string in the prompt (``"="``).
    """
    if kind not in _TRANSFORMS:
        raise ValueError(f"kind must be one of {sorted(_TRANSFORMS)}, got {kind!r}")
    if not alphabet or len(set(alphabet)) != len(alphabet) or separator in alphabet:
        raise ValueError("alphabet must be distinct characters, not containing the separator")
    if not 1 <= min_len <= max_len:
        raise ValueError(f"need 1 <= min_len <= max_len, got {min_len}, {max_len}")
    possible = sum(len(alphabet) ** n for n in range(min_len, max_len + 1))
    wanted = min(n_train + n_test, possible)
    if wanted < n_train + n_test:
        n_test = max(1, wanted // 10)
    rng = np.random.default_rng(seed)
    lengths = np.arange(min_len, max_len + 1)
    # Longer strings are more numerous; draw lengths in proportion to how many strings exist.
    weights = np.array([len(alphabet) ** int(n) for n in lengths], dtype=np.float64)
    weights = np.sqrt(weights) / np.sqrt(weights).sum()
    seen: dict[str, None] = {}
    for _ in range(50):  # batches of `wanted` draws, as many draws as before at most
        sizes = rng.choice(lengths, size=wanted, p=weights).tolist()
        letters = rng.integers(len(alphabet), size=(wanted, max_len)).tolist()
        drawn = ("".join(alphabet[i] for i in r[:n]) for n, r in zip(sizes, letters))
        seen.update(dict.fromkeys(drawn))
        if len(seen) >= wanted:
            break
    strings = list(seen)[:wanted]
    n_test = min(n_test, len(strings) // 2)
    splits = {"test": strings[:n_test], "train": strings[n_test : n_test + n_train]}
    transform = _TRANSFORMS[kind]
    rows = [
        {"prompt": s + separator, "reference": transform(s), "split": split}
        for split, ss in splits.items()
        for s in ss
    ]
    return Task(
        name=kind,
        prompts=_prompt_set(rows, kind),
        scorer=PositionAccuracy(),
        reward_range=(0.0, 1.0),
        description=f"{kind} a short string, one character per token (per-position accuracy)",
    )


def copy(**kwargs: Any) -> Task:
    """Copy a short string: ``"cabd="`` -> ``"cabd"``."""
    return algorithmic("copy", **kwargs)


def reverse(**kwargs: Any) -> Task:
    """Reverse a short string: ``"cabd="`` -> ``"dbac"``."""
    return algorithmic("reverse", **kwargs)


def sort(**kwargs: Any) -> Task:
    """Sort the characters of a short string: ``"cabd="`` -> ``"abcd"``."""
    return algorithmic("sort", **kwargs)


for _f in (copy, reverse, sort):  # the factories share algorithmic's documentation
    _f.__doc__ = (
        (_f.__doc__ or "")
        + "\n\n"
        + inspect.cleandoc(algorithmic.__doc__)
        .split("\n", 1)[1]
        .replace('* ``kind``: ``"copy"``, ``"reverse"`` or ``"sort"``.\n', "")
    )


# -- keywords ----------------------------------------------------------------------------------

KEYWORDS_TEMPLATE = "Write one sentence that uses all of these words: {concepts}.\nSentence:"


def keywords(
    coverage_weight: float = 0.8,
    fluency_weight: float = 0.2,
    fluency: str = "heuristic",
    fluency_model: Any = "smollm2-135m",
    template: str = KEYWORDS_TEMPLATE,
    data: Any = None,
) -> Task:
    """Write one sentence that uses the given concepts (CommonGen-like).

    ## Description

    217 hand-written sets of 3-4 common concepts (``dog, ball, park``), each with a reference
    sentence; 174 train / 43 test. The prompt lists the concepts; the episode ends at a newline,
    EOS or the token budget.

    ## Rewards

    ``coverage_weight * coverage + fluency_weight * fluency`` (default 0.8/0.2, in [0, 1]):

    * coverage: :class:`~textgym.rewards.ConceptCoverage`, the share of concepts used in any
      inflection (``chase`` matches chased/chasing, ``leaf`` matches leaves, ``run`` ran);
    * fluency ``"heuristic"`` (default): :class:`~textgym.rewards.Fluency` (no repeated
      bigrams, plain words, 3-40 words); ``"lm"``: :class:`~textgym.rewards.LMScore`'s mean
      token log-likelihood under ``fluency_model`` mapped to [0, 1] as ``clip((lp + 8) / 8)``;
      ``"none"``: coverage only (then weighted by ``coverage_weight``).

    ## Arguments

    * ``coverage_weight`` / ``fluency_weight``: the weights above.
    * ``fluency``: ``"heuristic"``, ``"lm"`` or ``"none"``; ``fluency_model`` for ``"lm"``.
    * ``template``: ``str.format`` template with ``{concepts}`` (comma-separated).
    * ``data``: rows with ``concepts`` (a list of words) and optional ``sentences``/``split``.

    The reference of each example is the tuple of concepts (the reference sentences are in
    ``Example.meta["sentences"]``).
    """
    terms: list[tuple[str, Any]] = [("coverage", (ConceptCoverage(), coverage_weight))]
    if fluency == "heuristic":
        terms.append(("fluency", (Fluency(), fluency_weight)))
    elif fluency == "lm":
        terms.append(("fluency", (_LMFluency(LMScore(fluency_model)), fluency_weight)))
    elif fluency != "none":
        raise ValueError(f"fluency must be 'heuristic', 'lm' or 'none', got {fluency!r}")
    rows = []
    for k, r in enumerate(load_rows(data, "keywords")):
        _need(r, ("concepts",), f"keywords data row {k}")
        concepts = [str(c) for c in r["concepts"]]
        row = {
            "prompt": template.format(concepts=", ".join(concepts)),
            "reference": concepts,
            "sentences": list(r.get("sentences", [])),
        }
        if "split" in r:
            row["split"] = r["split"]
        rows.append(row)
    return Task(
        name="keywords",
        prompts=_prompt_set(rows, "keywords"),
        scorer=WeightedSum(dict(terms)),
        reward_range=(0.0, coverage_weight + (fluency_weight if fluency != "none" else 0.0)),
        description="write one sentence using the given concepts (coverage + fluency)",
    )


class _LMFluency:
    """``clip((mean log-likelihood + 8) / 8, 0, 1)`` of an :class:`LMScore`."""

    reward_range = (0.0, 1.0)

    def __init__(self, lm_score: Any):
        self.lm_score = lm_score

    def __call__(self, prompts, completions, references=None):
        lp = self.lm_score(prompts, completions, references)
        return np.clip((lp + 8.0) / 8.0, 0.0, 1.0).astype(np.float32)


# -- translation -------------------------------------------------------------------------------

TRANSLATE_TEMPLATE = "Translate English to French.\nEnglish: {source}\nFrench:"


def translate(metric: str = "chrf", template: str = TRANSLATE_TEMPLATE, data: Any = None) -> Task:
    """Translate a short English sentence into French.

    ## Description

    232 hand-written English-French sentence pairs of everyday language (``"Where is the train
    station?"`` -> ``"Où est la gare ?"``), 186 train / 46 test. The episode ends at a
    newline, EOS or the token budget.

    ## Rewards

    Sentence-level sacrebleu score against the reference, divided by 100 (in [0, 1]):
    ``metric="chrf"`` (default; character n-grams, kind to short sentences and inflection) or
    ``"bleu"`` (with effective order). ``"ter"`` gives ``-TER / 100`` (0 is perfect).

    ## Arguments

    * ``metric``: ``"chrf"``, ``"bleu"`` or ``"ter"``.
    * ``template``: ``str.format`` template with ``{source}``.
    * ``data``: rows with ``source`` and ``target`` (a string or a list of references) and an
      optional ``split``; e.g. another language pair with a matching ``template``.
    """
    if metric == "chrf":
        scorer, reward_range = ChrF(scale=0.01), (0.0, 1.0)
    elif metric == "bleu":
        scorer, reward_range = BLEU(scale=0.01), (0.0, 1.0)
    elif metric == "ter":
        scorer, reward_range = WeightedSum([(TER(scale=0.01), -1.0)]), (-float("inf"), 0.0)
    else:
        raise ValueError(f"metric must be 'chrf', 'bleu' or 'ter', got {metric!r}")
    rows = []
    for k, r in enumerate(load_rows(data, "translate_en_fr")):
        _need(r, ("source", "target"), f"translate data row {k}")
        row = {
            "prompt": template.format(source=r["source"]),
            "reference": r["target"],
            "source": r["source"],
        }
        if "split" in r:
            row["split"] = r["split"]
        rows.append(row)
    return Task(
        name="translate",
        prompts=_prompt_set(rows, "translate"),
        scorer=scorer,
        reward_range=reward_range,
        description=f"translate short English sentences into French ({metric})",
    )


# -- summarization and QA (one set of hand-written passages) -----------------------------------

SUMMARIZE_TEMPLATE = "Summarize the passage in one sentence.\nPassage: {passage}\nSummary:"


def summarize(
    rouge: str | tuple[str, ...] = "rougeL",
    template: str = SUMMARIZE_TEMPLATE,
    data: Any = None,
) -> Task:
    """Summarize a short passage in one sentence.

    ## Description

    101 hand-written passages of three sentences (news, science, everyday stories), each
    with a one-sentence reference summary; 81 train / 20 test. The episode ends at a newline,
    EOS or the token budget.

    ## Rewards

    :class:`~textgym.rewards.Rouge` F-measure against the reference (with stemming), in
    [0, 1]: ROUGE-L by default; ``rouge="rouge1"``, ``"rouge2"`` or a tuple (their mean).

    ## Arguments

    * ``rouge``: the ROUGE variant(s).
    * ``template``: ``str.format`` template with ``{passage}``.
    * ``data``: rows with ``passage`` and ``summary`` (string or list) and optional ``split``.
    """
    rows = []
    for k, r in enumerate(load_rows(data, "passages")):
        _need(r, ("passage", "summary"), f"summarize data row {k}")
        row = {"prompt": template.format(passage=r["passage"]), "reference": r["summary"]}
        if "split" in r:
            row["split"] = r["split"]
        rows.append(row)
    return Task(
        name="summarize",
        prompts=_prompt_set(rows, "summarize"),
        scorer=Rouge(rouge),
        reward_range=(0.0, 1.0),
        description="summarize a short passage in one sentence (ROUGE)",
    )


QA_TEMPLATE = "{context}\nQuestion: {question}\nAnswer:"


def qa(metric: str = "f1", template: str = QA_TEMPLATE, data: Any = None) -> Task:
    """Answer a question about a short passage with a short span (SQuAD-like).

    ## Description

    202 hand-written questions, two on each of the 101 passages of the summarization task;
    each answer is a span of the passage. 162 train / 40 test, split by passage (test
    passages are never seen in training). The episode ends at a newline, EOS or the budget.

    ## Rewards

    SQuAD-normalised (lower case, no punctuation, no articles) ``metric="f1"`` (default,
    :class:`~textgym.rewards.TokenF1`) or ``"em"`` (:class:`~textgym.rewards.ExactMatch`),
    in [0, 1]; the best of several references counts.

    ## Arguments

    * ``metric``: ``"f1"`` or ``"em"``.
    * ``template``: ``str.format`` template with ``{context}`` and ``{question}``.
    * ``data``: rows with ``context``, ``question`` and ``answer`` (string or list), or the
      built-in passage rows (``passage`` + a ``qa`` list of question/answer dicts); optional
      ``split``.
    """
    if metric not in ("f1", "em"):
        raise ValueError(f"metric must be 'f1' or 'em', got {metric!r}")
    rows = []
    for k, r in enumerate(load_rows(data, "passages")):
        if "qa" in r and "passage" in r:
            items = [(r["passage"], q["question"], q["answer"]) for q in r["qa"]]
        else:
            _need(r, ("context", "question", "answer"), f"qa data row {k}")
            items = [(r["context"], r["question"], r["answer"])]
        for context, question, answer in items:
            row = {
                "prompt": template.format(context=context, question=question),
                "reference": answer,
            }
            if "split" in r:
                row["split"] = r["split"]
            rows.append(row)
    return Task(
        name="qa",
        prompts=_prompt_set(rows, "qa"),
        scorer=TokenF1() if metric == "f1" else ExactMatch(),
        reward_range=(0.0, 1.0),
        description=f"answer questions about a passage with a span ({metric})",
    )


TASKS: dict[str, Callable[..., Task]] = {
    "sentiment": sentiment,
    "arithmetic": arithmetic,
    "copy": copy,
    "reverse": reverse,
    "sort": sort,
    "keywords": keywords,
    "translate": translate,
    "summarize": summarize,
    "qa": qa,
    "reviews": sentiment,  # TextGen-v0's task: the same reviews, VADER reward
    **PROCEDURAL_TASKS,  # countdown, multistep_arithmetic, ..., reasoning_gym
}
"""Named tasks that environments accept as ``task="<name>"``: factories
``factory(**task_kwargs) -> Task``. Add your own to make it a name environments accept."""


def make_task(task: str | Task, **task_kwargs: Any) -> Task:
    """Return ``task`` itself, or build the named task with ``task_kwargs``.

    ``make_task("arithmetic", digits=3, operators="+-*")``; the keyword arguments of each task
    are documented in its factory (``help(textgym.TASKS["arithmetic"])``).
    """
    if isinstance(task, Task):
        if task_kwargs:
            raise InvalidArgumentError(
                f"task_kwargs {sorted(task_kwargs)} apply to named tasks only, not to a Task object"
            )
        return task
    if task not in TASKS:
        raise InvalidArgumentError(f"unknown task {task!r}; built-in tasks: {sorted(TASKS)}")
    factory = TASKS[task]
    try:
        inspect.signature(factory).bind(**task_kwargs)
    except TypeError as e:
        params = [p for p in inspect.signature(factory).parameters if p != "kwargs"]
        raise InvalidArgumentError(f"task {task!r}: {e}; its arguments are {params}") from None
    return factory(**task_kwargs)
