"""Forking: a copy of a simulator or environment that evolves identically (CompilerGym's ``fork``).

A look-ahead policy (the groupwise-regret portfolio's counterfactual rollouts, a tree search)
needs a copy of the state it can run forward without touching the original. A plain
``copy.deepcopy`` gives one, but copies every table the episode never changes (configs, cost
models, platforms, DAG templates) and every record it only appends to (finished requests,
engine logs), which for a long episode is most of the memory. Only the owner of those objects
knows which are which, so each owner says it in :meth:`Forkable.fork_memo`: the
``copy.deepcopy`` memo entries that make a copy share the immutable objects and copy the
append-only logs shallowly (a new list holding the same never-changing items). :meth:`fork`
then is ``copy.deepcopy(self, self.fork_memo())``.

A fork keeps every random generator's state (they are copied, not shared), so it makes the same
draws as the original: driven by the same actions, both evolve bit for bit alike, and stepping
one never changes the other. The memo can also be passed to a deep copy of a larger object that
holds the forkable one (the portfolio copies the env together with its experts in one go).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any, TypeVar

ForkableT = TypeVar("ForkableT", bound="Forkable")


class Forkable:
    """Mixin: :meth:`fork` from the owner's :meth:`fork_memo` (see the module docstring)."""

    def fork_memo(self) -> dict[int, Any]:
        """``copy.deepcopy`` memo entries of what a copy of this object may share: immutable
        objects mapped to themselves, append-only logs to shallow copies. Owners extend it."""
        return {}

    def fork(self: ForkableT) -> ForkableT:
        """An independent copy at the same state (same random-generator states) that evolves
        identically; it shares the objects :meth:`fork_memo` names."""
        return copy.deepcopy(self, self.fork_memo())


def shared(*objects: Any) -> dict[int, Any]:
    """Memo entries that make a copy share ``objects`` (immutable ones; None is skipped)."""
    return {id(obj): obj for obj in objects if obj is not None}


def shared_items(items: Iterable[Any]) -> dict[int, Any]:
    """Memo entries that make a copy share every item of ``items`` (items that never change
    again, e.g. finished requests), wherever the copied state refers to them."""
    return {id(item): item for item in items}


def shallow_list(items: list[Any]) -> dict[int, Any]:
    """Memo entries that give a copy its own ``list`` of the same items: for an append-only log
    whose items never change (appends to one copy do not show in the other)."""
    return {id(items): list(items)}
