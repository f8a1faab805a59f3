"""Calculator: exact arithmetic on integers, decimals and fractions, parsed with ``ast``.

``<calc>2*(3+4)/5</calc>`` gives ``14/5 = 2.8``-style answers without floating-point error:
every number is a :class:`fractions.Fraction` (``0.1 + 0.2`` is exactly ``0.3``). The expression
is parsed with :func:`ast.parse` and only numbers, ``+ - * / // % **``, unary ``+``/``-`` and
parentheses are evaluated; nothing is passed to ``eval``. Limits keep every call fast: the
expression length, the size of every number (numerator and denominator, in decimal digits) and,
checked before computing, the size of a power's result, so ``9**9**9`` is refused at once.
"""

from __future__ import annotations

import ast
import math
import operator
import time
from decimal import Decimal, InvalidOperation, localcontext
from fractions import Fraction

from textgym.tools.base import ToolResult, check_limit, format_call

_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_BITS_PER_DIGIT = math.log2(10)
_SHOWN_DIGITS = 12  # significant digits of the decimal shown beside a non-terminating fraction


class CalculatorError(ValueError):
    """A bad expression; the message is what the agent sees."""


class Calculator:
    """The ``calc`` tool: ``Calculator()("2*(3+4)")`` is ``ToolResult(text="14", ok=True, ...)``.

    Args:
        max_length: the longest expression accepted, in characters.
        max_digits: the most decimal digits any number (a literal, an intermediate value or the
            result; numerator and denominator each) may have.
    """

    name = "calc"
    description = (
        "exact arithmetic on integers, decimals and fractions: + - * / // % ** and "
        f"parentheses, e.g. {format_call('calc', '2*(3+4)/5')}"
    )

    def __init__(self, max_length: int = 500, max_digits: int = 1000) -> None:
        self.max_length = check_limit("max_length", max_length)
        self.max_digits = check_limit("max_digits", max_digits)

    def __call__(self, call_text: str) -> ToolResult:
        start = time.perf_counter()
        try:
            value = self.evaluate(call_text)
        except CalculatorError as error:
            seconds = time.perf_counter() - start
            return ToolResult(f"Error: {error}", ok=False, error=str(error), seconds=seconds)
        return ToolResult(format_number(value), ok=True, seconds=time.perf_counter() - start)

    def evaluate(self, expression: str) -> Fraction:
        """The exact value of ``expression``; raises :class:`CalculatorError` on a bad one."""
        if not isinstance(expression, str):
            raise CalculatorError(f"the expression must be text, not {type(expression).__name__}")
        expression = expression.strip()
        if not expression:
            raise CalculatorError("empty expression")
        if len(expression) > self.max_length:
            raise CalculatorError(
                f"expression too long ({len(expression)} characters; limit {self.max_length})"
            )
        try:
            tree = ast.parse(expression, mode="eval")
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            hint = " (use ** for powers)" if "^" in expression else ""
            raise CalculatorError(f"not an arithmetic expression: {expression!r}{hint}") from None
        return self._evaluate(tree.body, expression)

    def _evaluate(self, node: ast.AST, source: str) -> Fraction:
        if isinstance(node, ast.Constant):
            return self._checked(self._literal(node, source))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](self._evaluate(node.operand, source))
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            base = self._evaluate(node.left, source)
            return self._checked(self._power(base, self._evaluate(node.right, source)))
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = self._evaluate(node.left, source), self._evaluate(node.right, source)
            try:
                return self._checked(_BINARY[type(node.op)](left, right))
            except ZeroDivisionError:
                raise CalculatorError("division by zero") from None
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitXor):
            raise CalculatorError("^ is not a power here: use ** (2**10)")
        what = ast.get_source_segment(source, node) or type(node).__name__
        raise CalculatorError(
            f"only numbers, + - * / // % ** and parentheses are allowed, not {what!r}"
        )

    def _literal(self, node: ast.Constant, source: str) -> Fraction:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise CalculatorError(f"not a number: {ast.get_source_segment(source, node)!r}")
        if isinstance(value, int):
            return Fraction(value)
        text = ast.get_source_segment(source, node) or repr(value)
        try:  # the literal as written, so 0.1 is exactly 1/10 (float(0.1) is not)
            decimal = Decimal(text)
        except InvalidOperation:
            raise CalculatorError(f"not a number: {text!r}") from None
        if abs(decimal.adjusted()) > self.max_digits:
            raise CalculatorError(f"number too large: {text!r} (limit {self.max_digits} digits)")
        return Fraction(decimal)

    def _power(self, base: Fraction, exponent: Fraction) -> Fraction:
        if exponent.denominator != 1:
            raise CalculatorError("only whole-number exponents are supported (exact arithmetic)")
        if base == 0 and exponent < 0:
            raise CalculatorError("division by zero")
        if abs(base) not in (0, 1):  # the result's size, estimated before computing it
            bits = max(base.numerator.bit_length(), base.denominator.bit_length())
            digits = abs(int(exponent)) * (bits - 1) / _BITS_PER_DIGIT
            if digits > self.max_digits:
                raise CalculatorError(f"result too large (more than {self.max_digits} digits)")
        return base ** int(exponent)

    def _checked(self, value: Fraction) -> Fraction:
        bits = max(value.numerator.bit_length(), value.denominator.bit_length())
        if bits > self.max_digits * _BITS_PER_DIGIT + 1:
            raise CalculatorError(f"number too large (more than {self.max_digits} digits)")
        return value


def format_number(value: Fraction) -> str:
    """``value`` as the calculator shows it: ``14``, ``-2.75``, or ``1/3 = 0.333333333333...``."""
    if value.denominator == 1:
        return str(value.numerator)
    denominator, twos, fives = value.denominator, 0, 0
    while denominator % 2 == 0:
        denominator, twos = denominator // 2, twos + 1
    while denominator % 5 == 0:
        denominator, fives = denominator // 5, fives + 1
    if denominator == 1:  # a terminating decimal: show it exactly
        places = max(twos, fives)
        scaled = abs(value.numerator) * 10**places // value.denominator
        digits = str(scaled).rjust(places + 1, "0")
        sign = "-" if value < 0 else ""
        return f"{sign}{digits[:-places]}.{digits[-places:]}"
    with localcontext() as context:
        context.prec = _SHOWN_DIGITS
        decimal = Decimal(value.numerator) / Decimal(value.denominator)
    return f"{value.numerator}/{value.denominator} = {decimal}..."
