"""`value`: kdns's decorator for the small immutable records made on every answer.

`@value` is `@dataclass(frozen=True, slots=True)` to the type checker (PEP 681
`dataclass_transform(frozen_default=True)`: mypy refuses any assignment to a field, as
it does for a frozen dataclass) and, at run time, a slotted dataclass with the same
`__eq__`, `__hash__` and `__match_args__` that does not check assignments. A frozen
dataclass's `__init__` sets each field through `object.__setattr__`, about 1,250
instructions a field under CPython 3.11 against a plain store's few: a `Query` (12
fields) cost some 17,000 instructions to make, a tenth of a whole slow-path answer.
Immutability is kept where it is checked, by mypy over all of kdns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar, dataclass_transform

__all__ = ["value"]

_T = TypeVar("_T")


@dataclass_transform(frozen_default=True)
def value(cls: type[_T]) -> type[_T]:
    """The class as a slotted, hashable dataclass; frozen to the type checker."""
    return dataclass(slots=True, unsafe_hash=True)(cls)
