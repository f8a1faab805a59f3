"""The environment ids textgym registers with Gymnasium, their defaults and their documentation.

``import textgym`` calls :func:`register_envs` (Gymnasium 1.x has no plugin entry points);
``gym.make("textgym:TextGen-v0")`` imports textgym by itself. Every default below can be
overridden in ``gym.make`` / ``gym.make_vec``, and ``task_kwargs={...}`` reaches the task factory,
merged into the id's own task arguments (``gym.make("RG-futoshiki-v0", task_kwargs={"n_train":
16})`` keeps the dataset). :func:`describe` is an id's full documentation (``textgym info ID``),
:func:`summary` its one line (``textgym list``); neither builds an environment.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import gymnasium as gym

from textgym.envs import (
    DialogueEnv,
    DialogueVectorEnv,
    TextGenEnv,
    TextGenVectorEnv,
    ToolUseEnv,
    ToolUseVectorEnv,
)
from textgym.partners import make_game
from textgym.procedural import PROCEDURAL_IDS, reasoning_gym_ids
from textgym.procedural.tool_tasks import TOOL_TASKS
from textgym.task_suite import TASKS

_TEXT_GEN = (TextGenEnv, TextGenVectorEnv)
_DIALOGUE = (DialogueEnv, DialogueVectorEnv)
_TOOLS = (ToolUseEnv, ToolUseVectorEnv)
_LINE = ("\n",)  # one-line answers end at a newline

# id -> (single environment class, vector environment class, default kwargs)
_REGISTRY: dict[str, tuple[type, type, dict]] = {
    "TextGen-v0": (*_TEXT_GEN, {}),
    # The task suite: one TextGenEnv each, with the task's defaults.
    "TextGen-Sentiment-v0": (
        *_TEXT_GEN,
        {"task": "sentiment", "max_new_tokens": 32, "max_prompt_tokens": 64},
    ),
    "TextGen-Arithmetic-v0": (
        *_TEXT_GEN,
        {"task": "arithmetic", "max_new_tokens": 8, "max_prompt_tokens": 32, "stop_strings": _LINE},
    ),
    "TextGen-Copy-v0": (
        *_TEXT_GEN,
        {"task": "copy", "tokenizer": "char", "max_new_tokens": 7, "max_prompt_tokens": 8},
    ),
    "TextGen-Reverse-v0": (
        *_TEXT_GEN,
        {"task": "reverse", "tokenizer": "char", "max_new_tokens": 7, "max_prompt_tokens": 8},
    ),
    "TextGen-Sort-v0": (
        *_TEXT_GEN,
        {"task": "sort", "tokenizer": "char", "max_new_tokens": 7, "max_prompt_tokens": 8},
    ),
    "TextGen-Keywords-v0": (
        *_TEXT_GEN,
        {"task": "keywords", "max_new_tokens": 32, "max_prompt_tokens": 48, "stop_strings": _LINE},
    ),
    "TextGen-Translate-v0": (
        *_TEXT_GEN,
        {"task": "translate", "max_new_tokens": 40, "max_prompt_tokens": 48, "stop_strings": _LINE},
    ),
    "TextGen-Summarize-v0": (
        *_TEXT_GEN,
        {"task": "summarize", "max_new_tokens": 48, "max_prompt_tokens": 96, "stop_strings": _LINE},
    ),
    "TextGen-QA-v0": (
        *_TEXT_GEN,
        {"task": "qa", "max_new_tokens": 16, "max_prompt_tokens": 96, "stop_strings": _LINE},
    ),
    # Multi-turn dialogue games with a simulated partner (textgym.envs.dialogue).
    "TextDialogue-GuessNumber-v0": (
        *_DIALOGUE,
        {"game": "guess_number", "tokenizer": "char", "max_turns": 8},
    ),
    "TextDialogue-TwentyQuestions-v0": (
        *_DIALOGUE,
        {
            "game": "twenty_questions",
            "tokenizer": "smollm2-135m",
            "max_turns": 20,
            "max_turn_tokens": 12,
        },
    ),
    # Tool use: the env runs the agent's calculator and Python calls (textgym.envs.tool_use).
    "TextTools-Arithmetic-v0": (
        *_TOOLS,
        {
            "task": "tool_arithmetic",
            "tokenizer": "smollm2-135m",
            "max_prompt_tokens": 84,
            "max_new_tokens": 128,
            "max_tool_calls": 4,
        },
    ),
    "TextTools-DataQuestion-v0": (
        *_TOOLS,
        {
            "task": "data_question",
            "tokenizer": "smollm2-135m",
            "max_prompt_tokens": 232,
            "max_new_tokens": 256,
            "max_tool_calls": 4,
        },
    ),
}

# Procedural reasoning tasks with easy/medium/hard levels (textgym.procedural), and with the
# `reasoning` extra one id per reasoning-gym dataset ("RG-<dataset>-v0").
_REGISTRY.update({env_id: (*_TEXT_GEN, kwargs) for env_id, kwargs in PROCEDURAL_IDS.items()})
_REGISTRY.update({env_id: (*_TEXT_GEN, kwargs) for env_id, kwargs in reasoning_gym_ids().items()})


def register_envs() -> None:
    """Register every id with Gymnasium; an id that is already registered is left as it is.

    An id with task arguments of its own (a difficulty, a reasoning-gym dataset) is made by
    :func:`make_registered`, which merges ``task_kwargs`` given to ``gym.make`` into them
    (Gymnasium would replace them); the others by their classes."""
    for env_id, (env_class, vector_class, kwargs) in _REGISTRY.items():
        if env_id in gym.registry:
            continue
        entry_point = f"{env_class.__module__}:{env_class.__name__}"
        vector_entry_point = f"{vector_class.__module__}:{vector_class.__name__}"
        if kwargs.get("task_kwargs"):  # named by string too, so that the spec saves as JSON
            entry_point = f"{__name__}:make_registered_env"
            vector_entry_point = f"{__name__}:make_registered_vector_env"
            kwargs = {**kwargs, "registered_id": env_id}
        gym.register(
            env_id,
            entry_point=entry_point,
            vector_entry_point=vector_entry_point,
            kwargs=kwargs,
            # Episodes end by themselves (EOS or max_new_tokens): no TimeLimit wrapper.
            disable_env_checker=False,
        )


def make_registered(env_id: str, vector: bool, **kwargs: Any) -> Any:
    """Build ``env_id``'s environment (``vector``: its vector twin) from ``gym.make`` kwargs,
    a ``task_kwargs`` dict merged into the id's own task arguments."""
    env_class, vector_class, defaults = _entry(env_id)
    given = kwargs.get("task_kwargs")
    if isinstance(given, dict):
        kwargs["task_kwargs"] = {**defaults.get("task_kwargs", {}), **given}
    return (vector_class if vector else env_class)(**kwargs)


