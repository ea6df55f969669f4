"""implicit's ALS and BPR behind the recipe interface: ``(ImplicitALS, ImplicitBPR)`` classes.

The factor models train on the same user-item matrix our recipes see (events per pair:
ALS reads counts as confidence, BPR as implicit positives) with implicit's defaults, and
serve through the same ``recommend`` (history, exclusions, popularity fill) as every recipe.
Scores go through ``exp(score - best)``, which keeps their order and makes them positive,
because the base reads a score <= 0 as "no evidence".
"""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits

from pipelines.benchmarking.personalize import PEERS
from pipelines.personalize.base import EMPTY, Recipe


class ImplicitPeer(Recipe):
    def _model_class(self):
        raise NotImplementedError

    def _fit(self, data) -> None:
        model_class = self._model_class()  # imported first: threadpool_limits reaches only loaded libraries
        with threadpool_limits(1, "blas"):  # implicit's own threads; BLAS threads inside them oversubscribe
            model = model_class(**self.get_params())
            model.fit(data.user_item.astype(np.float32).tocsr(), show_progress=False)
        self.user_factors_ = np.ascontiguousarray(model.user_factors)
        self.item_factors_ = np.ascontiguousarray(model.item_factors)
        self.request_user_ = None

    def _history(self, user_id: str):
        self.request_user_ = self.user_index_.get(user_id)  # the base passes histories; factors are per user
        return super()._history(user_id)

    def _user_scores(self):
        u = self.request_user_
        if u is None or u >= len(self.user_factors_):
            return None
        return self.item_factors_ @ self.user_factors_[u]

    def _candidates(self, history, times, n):
        scores = self._user_scores()
        if scores is None:
            return EMPTY, EMPTY
        n = min(n, len(scores))
        top = np.argpartition(-scores, n - 1)[:n] if n < len(scores) else np.arange(len(scores))
        return top, np.exp(scores[top] - scores.max()).astype(np.float64)

    def _score_items(self, history, times, items):
        scores = self._user_scores()
        if scores is None:
            return np.zeros(len(items))
        return np.exp(scores[items] - scores.max()).astype(np.float64)

    def _grow(self, count: int) -> None:
        extra = np.zeros((count, self.item_factors_.shape[1]), dtype=self.item_factors_.dtype)
        self.item_factors_ = np.concatenate([self.item_factors_, extra])


class ImplicitALS(ImplicitPeer):
    def __init__(
        self,
        factors: int = 100,
        regularization: float = 0.01,
        alpha: float = 1.0,
        iterations: int = 15,
        random_state: int = 42,
    ):
        self.factors, self.regularization, self.alpha = factors, regularization, alpha
        self.iterations, self.random_state = iterations, random_state

    def _model_class(self):
        from implicit.cpu.als import AlternatingLeastSquares

        return AlternatingLeastSquares


class ImplicitBPR(ImplicitPeer):
    def __init__(
        self,
        factors: int = 100,
        learning_rate: float = 0.01,
        regularization: float = 0.01,
        iterations: int = 100,
        random_state: int = 42,
    ):
        self.factors, self.learning_rate, self.regularization = factors, learning_rate, regularization
        self.iterations, self.random_state = iterations, random_state

    def _model_class(self):
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        return BayesianPersonalizedRanking


# Named after the classes exist: a name in the class body would register the peers as recipes.
ImplicitALS.name, ImplicitBPR.name = PEERS
