"""Rows to frozen dataclasses and back to column lists, both read off the dataclass fields.

A row type (``Meeting``, ``TempRecording``, ...) is the one place its columns are named:
``columns(cls)`` writes the SELECT/RETURNING list from ``dataclasses.fields(cls)`` and
``row_to(cls, row)`` fills the fields by the cursor's column names, so adding a field
(and its migration) is one edit, and a column cannot land in the wrong field the way a
positional mapper lets it. The conversions SQLite cannot store are derived from the
field types: an ``enum.Enum`` field is built from its stored value, a ``bool`` from
0/1, and ``Optional`` of either passes ``NULL`` through as ``None``.

The mapping is strict both ways: a column with no field, or a field with no column,
is a :class:`StoreError` naming it, never a silently dropped value or a default
standing in for data that was not read.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import sqlite3
import types
import typing
from typing import Any, Callable, ClassVar, Mapping, Optional, Protocol, TypeVar

from ..objects.errors import StoreError

__all__ = ["DataclassInstance", "columns", "row_to"]


class DataclassInstance(Protocol):
    """Any dataclass (what ``dataclasses.fields`` accepts); typeshed's own is not importable."""

    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]


R = TypeVar("R", bound=DataclassInstance)

#: How one stored value becomes a field's value; ``None`` means "as stored".
Converter = Optional[Callable[[Any], Any]]


def columns(
    cls: type[DataclassInstance], *, table: str | None = None, sources: Mapping[str, str] | None = None
) -> str:
    """The column list for ``cls``'s fields, in field order.

    ``table`` qualifies every column (``t.id AS id``) for a join; ``sources`` names a
    different table for some fields (a recording's ``guild_id`` comes from its
    meeting). A qualified column always carries ``AS``: SQLite leaves the result name
    of an expression without one unspecified, and ``row_to`` reads fields by name.
    """
    sources = sources or {}
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = set(sources) - set(names)
    if unknown:
        raise ValueError(f"{cls.__name__} has no field {', '.join(sorted(unknown))}.")
    out = []
    for name in names:
        source = sources.get(name, table)
        out.append(f"{source}.{name} AS {name}" if source else name)
    return ", ".join(out)


def row_to(cls: type[R], row: sqlite3.Row) -> R:
    """Build ``cls`` from one row whose column names are exactly its field names."""
    plan = _plan(cls, tuple(row.keys()))
    return cls(*[row[i] if convert is None else convert(row[i]) for i, convert in plan])


@functools.lru_cache(maxsize=None)
def _plan(cls: type[DataclassInstance], keys: tuple[str, ...]) -> tuple[tuple[int, Converter], ...]:
    """For each field in order: the row index to read and how to convert it (cached per query shape)."""
    fields = dataclasses.fields(cls)
    names = [f.name for f in fields]
    if not all(f.init for f in fields):
        raise TypeError(f"{cls.__name__} has a field its constructor does not take; it cannot be a row type.")
    if len(set(keys)) != len(keys):
        twice = sorted({k for k in keys if keys.count(k) > 1})
        raise StoreError(f"The database returned column `{twice[0]}` twice for one {cls.__name__}.")
    unknown = [k for k in keys if k not in names]
    if unknown:
        raise StoreError(f"The database returned column `{unknown[0]}`, which {cls.__name__} has no field for.")
    missing = [n for n in names if n not in keys]
    if missing:
        raise StoreError(f"The database returned no column for {cls.__name__}'s field `{missing[0]}`.")
    hints = typing.get_type_hints(cls)
    index = {k: i for i, k in enumerate(keys)}
    return tuple((index[f.name], _converter(hints[f.name])) for f in fields)


def _converter(hint: Any) -> Converter:
    """What a field of type ``hint`` needs beyond the stored value: enum or bool, maybe ``None``."""
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(rest) != len(typing.get_args(hint)) and len(rest) == 1:
            hint, optional = rest[0], True
    convert: Callable[[Any], Any]
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        convert = hint
    elif hint is bool:
        convert = bool
    else:
        return None
    if optional:
        inner = convert
        return lambda value: None if value is None else inner(value)
    return convert
