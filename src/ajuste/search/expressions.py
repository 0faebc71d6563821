"""Safe expressions for search-space conditions and constraints: ``model.emb_dim % model.num_heads == 0``.

An expression is parsed once with :mod:`ast` and only a small, side-effect-free subset is accepted:
numbers, strings, booleans, ``None``, lists and tuples of them, setting names such as ``model.emb_dim``
or ``train.lr``, arithmetic, comparisons (``in`` included) and ``and``/``or``/``not``. Nothing is ever
passed to :func:`eval`.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Expression", "ExpressionError"]

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}
_SECTIONS = ("model", "train")


class ExpressionError(ValueError):
    """An expression that cannot be parsed, uses something not allowed, or cannot be evaluated."""


@dataclass(frozen=True)
class Expression:
    """A parsed condition or constraint; ``names`` are the settings it reads."""

    text: str
    tree: ast.Expression = field(repr=False, compare=False)
    names: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, text: str) -> Expression:
        if not isinstance(text, str) or not text.strip():
            raise ExpressionError(
                f'expected an expression such as "model.emb_dim % model.num_heads == 0", got {text!r}'
            )
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError as exc:
            raise ExpressionError(f"'{text}' is not a valid expression ({exc.msg})") from None
        names: set[str] = set()
        _check(tree.body, text, names)
        return cls(text.strip(), tree, frozenset(names))

    def evaluate(self, values: Mapping[str, Any]) -> Any:
        """The value of the expression with the settings in ``values``; a missing name is an error."""
        try:
            return _evaluate(self.tree.body, values)
        except KeyError as exc:
            raise ExpressionError(f"'{self.text}' reads {exc.args[0]}, which is not set") from None
        except (TypeError, ZeroDivisionError, ValueError, OverflowError) as exc:
            raise ExpressionError(f"'{self.text}' cannot be evaluated: {exc}") from None

    def holds(self, values: Mapping[str, Any]) -> bool:
        return bool(self.evaluate(values))

    def __str__(self) -> str:
        return self.text


def _setting_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in _SECTIONS:
        return f"{node.value.id}.{node.attr}"
    return None


def _check(node: ast.expr, text: str, names: set[str]) -> None:
    name = _setting_name(node)
    if name is not None:
        names.add(name)
        return
    if isinstance(node, ast.Constant) and (node.value is None or isinstance(node.value, (bool, int, float, str))):
        return
    children: list[ast.expr]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        children = [node.left, node.right]
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub, ast.UAdd)):
        children = [node.operand]
    elif isinstance(node, ast.BoolOp):
        children = list(node.values)
    elif isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
        children = [node.left, *node.comparators]
    elif isinstance(node, (ast.List, ast.Tuple)):
        children = list(node.elts)
    else:
        what = ast.unparse(node)
        raise ExpressionError(
            f"'{text}' uses '{what}', which is not allowed: use setting names (model.x, train.y), "
            "numbers, strings, arithmetic, comparisons, in, and, or, not"
        )
    for child in children:
        _check(child, text, names)


def _evaluate(node: ast.expr, values: Mapping[str, Any]) -> Any:
    name = _setting_name(node)
    if name is not None:
        return values[name]
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.BinOp):
        return _BINARY[type(node.op)](_evaluate(node.left, values), _evaluate(node.right, values))
    if isinstance(node, ast.UnaryOp):
        operand = _evaluate(node.operand, values)
        if isinstance(node.op, ast.Not):
            return not operand
        return -operand if isinstance(node.op, ast.USub) else +operand
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            return all(_evaluate(v, values) for v in node.values)
        return any(_evaluate(v, values) for v in node.values)
    if isinstance(node, ast.Compare):
        left = _evaluate(node.left, values)
        for op, right_node in zip(node.ops, node.comparators):
            right = _evaluate(right_node, values)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_evaluate(e, values) for e in node.elts]
    raise ExpressionError(f"cannot evaluate '{ast.unparse(node)}'")  # unreachable after _check
