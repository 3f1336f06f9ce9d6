"""Which parametrized cases run in the fast loop (`make test-fast`, README "Two commands").

A heavy parametrized test keeps its first case(s) in the fast loop, one per shape of code it
walks through, and runs the rest with the whole suite: the fast loop stays under five minutes
while every case still runs in CI (.ci/run runs them all).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pytest

__all__ = ["slow_after"]


def slow_after(values: Iterable[Any], keep: int = 1, ids: Sequence[str] | None = None) -> list[Any]:
    """`values` as pytest parameters, all but the first `keep` marked slow (a tuple value is
    one case of several arguments); `ids` names them, as parametrize's own."""
    cases = list(values)
    names = list(ids) if ids is not None else [None] * len(cases)
    params = []
    for position, (value, name) in enumerate(zip(cases, names, strict=True)):
        args = value if isinstance(value, tuple) else (value,)
        marks = () if position < keep else (pytest.mark.slow,)
        params.append(pytest.param(*args, id=name, marks=marks))
    return params
