"""Hyperparameter ranges that Optuna samples, shared by the forecasting and recommendation searches.

Importing this module costs nothing: Optuna is only named in annotations, and a trial is handed
in by the study that runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FloatRange:
    low: float
    high: float
    log: bool = False

    def suggest(self, trial: optuna.Trial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=self.log)


@dataclass(frozen=True)
class IntRange:
    low: int
    high: int
    log: bool = False

    def suggest(self, trial: optuna.Trial, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, log=self.log)


@dataclass(frozen=True)
class Choice:
    options: tuple

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        return trial.suggest_categorical(name, list(self.options))


def last_reported(trial: optuna.trial.FrozenTrial) -> float | None:
    """A pruned trial's score: the running mean it had reached when it was stopped."""
    steps = trial.intermediate_values
    return steps[max(steps)] if steps else None


class SearchSpaces(dict):
    """The ranges each candidate of a family declares, by the family's own spelling of its names.

    ``register("DeepAR+", {...})`` files a space under ``key("DeepAR+")``; a later call replaces it.
    """

    def __init__(self, key: Callable[[str], str]):
        super().__init__()
        self.key = key

    def register(self, name: str, space: Mapping[str, Any]) -> None:
        self[self.key(name)] = dict(space)

    def space(self, key: str, given: Mapping[str, Any] | None, hyperparameters: Iterable[str]) -> dict[str, Any]:
        """The space a search of ``key`` samples: ``given``, else the registered one (none: its defaults).

        Raises ValueError for a range over anything outside the candidate's ``hyperparameters``.
        """
        if given is None and key not in self:
            log.warning("%r declares no search space (register_search_space): evaluating its defaults", key)
        space = dict(self.get(key, {}) if given is None else given)
        unknown = sorted(set(space) - set(hyperparameters))
        if unknown:
            raise ValueError(f"{key!r} has no hyperparameters {unknown} to search")
        return space
