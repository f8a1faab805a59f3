"""TextTools: tool use as a Gymnasium environment, single and native vector.

The agent writes one token per step, as in TextGen. When its text completes a tool call
(``<calc>2*(3+4)</calc>``, ``<python>...</python>``: :mod:`textgym.tools`), the environment runs
the tool in that same step and appends the result, ``<result>14</result>`` and a newline, as
environment tokens (``agent_mask`` 0), and the agent goes on writing after it. Its line
``Answer: ...`` ends the episode, and the task's checker scores the answer. The classes extend
TextGen's machinery as the dialogue environments do: the core (tokenizer, prompt encoding,
scoring) extends :class:`TextGenCore`, the episode state :class:`Episodes`, and the
environments subclass :class:`TextGenEnv` / :class:`TextGenVectorEnv` (reset, autoreset, infos
and ``reset(options={"prompt": ...})`` come from there unchanged).

Over 600 lines because one concept needs them: the tool-use environment, its vector twin and
the core they share (running calls, appending results, worked demonstrations of the same
episodes).
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from textgym.envs.checks import MAX_TOKENS, check_int, check_render_mode
from textgym.envs.control_points import ControlPoints, tool_use_points
from textgym.envs.core import TextGenCore
from textgym.envs.episodes import Episodes, MaskedEpisodes
from textgym.envs.text_gen import TextGenEnv, TextGenVectorEnv
from textgym.errors import InvalidArgumentError
from textgym.procedural.base import ANSWER_MARKER
from textgym.procedural.tool_tasks import TOOL_TASKS
from textgym.retry import FaultCounts, RetryPolicy, call_with_retries, describe_failure
from textgym.tasks import Example, LazyExamples, PromptSet, Task
from textgym.tools import (
    TOOL_NAMES,
    Calculator,
    PythonSandbox,
    Tool,
    ToolCall,
    find_tool_call,
    format_call,
)

RESULT_OPEN, RESULT_CLOSE = "<result>", "</result>\n"
CUT_MARK = "..."  # ends a result cut to max_result_tokens, before RESULT_CLOSE
PROMPT_PLACEHOLDER = 4096  # the prompt budget while the longest prompt is being measured

# How the line before each prompt describes the built-in tools; other tools by their description.
TOOL_SYNTAX = {
    "calc": "<calc>expression</calc> does exact arithmetic",
    "python": "<python>code</python> runs Python and shows what it prints and its last value",
}

# An answer line: the marker, then (after any blank space or newlines) some text, then a newline.
ANSWER_LINE = re.compile(ANSWER_MARKER.pattern + r"\s*\S[^\n]*\n", re.IGNORECASE)


def tool_hint(tools: dict[str, Tool]) -> str:
    """The line the environment puts before every prompt: the call syntax of ``tools`` and the
    result format (empty without tools)."""
    if not tools:
        return ""
    syntax = [TOOL_SYNTAX.get(n, f"<{n}>...</{n}>: {t.description}") for n, t in tools.items()]
    result = f"{RESULT_OPEN}...{RESULT_CLOSE}"
    return f"You may call tools: {'; '.join(syntax)}. Each result comes back as {result}"


def answer_end(text: str, names: Sequence[str]) -> int | None:
    """Where the answer line of the agent's ``text`` ends (the index after its newline), or None.

    ``text`` is the agent's writing since the last tool result, so it holds no complete call;
    text after an opening tag (``<calc>``, ...) belongs to a call still being written, and an
    ``Answer:`` there (``print("Answer:", x)``) does not count.
    """
    opened = [i for i in (text.rfind(f"<{n}>") for n in names) if i >= 0]
    found = ANSWER_LINE.search(text, 0, min(opened, default=len(text)))
    return found.end() if found else None


def _make_tools(tools: Any, timeout: float) -> dict[str, Tool]:
    """``{name: tool}`` from built-in tool names (``"calc"``, ``"python"``) and Tool objects."""
    if isinstance(tools, (str, bytes)) or not isinstance(tools, Sequence):
        raise InvalidArgumentError(
            f"tools must be a list of tool names {list(TOOL_NAMES)} or Tool objects, got "
            f"{tools!r:.60}; pass e.g. tools=['calc']"
        )
    made: dict[str, Tool] = {}
    for tool in tools:
        if tool == "calc":
            tool = Calculator()
        elif tool == "python":
            tool = PythonSandbox(timeout=timeout, max_output_chars=1000)
        elif not isinstance(tool, Tool):
            raise InvalidArgumentError(
                f"tools: {tool!r:.60} is neither a built-in tool name {list(TOOL_NAMES)} nor a "
                f"Tool (name, description, tool(call_text) -> ToolResult)"
            )
        if not isinstance(tool.name, str) or not re.fullmatch(r"[a-z_][a-z0-9_]*", tool.name):
            raise InvalidArgumentError(
                f"tools: a tool name must be a lower-case word, got {tool.name!r:.60}"
            )
        if tool.name in made:
            raise InvalidArgumentError(f"tools: two tools are named {tool.name!r}")
        made[tool.name] = tool
    return made


def _tool_task(task: Any, task_kwargs: dict[str, Any] | None, hint: str) -> Task:
    """The task to play, every prompt preceded by ``hint``."""
    if task_kwargs is not None and not isinstance(task_kwargs, dict):
        raise InvalidArgumentError(
            f"task_kwargs must be a dict of the task's arguments, got {type(task_kwargs).__name__}"
        )
    if isinstance(task, str):
        if task not in TOOL_TASKS:
            raise InvalidArgumentError(
                f"task must be one of {sorted(TOOL_TASKS)} or a textgym.Task, got {task!r:.60}"
            )
        factory = TOOL_TASKS[task]
        try:
            inspect.signature(factory).bind(**(task_kwargs or {}))
        except TypeError as e:
            params = list(inspect.signature(factory).parameters)
            raise InvalidArgumentError(f"task {task!r}: {e}; its arguments are {params}") from None
        task = factory(**(task_kwargs or {}))
    elif not isinstance(task, Task):
        raise InvalidArgumentError(
            f"task must be one of {sorted(TOOL_TASKS)} or a textgym.Task, got {type(task).__name__}"
        )
    elif task_kwargs:
        raise InvalidArgumentError("task_kwargs apply to a named task only, not to a Task object")
    if not hint:
        return task
    splits = task.prompts.splits

    train, test = (
        LazyExamples(len(splits[split]), _Hinted(splits[split], hint))
        if isinstance(splits[split], LazyExamples)  # a generated task: hint each when made
        else [Example(hint + e.prompt, e.reference, e.meta) for e in splits[split]]
        for split in ("train", "test")
    )
    return dataclasses.replace(task, prompts=PromptSet(train, test, task.prompts.name))


class _Hinted:
    """Example ``k`` of a generated split with the hint before its prompt (a class, not a
    closure, so that the env pickles)."""

    def __init__(self, examples: Sequence[Example], hint: str):
        self.examples, self.hint = examples, hint

    def __call__(self, k: int) -> Example:
        e = self.examples[k]
        return Example(self.hint + e.prompt, e.reference, e.meta)


class _ToolCore(TextGenCore):
    """TextGen's core (tokenizer, prompt encoding, scoring) plus the tools and their limits."""

    def __init__(
        self,
        task: str | Task,
        task_kwargs: dict[str, Any] | None,
        tools: Any,
        tool_timeout: float,
        max_tool_calls: int,
        max_result_tokens: int,
        tokenizer: Any,
        max_new_tokens: int,
        max_prompt_tokens: int | None,
        stop_on_eos: bool,
        prompt_overflow: str,
        chat_template: bool,
        mask_special_tokens: bool,
        vocab_size: int | None,
        retry: RetryPolicy | dict[str, Any] | None,
        on_failure: str,
    ):
        ok = isinstance(tool_timeout, (int, float)) and not isinstance(tool_timeout, bool)
        if not ok or not 0 < tool_timeout <= 60:
            raise InvalidArgumentError(
                f"tool_timeout must be a number of seconds in (0, 60], got {tool_timeout!r:.60}"
            )
        self.max_tool_calls = check_int("max_tool_calls", max_tool_calls, 0, MAX_TOKENS, 4)
        max_result_tokens = check_int("max_result_tokens", max_result_tokens, 1, MAX_TOKENS, 32)
        if max_prompt_tokens is not None:
            check_int("max_prompt_tokens", max_prompt_tokens, 1, MAX_TOKENS, 96)
        self.tools = _make_tools(tools, float(tool_timeout))
        task = _tool_task(task, task_kwargs, tool_hint(self.tools))
        # The prompt budget may follow from the prompts, known once the tokenizer is: start with
        # a placeholder, set it below.
        super().__init__(
            task,
            None,
            None,
            tokenizer,
            max_new_tokens,
            max_prompt_tokens or PROMPT_PLACEHOLDER,
            "sparse",
            stop_on_eos,
            (),
            prompt_overflow,
            chat_template,
            mask_special_tokens,
            vocab_size,
            retry=retry,
            on_failure=on_failure,
        )
        if max_prompt_tokens is None:  # the longest prompt of either split
            texts = [e.prompt for split in ("train", "test") for e in self.prompts.splits[split]]
            chunks = range(0, len(texts), 256)  # a chunk's padded rows take 8 MB at most
            self.max_prompt_tokens = max(
                int(self.encode_prompts(texts[i : i + 256], "the task's prompts")[1].max())
                for i in chunks
            )

        # Tokens after which a call may be complete (a closing tag ends in ">") or an answer
        # line may end ("\n"): only then is the agent's text decoded and searched.
        tok = self.codec
        pieces = tok.batch_decode([[i] for i in range(len(tok))])
        special = [i for i in tok.all_special_ids if i < self.vocab_size]
        self.may_close_call = np.zeros(self.vocab_size, dtype=bool)
        self.may_close_call[: len(tok)] = [">" in p for p in pieces]
        self.may_end_answer = np.zeros(self.vocab_size, dtype=bool)
        self.may_end_answer[: len(tok)] = ["\n" in p for p in pieces]
        self.may_close_call[special] = self.may_end_answer[special] = False

        self.result_end = self.encode_text(CUT_MARK + RESULT_CLOSE)
        shortest = len(self.encode_text(RESULT_OPEN)) + len(self.result_end)
        if max_result_tokens < shortest:
            raise InvalidArgumentError(
                f"max_result_tokens={max_result_tokens} cannot hold a cut result "
                f"({RESULT_OPEN}{CUT_MARK}{RESULT_CLOSE!r} is {shortest} tokens)"
            )
        self.max_result_tokens = max_result_tokens

        self.observation_space = self.make_observation_space(self.max_new_tokens, agent_mask=True)

    def run(self, call: ToolCall, counts: FaultCounts) -> tuple[str, bool, str | None]:
        """Run ``call``: (the text shown between the result tags, whether the call failed, the
        episode's failure or None). Tools report bad input in their result; a tool that raises
        or runs past ``retry``'s timeout is retried per the policy, and if it still fails the
        agent sees the error (``on_failure="raise"``, as without a policy) or, with
        ``"end_episode"``, the episode ends as failed (the third value)."""
        what = f"the tool {call.name!r}"
        try:
            run = lambda: self.tools[call.name](call.argument)  # noqa: E731
            result = call_with_retries(run, self.retry, counts, what)
        except Exception as e:
            if self.on_failure == "end_episode":
                return "", True, describe_failure(e)
            return f"error: {type(e).__name__}: {e}", True, None
        if result.ok:
            return result.text, False, None
        return f"error: {result.error or result.text}", True, None

    def result_ids(self, text: str) -> list[int]:
        """``<result>text</result>`` and a newline, tokenized once; a result longer than
        ``max_result_tokens`` keeps its start and ends with ``...</result>``."""
        ids = self.encode_text(RESULT_OPEN + text + RESULT_CLOSE)
        if len(ids) > self.max_result_tokens:
            ids = ids[: self.max_result_tokens - len(self.result_end)] + self.result_end
        return ids

    def demonstration_arrays(self, examples: Sequence[Example]) -> dict[str, np.ndarray]:
        """Worked solutions of ``examples`` as episodes hold them: ``input_ids``,
        ``attention_mask`` and ``agent_mask``, ``(len(examples), T)`` int64, padded and cut to
        ``T``. Each runs the calls of ``example.meta["tool_calls"]`` (``(name, argument)``
        pairs) whose tool the environment has, up to ``max_tool_calls``: the agent's
        ``<name>argument</name>`` then the tool's result (agent_mask 0); then the agent's line
        ``Answer: <reference>`` (the first reference) and its newline, which ends an episode."""
        if isinstance(examples, (str, Example)) or not isinstance(examples, Sequence):
            raise InvalidArgumentError(
                f"examples must be a list of textgym.Example, got {type(examples).__name__}"
            )
        T, n = self.max_new_tokens, len(examples)
        input_ids = np.full((n, T), self.pad_id, dtype=np.int64)
        attention_mask, agent_mask = np.zeros((n, T), np.int64), np.zeros((n, T), np.int64)
        for k, example in enumerate(examples):
            if not isinstance(example, Example) or not example.reference:
                raise InvalidArgumentError(
                    f"examples[{k}] must be a textgym.Example with a reference, got "
                    f"{example!r:.60}: a demonstration ends with the reference's answer line"
                )
            calls = [c for c in example.meta.get("tool_calls", ()) if c[0] in self.tools]
            segments = []  # (token ids, written by the agent)
            for name, argument in calls[: self.max_tool_calls]:
                segments.append((self.encode_text(format_call(name, argument)), 1))
                result, _, failure = self.run(ToolCall(name, argument, (0, 0)), FaultCounts())
                result = result if failure is None else f"error: {failure}"
                segments.append((self.result_ids(result), 0))
            reference = example.reference
            reference = reference if isinstance(reference, str) else reference[0]
            segments.append((self.encode_text(f"Answer: {reference}\n"), 1))
            ids = [i for seq, _ in segments for i in seq][:T]
            who = [by_agent for seq, by_agent in segments for _ in seq][:T]
            input_ids[k, : len(ids)], agent_mask[k, : len(ids)] = ids, who
            attention_mask[k, : len(ids)] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask, "agent_mask": agent_mask}

    def completions(self, ep: Episodes, slots: np.ndarray) -> list[str]:
        """Everything after the prompt (the agent's text and the results), decoded; an
        episode that ended at its answer line is cut after that line's newline."""
        texts = self.decode(ep, slots)
        answered = [k for k, s in enumerate(slots.tolist()) if ep.answered[s]]
        if answered:
            tails = _agent_texts(self, ep, slots[answered])
            for k, tail in zip(answered, tails):
                extra = len(tail) - answer_end(tail, list(self.tools))
                texts[k] = texts[k][: len(texts[k]) - extra]
        return texts


