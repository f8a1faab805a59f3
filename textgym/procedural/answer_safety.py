"""reasoning-gym scorers that would run a model's answer as Python, and what keeps them from it.

Nine of reasoning-gym's datasets score an answer by evaluating it: four call ``eval()`` on it
(to read a Python list), five parse it with sympy's ``parse_expr``, which evals. An answer is
model-written text, so neither may run it in the training process:
:func:`make_evals_literal` gives the first four ``ast.literal_eval`` as their ``eval``, and
:func:`safe_expression` is the screen an answer must pass before the other five see it
(:class:`~textgym.procedural.reasoning_gym.ReasoningGymChecker` applies both).
"""

from __future__ import annotations

import ast
import io
import re
import sys
import tokenize
from typing import Any

# Datasets whose score_answer runs the model's answer as Python. These four call eval() on it
# (to read a Python list): their module's eval becomes ast.literal_eval, which reads literals
# only. These five parse it with sympy's parse_expr, which evals: an answer reaches them only if
# it is an arithmetic expression (numbers, + - * / and parentheses) or, for "symbolic", also
# one-letter symbols, a few function names and small powers (see safe_expression).
LITERAL_EVAL_DATASETS = ("binary_matrix", "n_queens", "spiral_matrix", "string_insertion")
EXPRESSION_DATASETS = {
    "countdown": "arithmetic",
    "puzzle24": "arithmetic",
    "simple_integration": "symbolic",
    "intermediate_integration": "symbolic",
    "polynomial_multiplication": "symbolic",
}
_FUNCTIONS = frozenset(
    ("sin", "cos", "tan", "cot", "sec", "csc", "asin", "acos", "atan", "sinh", "cosh", "tanh")
    + ("exp", "log", "ln", "sqrt", "pi", "oo", "Abs")
)


def _literal_eval(text: Any, *args: Any) -> Any:
    """What a reasoning-gym module's ``eval`` becomes: literals only, short answers only."""
    if not isinstance(text, str) or len(text) > 20_000:
        raise ValueError("not a short literal")
    return ast.literal_eval(text)


def make_evals_literal() -> None:
    """Give the modules of :data:`LITERAL_EVAL_DATASETS` a literal ``eval`` (a module global
    shadows the builtin), however their datasets are reached (a composite dataset too)."""
    from reasoning_gym.factory import DATASETS

    for dataset in LITERAL_EVAL_DATASETS:
        sys.modules[DATASETS[dataset][0].__module__].eval = _literal_eval


def safe_expression(answer: str, kind: str) -> bool:
    """Whether ``answer`` may reach sympy's ``parse_expr``: numbers (12 digits at most), ``+ -
    * /`` and parentheses; for ``kind="symbolic"`` also one-letter symbols, :data:`_FUNCTIONS`
    and powers whose exponent is a number up to 99, a symbol or a small fraction, with no tower
    (``9**9**9``) and no power of a group that holds one: no strings, attribute access, other
    names (``eval``, ``chr``, ``__import__``, keywords) or factorials, and no number of
    millions of digits to compute."""
    if len(answer) > 500:
        return False
    try:
        tokens = [
            t
            for t in tokenize.generate_tokens(io.StringIO(answer).readline)
            if t.type not in (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER)
        ]
    except (tokenize.TokenError, SyntaxError):
        return False
    operators = {"+", "-", "*", "/", "(", ")"} | ({"**"} if kind == "symbolic" else set())
    for token in tokens:
        if token.type == tokenize.NUMBER:
            if not all(c.isdigit() or c == "." for c in token.string) or len(token.string) > 12:
                return False
        elif token.type == tokenize.NAME:
            name = token.string
            if kind != "symbolic" or (len(name) > 1 and name not in _FUNCTIONS):
                return False
        elif token.type != tokenize.OP or token.string not in operators:
            return False
    compact = "".join(t.string for t in tokens)
    powers = [m.start() for m in re.finditer(r"\*\*", compact)]
    for start in powers:
        exponent = _EXPONENT.match(compact, start)
        if exponent is None or compact.startswith("**", exponent.end()):
            return False
        if compact[start - 1 : start] == ")":  # the power of a group: it may not hold one
            depth, i = 0, start - 1
            while i >= 0 and (depth := depth + {")": 1, "(": -1}.get(compact[i], 0)):
                i -= 1
            if "**" in compact[i:start]:
                return False
    return len(powers) <= 40


_EXPONENT = re.compile(r"\*\*(\d{1,2}(?![\d.])|[A-Za-z]|\(-?\d{1,2}(/\d{1,2})?\))")