def make_registered_env(registered_id: str, **kwargs: Any) -> Any:
    """The entry point of an id with task arguments of its own (:func:`make_registered`)."""
    return make_registered(registered_id, False, **kwargs)


def make_registered_vector_env(registered_id: str, **kwargs: Any) -> Any:
    """The vector entry point of an id with task arguments of its own."""
    return make_registered(registered_id, True, **kwargs)


make_registered_env.metadata = TextGenEnv.metadata  # where gym.make reads the render modes


FAMILIES = ("tasks", "procedural", "dialogue", "tools", "reasoning-gym")
"""The families of ids, in the order ``textgym list`` shows them: the task suite
(``TextGen-v0``, ``TextGen-Copy-v0``, ...), the procedural levels (``TextGen-Countdown-Easy-v0``,
...), the dialogue games, tool use, and the reasoning-gym datasets (``RG-*``)."""


def family(env_id: str) -> str:
    """The family of a registered id (one of :data:`FAMILIES`)."""
    env_class, _, kwargs = _entry(env_id)
    if env_class is DialogueEnv:
        return "dialogue"
    if env_class is ToolUseEnv:
        return "tools"
    if kwargs.get("task") == "reasoning_gym":
        return "reasoning-gym"
    return "procedural" if env_id in PROCEDURAL_IDS else "tasks"


def registered_ids(family_name: str | None = None) -> list[str]:
    """Every environment id textgym registers, grouped by family in the order of
    :data:`FAMILIES` (textgym's own ids first) and sorted within a family; ``family_name``:
    that family's only."""
    if family_name is not None and family_name not in FAMILIES:
        raise ValueError(f"unknown family {family_name!r}; families: {list(FAMILIES)}")
    ids = sorted(_REGISTRY, key=lambda i: (FAMILIES.index(family(i)), i))
    return [i for i in ids if family_name is None or family(i) == family_name]