def _agent_texts(core: _ToolCore, ep: _ToolEpisodes, slots: np.ndarray) -> list[str]:
    """What the agent of each slot wrote since the last tool result (or the prompt), decoded."""
    P = core.max_prompt_tokens
    rows = [
        ep.input_ids[s, P + ep.segment_start[s] : P + ep.num_generated[s]].tolist()
        for s in slots.tolist()
    ]
    return core.codec.batch_decode(rows, skip_special_tokens=True)


def _control_points(core: _ToolCore, ep: _ToolEpisodes, slots: np.ndarray) -> list[ControlPoints]:
    """The control points of ``slots`` (:func:`~textgym.envs.control_points.tool_use_points`)."""
    return tool_use_points(core, ep, slots, _agent_texts(core, ep, slots))


class _ToolEpisodes(MaskedEpisodes):
    """TextGen's episode arrays plus who wrote each token and the tool counters."""

    def __init__(self, core: _ToolCore, n: int):
        super().__init__(core, n)
        self.segment_start = np.zeros(n, dtype=np.int64)  # num_generated after the last result
        self.tool_calls = np.zeros(n, dtype=np.int64)  # calls written, refused ones included
        self.tool_errors = np.zeros(n, dtype=np.int64)  # calls answered with an error
        self.answered = np.zeros(n, dtype=bool)  # ended at its answer line

    _SLOT_ARRAYS = (
        *MaskedEpisodes._SLOT_ARRAYS,
        "segment_start",
        "tool_calls",
        "tool_errors",
        "answered",
    )

    def start(
        self, core: TextGenCore, slots: np.ndarray, rows: np.ndarray, examples: list[Any]
    ) -> None:
        super().start(core, slots, rows, examples)
        self.segment_start[slots] = 0
        self.tool_calls[slots] = 0
        self.tool_errors[slots] = 0
        self.answered[slots] = False

    def step(
        self, core: _ToolCore, slots: np.ndarray, tokens: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Append the agent's ``tokens``; run the calls they complete and append the results;
        score the episodes that end. If the scorer fails, everything is put back: the state is
        as before the call (a retry runs the tools again; they are deterministic)."""
        position = self.append(core, slots, tokens)
        self.agent_mask[slots, position] = 1
        gave_up = tokens == core.eos_id if core.eos_id is not None else np.zeros(len(slots), bool)
        snap = None
        try:
            calls, answered = self._read(core, slots, tokens, gave_up)
            called = np.flatnonzero([c is not None for c in calls])
            failed = np.zeros(len(slots), dtype=bool)
            if called.size:
                snap = self.snapshot(slots[called])
                calls = [calls[k] for k in called]
                failed[called] = self._answer_calls(core, slots[called], calls)
            return self._finish(core, slots, gave_up, answered, failed)
        except BaseException:
            if snap is not None:
                self.restore(snap)
            self.answered[slots] = False  # live before this step, so not answered
            self.agent_mask[slots, position] = 0
            self.unappend(core, slots, position)
            raise

    def _read(
        self, core: _ToolCore, slots: np.ndarray, tokens: np.ndarray, gave_up: np.ndarray
    ) -> tuple[list[ToolCall | None], np.ndarray]:
        """The call each slot's text completes with ``tokens`` (or None), and which slots wrote
        their answer line. A complete call comes first: its text is not searched for an answer."""
        calls: list[ToolCall | None] = [None] * len(slots)
        answered = np.zeros(len(slots), dtype=bool)
        may_end = core.may_close_call[tokens] | core.may_end_answer[tokens]
        maybe = np.flatnonzero(~gave_up & may_end)
        if maybe.size:
            names = list(core.tools)
            for k, text in zip(maybe.tolist(), _agent_texts(core, self, slots[maybe])):
                if core.may_close_call[tokens[k]]:
                    calls[k] = find_tool_call(text, names)
                if calls[k] is None and core.may_end_answer[tokens[k]]:
                    answered[k] = answer_end(text, names) is not None
        return calls, answered

    def _answer_calls(
        self, core: _ToolCore, slots: np.ndarray, calls: list[ToolCall]
    ) -> np.ndarray:
        """Run each slot's call (one after another: wall-time limits stay fair) and append its
        result, cut to the budget left; past ``max_tool_calls`` the call is refused. Returns
        which slots ended as failed (a tool that still failed, ``on_failure="end_episode"``)."""
        P = core.max_prompt_tokens
        failed = np.zeros(len(slots), dtype=bool)
        for k, (s, call) in enumerate(zip(slots.tolist(), calls)):
            self.tool_calls[s] += 1
            if self.tool_calls[s] <= core.max_tool_calls:
                text, error, failure = core.run(call, self.fault_counts)
            else:
                text, error, failure = (
                    f"error: no tool calls left ({core.max_tool_calls} per episode)",
                    True,
                    None,
                )
            self.tool_errors[s] += error
            if failure is not None:
                self.end_failed(s, core.decode(self, np.array([s]))[0], failure)
                failed[k] = True
                continue
            end = P + self.num_generated[s]
            ids = core.result_ids(text)[: core.max_new_tokens - self.num_generated[s]]
            self.input_ids[s, end : end + len(ids)] = ids
            self.attention_mask[s, end : end + len(ids)] = 1
            self.num_generated[s] += len(ids)
            self.segment_start[s] = self.num_generated[s]
        return failed

    def _finish(
        self,
        core: _ToolCore,
        slots: np.ndarray,
        gave_up: np.ndarray,
        answered: np.ndarray,
        failed: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """End the episodes that gave up, answered, ran out of tokens or failed, and score
        them: (rewards, terminated, truncated). An episode whose scoring still fails ends as
        failed (``on_failure="end_episode"``): truncated, reward 0.0 (a placeholder)."""
        terminated = (gave_up | answered) & ~failed
        truncated = ~terminated & (failed | (self.num_generated[slots] >= core.max_new_tokens))
        rewards = np.zeros(len(slots), dtype=np.float64)
        scored = np.flatnonzero((terminated | truncated) & ~failed)
        if scored.size:
            finished = slots[scored]
            self.answered[slots[answered]] = True
            texts, scores, outcomes, failures = core.score(self, finished)  # may raise
            for k, (i, s) in enumerate(zip(scored.tolist(), finished.tolist())):
                if failures[k] is not None:
                    self.end_failed(s, texts[k], failures[k])
                    terminated[i], truncated[i] = False, True
                    continue
                rewards[i] = self.score[s] = scores[k]
                self.completion[s] = texts[k]
                if outcomes is not None:
                    self.outcome[s] = outcomes[k]
        return rewards, terminated, truncated

    def final_info(self, slots: np.ndarray) -> dict[str, list[Any]]:
        return {
            **super().final_info(slots),
            "tool_calls": self.tool_calls[slots].tolist(),
            "tool_errors": self.tool_errors[slots].tolist(),
        }


class ToolUseEnv(TextGenEnv):
    """Solve a problem with tools: the agent writes calls, the environment runs them and shows
    the results, until the agent writes its answer.

    ## Description

    Each episode is one problem from the task's prompt set, preceded by one line about the
    tools, for example (``TextTools-Arithmetic-v0``)::

        You may call tools: <calc>expression</calc> does exact arithmetic; <python>code</python>
        runs Python and shows what it prints and its last value. Each result comes back as
        <result>...</result>
        What is 48213 * 7719?
        End with a line "Answer: N" where N is the exact number.

    The agent writes one token per step. When its text completes a call, the environment runs
    the tool in that same step and appends the result as environment tokens, then the agent
    goes on writing::

        <calc>48213 * 7719</calc><result>372156147</result>
        Answer: 372156147

    * ``<calc>expression</calc>``: exact arithmetic (:class:`~textgym.tools.Calculator`:
      ``+ - * / // % **`` and parentheses on integers, decimals and fractions).
    * ``<python>code</python>``: Python 3 in a sandboxed subprocess
      (:class:`~textgym.tools.PythonSandbox`: standard library, no network, files only in a
      scratch folder, ``tool_timeout`` seconds of wall time, 256 MB); the result is what the
      code prints, then the value of a last expression, as in a REPL.

    A call is complete when its closing tag is written (``find_tool_call``: the first closing
    tag, with the nearest opening tag of the same name before it). A result is
    ``<result>text</result>`` and a newline, tokenized once; a failed call shows
    ``<result>error: reason</result>`` (``error: division by zero``, ``error: timed out after
    2 s``, ``error: ZeroDivisionError: division by zero``, ``error: blocked: network access``)
    and the episode goes on. Results longer than ``max_result_tokens`` keep their start and end
    with ``...</result>``. Tools are deterministic, and so is what the sandbox shows for a
    deterministic program; a program whose output is not (the order of a set of strings, the
    scratch folder's name, object addresses, timing) gives results that differ between runs.

    * ``TextTools-Arithmetic-v0``: multiply numbers of 4 to 6 digits
      (:func:`~textgym.procedural.tool_tasks.tool_arithmetic`).
    * ``TextTools-DataQuestion-v0``: a question about a table of daily figures per city: the
      highest average, a total, a rounded mean, a spread, a count, a ranking
      (:func:`~textgym.procedural.tool_tasks.data_question`).

    ## Action Space

    ``Discrete(V)``: the id of the agent's next token, as in :class:`TextGenEnv` (same checks,
    same ``action_masks()``: special tokens other than EOS are masked).

    ## Observation Space

    A ``Dict`` of fixed-shape ``int64`` arrays, ``L = P + T`` with ``P = max_prompt_tokens``
    and ``T = max_new_tokens``:

    | key              | shape | content                                                        |
    |------------------|-------|----------------------------------------------------------------|
    | ``input_ids``      | (L,)  | the prompt left-padded in ``[0, P)``; from ``P`` on, the agent's text and the tool results in order, then padding |
    | ``attention_mask`` | (L,)  | 1 for real tokens, 0 for padding                              |
    | ``num_generated``  | (1,)  | tokens after ``P`` so far, the agent's and the results'        |
    | ``agent_mask``     | (L,)  | 1 where the agent wrote the token (its actions), else 0 (the prompt, the results) |

    The step that completes a call adds the agent's token and the whole result, so
    ``num_generated`` can jump by more than one. The agent's action at a step always lands at
    index ``P + num_generated`` of the observation it acted on.

    ## Rewards

    Sparse: 0 until the last step, then the task checker's score of the episode's text (the
    agent's text and the results after the prompt, cut after the answer line): 1 for a correct
    answer, 0 for a wrong one or none. The answer is the text after the last ``Answer:``, as in
    the procedural tasks (:mod:`textgym.procedural.base`).

    ## Starting State

    A prompt drawn uniformly at random (with the environment's seeded RNG) from the current
    split, the tool line before it, left-padded to ``P``. ``reset(options=...)`` accepts
    ``{"split": "train" | "test"}`` and ``{"prompt": str | Example}`` (this episode only, used
    as given: no tool line is added).

    ## Episode End

    * Termination: the agent writes its answer line, ``Answer:`` (any case) followed by some
      text and a newline, outside a call (an ``Answer:`` inside ``<python>...`` is code); or it
      emits EOS.
    * Truncation: ``T`` tokens (the agent's and the results') were written.

    Each episode may run ``max_tool_calls`` calls; a call past that is not run and shows
    ``<result>error: no tool calls left (4 per episode)</result>``. Stepping after the end
    raises ``gymnasium.error.ResetNeeded``.

    ## Info

    ``reset`` returns ``prompt`` (with the tool line), ``prompt_index`` and ``split``. The last
    step returns ``prompt``, ``completion`` (the text after the prompt, results included, cut
    after the answer line), ``score``, ``outcome`` (``correct``, ``wrong``, ``format_error``:
    the checker's label; ``partial`` for a task whose checker gives partial credit),
    ``num_tokens``, ``tool_calls`` (complete calls the agent wrote, refused ones included) and
    ``tool_errors`` (calls answered with an error); other steps return an empty dict.

    ## Demonstrations

    ``encode_demonstrations(examples)`` gives worked solutions in the episode layout, for
    supervised warm starts: the example's calls (``meta["tool_calls"]``; the arithmetic task
    has one ``calc`` call per example), each result as the environment appends it
    (``agent_mask`` 0), then ``Answer: <reference>`` and a newline. Stepping the agent's tokens
    of one through the environment plays the same episode.

    ## Arguments

    * ``task``: ``"tool_arithmetic"``, ``"data_question"`` (see
      :data:`~textgym.procedural.tool_tasks.TOOL_TASKS`) or a :class:`~textgym.tasks.Task`
      whose prompts say how to answer.
    * ``task_kwargs``: arguments of the named task, e.g. ``{"difficulty": "hard"}``.
    * ``tools``: tool names (``"calc"``, ``"python"``) or :class:`~textgym.tools.Tool` objects
      (default both built-in tools); ``()`` plays the task without tools (no tool line).
    * ``tool_timeout``: wall-clock seconds of one ``python`` call (2.0).
    * ``max_tool_calls``: calls run per episode (4).
    * ``max_result_tokens``: tokens of one result, tags included (32).
    * ``tokenizer``: a name for :func:`textgym.models.load_tokenizer` or a tokenizer
      (``"smollm2-135m"``; ``"char"`` for tiny models).
    * ``max_new_tokens``: ``T``, the budget of the agent's text and the results (128).
    * ``max_prompt_tokens``: ``P`` (default: the longest prompt of the task's splits).
    * ``stop_on_eos``, ``prompt_overflow``, ``split``, ``chat_template``,
      ``mask_special_tokens``, ``vocab_size``, ``render_mode``: as in :class:`TextGenEnv`.
    * ``retry``, ``on_failure``: a tool call that raises or runs past ``retry``'s ``timeout``
      (a Python call over ``tool_timeout`` is not a failure: the sandbox reports it) and the
      checker are retried per the :class:`~textgym.retry.RetryPolicy` (default: no retry). A
      tool that still fails shows ``error: <error class>: <message>`` to the agent
      (``on_failure="raise"``, as without a policy); a checker that still fails raises
      :class:`~textgym.errors.ScorerError`. With ``on_failure="end_episode"`` either ends the
      episode as failed, as in :class:`TextGenEnv` ("Failing calls").

    ``set_task`` is not supported: make a new environment for another task.

    ## Control points

    ``control_points()`` (see :class:`TextGenEnv`): EOS ends the episode; a tool's closing tag
    (``act_strings``) may complete a call, which the same step runs and answers; a newline may
    end the answer line and the episode; ``max_tokens`` is what is left of ``max_new_tokens``.

    ## Vectorized environment

    ``gym.make_vec(id, num_envs=N)`` returns :class:`ToolUseVectorEnv`: the per-token path is
    numpy over all slots; the agent's text is decoded only after tokens that may end a call
    (``>``) or an answer line (newline), and the calls of a step run one after another. Same
    arguments plus ``autoreset_mode`` and ``copy``; slot ``i`` of ``reset(seed=s)`` equals a
    single environment seeded ``s + i``.
    """

    _control_rule = staticmethod(_control_points)

    def __init__(
        self,
        task: str | Task = "tool_arithmetic",
        task_kwargs: dict[str, Any] | None = None,
        tools: Sequence[str | Tool] = TOOL_NAMES,
        tool_timeout: float = 2.0,
        max_tool_calls: int = 4,
        max_result_tokens: int = 32,
        tokenizer: Any = "smollm2-135m",
        max_new_tokens: int = 128,
        max_prompt_tokens: int | None = None,
        stop_on_eos: bool = True,
        prompt_overflow: str = "truncate",
        split: str = "train",
        chat_template: bool = False,
        mask_special_tokens: bool = True,
        vocab_size: int | None = None,
        render_mode: str | None = None,
        retry: RetryPolicy | dict[str, Any] | None = None,
        on_failure: str = "raise",
    ):
        render_mode = check_render_mode(type(self), render_mode)
        self.core = _ToolCore(
            task,
            task_kwargs,
            tools,
            tool_timeout,
            max_tool_calls,
            max_result_tokens,
            tokenizer,
            max_new_tokens,
            max_prompt_tokens,
            stop_on_eos,
            prompt_overflow,
            chat_template,
            mask_special_tokens,
            vocab_size,
            retry,
            on_failure,
        )
        self.observation_space = self.core.observation_space
        self.action_space = self.core.action_space
        self.render_mode = render_mode
        self.split = self.core.check_split(split)  # an unknown split fails now
        self._episode = _ToolEpisodes(self.core, 1)
        self._slot = np.zeros(1, dtype=np.int64)
        self._needs_reset = True

    def encode_demonstrations(self, examples: Sequence[Example]) -> dict[str, np.ndarray]:
        """Worked solutions of ``examples`` (see "Demonstrations") in the layout of
        :meth:`encode_completions`, plus who wrote each token: ``{"input_ids",
        "attention_mask", "agent_mask"}``, ``(N, T)``. With :meth:`encode_prompts`, supervised
        data whose loss skips the results."""
        return self.core.demonstration_arrays(examples)


class ToolUseVectorEnv(TextGenVectorEnv):
    """``num_envs`` tool-use episodes stepped together (see :class:`ToolUseEnv`, "Vectorized
    environment"). Takes the arguments of :class:`ToolUseEnv` plus ``num_envs``,
    ``autoreset_mode`` and ``copy``; options and infos as in :class:`TextGenVectorEnv`."""

    _env_class = ToolUseEnv

    def encode_demonstrations(self, examples: Sequence[Example]) -> dict[str, np.ndarray]:
        """See :meth:`ToolUseEnv.encode_demonstrations`."""
        return self.core.demonstration_arrays(examples)


__all__ = ["ToolUseEnv", "ToolUseVectorEnv", "answer_end", "tool_hint"]
