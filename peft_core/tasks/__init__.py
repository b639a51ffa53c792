"""Task kinds: the registry of what a run predicts (see ``peft_core.tasks.base.TaskKind``).

``TASKS`` is the only list of task kinds: the app's task choice, the CLI's ``--task`` and the parametrized tests
read it. A spec's ``kind`` is a key of it.
"""
from __future__ import annotations

from ..errors import ConfigError
from .base import Int8Verdict, Objective, TaskKind
from .multi_label import MultiLabel
from .regression import Regression
from .single_label import SingleLabel
from .spec import KIND_NAMES, PROBLEM_TYPES, TaskSpec

TASKS: dict[str, TaskKind] = {k.name: k for k in (SingleLabel(), MultiLabel(), Regression())}
assert tuple(TASKS) == KIND_NAMES

__all__ = ["TASKS", "Int8Verdict", "Objective", "PROBLEM_TYPES", "TaskKind", "TaskSpec", "get_task",
           "report_from_dict"]


def get_task(kind: str | TaskSpec) -> TaskKind:
    """The registered kind for a name (``single_label``, ``multi-label``...) or a spec.

    Raises:
        ConfigError: unknown name (the message lists the kinds).
    """
    name = kind.kind if isinstance(kind, TaskSpec) else str(kind).strip().replace("-", "_")
    if name not in TASKS:
        raise ConfigError(f"unknown task {kind!r}; choose one of {', '.join(TASKS)}")
    return TASKS[name]


def report_from_dict(d: dict):
    """An evaluation report from its ``to_dict()`` (reports saved before task kinds are single-label)."""
    return get_task(d.get("task", "single_label")).report_from_dict(d)