# -- documentation -----------------------------------------------------------------------------


def describe(env_id: str) -> str:
    """The documentation of a registered id, Gymnasium style, as Markdown text.

    Joins the id's defaults, its task's documentation (the task factory's docstring:
    Description, Rewards, Arguments) and the environment's common sections (Action Space,
    Observation Space, Starting State, Episode End, Info, Arguments). This is what a
    ``textgym info ID`` command prints.
    """
    env_class, _, kwargs = _entry(env_id)
    if env_class is not TextGenEnv:  # e.g. the dialogue games: their class documents them
        summary_line, doc = _split_sections(env_class.__doc__)
        lines = [f"# {env_id}", "", summary_line, "", "## Defaults", ""]
        lines += [f"* ``{k}={v!r}``" for k, v in kwargs.items()]
        for name, text in doc.items():
            lines += ["", f"## {name}", "", text]
        return "\n".join(lines).rstrip() + "\n"
    task = kwargs.get("task", "reviews")
    factory = TASKS[task] if isinstance(task, str) else None
    task_summary, task_doc = _split_sections(factory.__doc__ if factory else "")
    env_summary, env_doc = _split_sections(TextGenEnv.__doc__)
    signature = inspect.signature(TextGenEnv.__init__).parameters
    defaults = {
        **{
            k: signature[k].default
            for k in ("task", "tokenizer", "max_new_tokens", "max_prompt_tokens", "stop_strings")
        },
        **kwargs,
    }
    dataset = kwargs.get("task_kwargs", {}).get("dataset") if task == "reasoning_gym" else None
    if dataset is not None:
        task_summary = summary(env_id)
    lines = [f"# {env_id}", "", task_summary or env_summary, ""]
    if dataset is not None:
        from textgym.procedural.reasoning_gym import describe_dataset

        lines += ["## Dataset", "", describe_dataset(dataset), ""]
    lines += ["## Defaults", ""]
    lines += [f"* ``{k}={v!r}``" for k, v in defaults.items()]
    lines += [""]
    for name in (
        "Description",
        "Action Space",
        "Observation Space",
        "Rewards",
        "Starting State",
        "Episode End",
        "Info",
    ):
        text = task_doc.get(name) if name in ("Description", "Rewards") else None
        text = text or env_doc.get(name)
        if name == "Description" and task_doc.get("Data"):
            text += "\n\n" + task_doc["Data"]
        if text:
            lines += [f"## {name}", "", text, ""]
    if "Arguments" in task_doc:
        lines += ["## Task arguments (``task_kwargs={...}``)", "", task_doc["Arguments"], ""]
    lines += ["## Environment arguments", "", env_doc.get("Arguments", ""), ""]
    return "\n".join(lines).rstrip() + "\n"


def summary(env_id: str) -> str:
    """One line about a registered id (its task's or game's summary), for ``textgym list``."""
    env_class, _, kwargs = _entry(env_id)
    if env_class is ToolUseEnv:
        doc = TOOL_TASKS[kwargs["task"]].__doc__
    elif env_class is not TextGenEnv:
        doc = type(make_game(kwargs["game"])).__doc__
    else:
        task = kwargs.get("task", "reviews")
        task_kwargs = kwargs.get("task_kwargs", {})
        if task == "reasoning_gym":
            return f"reasoning-gym's {task_kwargs['dataset']} dataset, scored by its score_answer"
        doc = TASKS[task].__doc__ if isinstance(task, str) else TextGenEnv.__doc__
    first = " ".join(_split_sections(doc)[0].split("\n\n")[0].split())  # the first paragraph
    level = kwargs.get("task_kwargs", {}).get("difficulty")
    return f"{first} ({level})" if level else first


def _entry(env_id: str) -> tuple[type, type, dict]:
    if env_id not in _REGISTRY:
        raise ValueError(f"unknown id {env_id!r}; registered: {sorted(_REGISTRY)}")
    return _REGISTRY[env_id]


def _split_sections(doc: str | None) -> tuple[str, dict[str, str]]:
    """A Gymnasium-style docstring as (its summary, {"## Section" title: text})."""
    pieces = re.split(r"^## +(.+)$", inspect.cleandoc(doc or ""), flags=re.MULTILINE)
    summary_text, rest = pieces[0].strip(), pieces[1:]
    return summary_text, {rest[i].strip(): rest[i + 1].strip() for i in range(0, len(rest), 2)}
