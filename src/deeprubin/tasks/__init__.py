"""Task packages, and the task interface the generic stages call.

A task is a package ``deeprubin.tasks.<name>`` with a ``steps`` subpackage: one module per
step of the generic stages (``steps/ingest.py`` ... ``steps/predict.py``, :data:`STEPS`), each defining a
function of the step's name that reads the task's view of the config and writes under the
task's paths, and ``steps/__init__.py`` naming the sweep objective (``OBJECTIVE``, a key of the
``train`` summary). One module per step keeps a stage's code dependencies to its own step.
``docs/extending.md`` ("Add a task") shows the steps.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

#: The steps a task implements, one module each: the DVC stages ``ingest`` ... ``evaluate`` run
#: them per task (``foreach``); ``predict`` is the entry point that applies a trained model to
#: any source (:mod:`deeprubin.stages.predict`).
STEPS = ("ingest", "preprocess", "train", "calibrate", "evaluate", "predict")


class TaskError(ValueError):
    """A task whose package or steps cannot serve the generic stages; the message names it."""


@dataclass(frozen=True)
class Task:
    """A task as the generic stages see it: its name, its sweep objective and its steps."""

    name: str
    objective: str

    @property
    def package(self) -> str:
        return f"{__name__}.{self.name}.steps"

    def step(self, step: str) -> Callable[[Any], dict]:
        """The task's ``step`` function (``deeprubin.tasks.<name>.steps.<step>.<step>``)."""
        if step not in STEPS:
            raise TaskError(f"'{step}' is not a step of the generic stages {list(STEPS)}")
        module = _import(f"{self.package}.{step}", self.name)
        function = getattr(module, step, None)
        if not callable(function):
            raise TaskError(f"task '{self.name}': {self.package}.{step} defines no function {step}(cfg)")
        return function


def _import(module_name: str, task: str):
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        wanted = module_name.split(".")
        if err.name not in {".".join(wanted[:i]) for i in range(3, len(wanted) + 1)}:
            raise  # a missing library inside the task's code, not a missing task module
        raise TaskError(f"task '{task}': no module {module_name} (a task's package implements its steps "
                        "of the generic stages there; see docs/extending.md)") from None


def load_task(name: str) -> Task:
    """The task ``name`` (the ``task_name`` of a generic stage), checked to name its sweep objective."""
    if not str(name).isidentifier():
        raise TaskError(f"config key 'task_name' = {name!r} is not a task package name")
    steps = _import(f"{__name__}.{name}.steps", str(name))
    objective = getattr(steps, "OBJECTIVE", None)
    if not isinstance(objective, str):
        raise TaskError(f"task '{name}': {steps.__name__} does not set OBJECTIVE (the train summary's key "
                        "a sweep optimises)")
    return Task(str(name), objective)
