"""Config dataclasses as command-line flags: each field's docstring is its help, its
``check`` metadata (:func:`ranged`) its argparse type, a ``Literal`` its choices."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import itertools
import textwrap
import typing
from functools import cache
from typing import Any, Literal

from coordopt.guards import Range, finite_float, nonneg_int


def ranged(default: Any, rule: Range) -> Any:
    """A dataclass field with ``default`` whose values must lie in ``rule``."""
    return dataclasses.field(default=default, metadata={"check": rule})


@cache
def field_docs(cls: type) -> dict[str, str]:
    """``{field: docstring}`` from the string literal that follows each annotated field."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for node, nxt in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def flag(name: str) -> str:
    """``warm_start`` -> ``--warm-start``."""
    return "--" + name.replace("_", "-")


def check_fields(obj: Any) -> None:
    """Reject a dataclass whose field lies outside its :func:`ranged` rule (or another
    ``check`` with a ``problem(value)`` method, e.g. ``--warm-start``'s) or ``Literal``,
    naming the flag (``ValueError``)."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        rule = f.metadata.get("check")
        check = getattr(rule, "problem", None)
        problem = check(value) if callable(check) else None
        if problem:
            raise ValueError(f"{flag(f.name)} {problem}")
        choices = (
            typing.get_args(hints[f.name]) if typing.get_origin(hints[f.name]) is Literal else ()
        )
        if choices and value not in choices:
            raise ValueError(f"{flag(f.name)} must be one of {', '.join(choices)}, got {value!r}")


def add_dataclass_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    *,
    suppress: bool = False,
    note: typing.Callable[[str], str] = lambda name: "",
    only: typing.Collection[str] | None = None,
) -> None:
    """One ``--flag`` per field of the dataclass ``cls`` (or those named in ``only``): help
    from its docstring and default (plus ``note(name)``), type from its ``check`` metadata
    (else a finite number or a non-negative integer), ``choices`` for a ``Literal``,
    ``--x/--no-x`` for a bool. ``suppress``: a flag not given is absent from the namespace
    (its default stays unset)."""
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    defaults = cls()
    for f in dataclasses.fields(cls):
        if only is not None and f.name not in only:
            continue
        hint = hints[f.name]
        default = getattr(defaults, f.name)
        text = f"{docs.get(f.name, '')} (default: {default}{note(f.name)})".replace("%", "%%")
        kwargs: dict[str, Any] = {
            "default": argparse.SUPPRESS if suppress else default,
            "help": text,
            "dest": f.name,
        }
        if hint is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(hint) is Literal:
            kwargs["choices"] = list(typing.get_args(hint))
        else:
            fallback = {int: nonneg_int, float: finite_float}.get(hint, hint)
            kwargs["type"] = f.metadata.get("check", fallback)
            kwargs["metavar"] = getattr(kwargs["type"], "metavar", hint.__name__.upper())
        parser.add_argument(flag(f.name), **kwargs)


def from_flags(cls: type, args: argparse.Namespace) -> Any:
    """The dataclass ``cls`` from the flags :func:`add_dataclass_flags` added (absent ones
    keep their defaults)."""
    names = [f.name for f in dataclasses.fields(cls)]
    return cls(**{name: getattr(args, name) for name in names if hasattr(args, name)})
