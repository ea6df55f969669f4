"""Personalized-Ranking: a user's HRNN scores for a given list of items (aws-personalized-ranking).

The caller brings the candidates (up to 500: a search result page, a curated shelf) and the
recipe orders them for the user; items unknown to the model go last in their input order, as
the base's ``rank`` does for every recipe. Scores are the softmax over the list only, as
Personalize's ranking scores are, so they sum to one over the known items and cost one dot
product per listed item, not a pass over the catalog. Metadata is read where the dataset
group has it, as Personalize's ranking recipe does.
"""

from __future__ import annotations

import numpy as np

from pipelines.personalize.hrnn_metadata import HrnnMetadata


class ListRanking:
    """Personalized-Ranking's scores, mixed in before a recipe: the softmax of its ``_logits`` over the list."""

    recipe_type = "PERSONALIZED_RANKING"

    def _score_items(self, history: np.ndarray, times: np.ndarray, items: np.ndarray) -> np.ndarray:
        state = self._serving_state(history, times)
        if state is None:
            return np.zeros(len(items))
        return softmax(self._logits(state, items))


class PersonalizedRanking(ListRanking, HrnnMetadata):
    name = "personalized-ranking"

    def _logits(self, state, items: np.ndarray) -> np.ndarray:
        return self.output_[items] @ state.session + self.output_bias_[items]


def softmax(logits: np.ndarray) -> np.ndarray:
    scores = np.exp(logits.astype(np.float64) - logits.max())
    return scores / scores.sum()
