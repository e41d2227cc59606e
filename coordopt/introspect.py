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


def add_dataclass_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    *,
    suppress: bool = False,
    note: typing.Callable[[str], str] = lambda name: "",
) -> None:
    """One ``--flag`` per field of the dataclass ``cls``: help from its docstring and default
    (plus ``note(name)``), type from its ``check`` metadata (else a finite number or a
    non-negative integer), ``choices`` for a ``Literal``, ``--x/--no-x`` for a bool.
    ``suppress``: a flag not given is absent from the namespace (its default stays unset)."""
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        default = f.default
        text = f"{docs.get(f.name, '')} (default: {default!r}{note(f.name)})".replace("%", "%%")
        kwargs: dict[str, Any] = {
            "default": argparse.SUPPRESS if suppress else default,
            "help": text,
            "dest": f.name,
        }
        if hint is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(hint) is Literal:
            kwargs["choices"] = list(typing.get_args(hint))
        elif hint is str:
            kwargs["type"] = str
        else:
            kwargs["type"] = f.metadata.get("check", nonneg_int if hint is int else finite_float)
            kwargs["metavar"] = hint.__name__.upper()
        parser.add_argument(flag(f.name), **kwargs)


def from_flags(cls: type, args: argparse.Namespace) -> Any:
    """The dataclass ``cls`` from the flags :func:`add_dataclass_flags` added (absent ones
    keep their defaults)."""
    return cls(
        **{f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    )
