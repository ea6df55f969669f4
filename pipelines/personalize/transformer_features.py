"""What the transformer recipes and similar-items read besides item ids: event features and item fields.

Events. A user's events are collapsed where the same item has several events at the same
second (a click and a watch of one rating, as MovieLens in Personalize's layout has for every
watch): one event remains, carrying every event type it had as bits of a mask, so the model
reads "clicked and watched" without counting the item twice or predicting it from itself.
The time since the user's previous event is a bucket of its log2 seconds (0: no previous
event), so a burst of ratings in one sitting reads differently from a return a month later.

Item fields. ``ItemFeatures`` learns a vocabulary of tokens from ITEMS once and turns any rows
(the training catalog, or items arriving later through PutItems) into a sparse rows x tokens
matrix with the same columns, so a new item lands on the tokens the model trained. Each
field is one of three kinds, decided at fitting:

- categorical: each value is a token ``COLUMN=value``; a multi-valued cell (a list, or ``|``
  separated text) spreads a weight of 1 over its values, as ``metadata`` does;
- textual: a string column whose values are mostly three words or more (a description); each
  distinct word is a token ``COLUMN~word`` and the cell's words share a weight of 1, so a
  text is a bag of words. Words in more than half the rows say nothing and are left out;
- numeric: one token whose weight is the standardized value (``numeric="standardize"``, a
  direction a network can learn), or a token per decile (``numeric="bins"``, for similarity,
  where two items are alike when their values fall in the same decile).

Tokens met in fewer than ``MIN_COUNT`` rows are left out (a token of one row is that row's id
again), and the ``MAX_TOKENS`` most frequent are kept, as in ``metadata``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from pipelines.personalize.metadata import MAX_TOKENS, MIN_COUNT, NOT_FEATURES, _missing, _values

GAP_BUCKETS = 33  # 0 for "no previous event", then floor(log2(1 + seconds)) + 1 up to about 68 years
MAX_EVENT_TYPES = 63  # event types beyond the 63rd share the last bit
VALIDATION_CUTOFF = 25  # the validation slice is scored by NDCG@25: early stopping, the similar-items share
TEXT_MIN_WORDS = 3
TEXT_MAX_SHARE = 0.5
NUMERIC_BINS = 10
WORD = re.compile(r"\w+")


def event_type_bits(codes: np.ndarray) -> np.ndarray:
    """One bit per event type code (-1, no type: no bit)."""
    codes = np.asarray(codes, dtype=np.int64)
    return np.where(codes >= 0, np.left_shift(1, np.minimum(codes, MAX_EVENT_TYPES - 1)), 0).astype(np.int64)


def collapse_duplicates(
    users: np.ndarray, items: np.ndarray, times: np.ndarray, bits: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(kept positions, their event type masks)``: one event per user, item and second, masks OR-ed.

    The first event of each group stays, so the order of what remains is the input's.
    """
    if len(items) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    order = np.lexsort((items, times, users))  # stable: within a group, input order
    su, si, st = users[order], items[order], times[order]
    starts = np.flatnonzero(np.r_[True, (su[1:] != su[:-1]) | (si[1:] != si[:-1]) | (st[1:] != st[:-1])])
    masks = np.bitwise_or.reduceat(np.asarray(bits, dtype=np.int64)[order], starts)
    first = order[starts]
    chronological = np.argsort(first, kind="stable")
    return first[chronological], masks[chronological]


def gap_buckets(indptr: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Per event (users' histories laid flat by ``indptr``), the bucket of the log2 seconds since the previous one."""
    gaps = np.diff(np.asarray(times, dtype=np.float64), prepend=0.0)
    buckets = 1 + np.minimum(np.floor(np.log2(1 + np.maximum(gaps, 0))), GAP_BUCKETS - 2).astype(np.int64)
    lengths = np.diff(indptr)
    buckets[indptr[:-1][lengths > 0]] = 0
    return buckets


@dataclass
class ItemFeatures:
    """A fitted vocabulary of item-field tokens; ``matrix`` maps rows of fields onto it (see the module)."""

    kinds: dict[str, str]
    vocabulary: dict[str, int]
    numeric: dict[str, tuple[float, float]] = field(default_factory=dict)  # column: (mean, std)
    edges: dict[str, np.ndarray] = field(default_factory=dict)  # column: decile edges
    numeric_mode: str = "standardize"

    @classmethod
    def fit(cls, frame: pd.DataFrame | None, numeric: str = "standardize") -> ItemFeatures | None:
        """The vocabulary of ``frame``'s fields; None where no field gives a token."""
        if numeric not in ("standardize", "bins"):
            raise ValueError(f"numeric must be 'standardize' or 'bins', got {numeric!r}")
        if frame is None or len(frame) == 0:
            return None
        features = cls(kinds={}, vocabulary={}, numeric_mode=numeric)
        counts: Counter[str] = Counter()
        textual: set[str] = set()
        for name in frame.columns:
            column = frame[name]
            if name in NOT_FEATURES or column.isna().all():
                continue
            kind = _kind(column)
            if kind == "numeric":
                values = pd.to_numeric(column, errors="coerce").to_numpy(np.float64, na_value=np.nan)
                mean, spread = float(np.nanmean(values)), float(np.nanstd(values))
                if spread == 0:
                    continue
                features.numeric[name] = (mean, spread)
                features.edges[name] = np.unique(np.nanquantile(values, np.linspace(0, 1, NUMERIC_BINS + 1)[1:-1]))
            features.kinds[name] = kind
            bags = features._tokens(name, column)
            counts.update(token for bag in bags for token, _ in bag)
            if kind == "textual":
                textual.update(token for bag in bags for token, _ in bag)
        common = len(frame) * TEXT_MAX_SHARE
        kept = [
            token
            for token, count in counts.most_common(MAX_TOKENS)
            if count >= MIN_COUNT and not (token in textual and count > common)
        ]
        if not kept:
            return None
        features.vocabulary = {token: k for k, token in enumerate(sorted(kept))}
        return features

    @property
    def size(self) -> int:
        return len(self.vocabulary)

    def matrix(self, rows: pd.DataFrame | Sequence[Mapping[str, Any]]) -> sp.csr_matrix:
        """Rows x tokens weights of a frame (or of records: one mapping of field to value per row)."""
        frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
        coo_rows, coo_cols, weights = [], [], []
        for name in self.kinds:
            if name not in frame:
                continue
            for r, bag in enumerate(self._tokens(name, frame[name])):
                for token, weight in bag:
                    column = self.vocabulary.get(token)
                    if column is not None:
                        coo_rows.append(r)
                        coo_cols.append(column)
                        weights.append(weight)
        matrix = sp.csr_matrix(
            (np.asarray(weights, np.float32), (np.asarray(coo_rows, np.int64), np.asarray(coo_cols, np.int64))),
            shape=(len(frame), self.size),
        )
        matrix.sum_duplicates()
        return matrix

    def _tokens(self, name: str, column: pd.Series) -> list[list[tuple[str, float]]]:
        kind = self.kinds[name]
        if kind == "numeric":
            mean, spread = self.numeric[name]
            values = pd.to_numeric(column, errors="coerce").to_numpy(np.float64, na_value=np.nan)
            if self.numeric_mode == "bins":
                bins = np.searchsorted(self.edges[name], values, side="right")
                return [[] if np.isnan(v) else [(f"{name}#{b}", 1.0)] for v, b in zip(values, bins, strict=True)]
            return [[] if np.isnan(v) else [(name, (v - mean) / spread)] for v in values]
        if kind == "textual":
            bags = [sorted(set(WORD.findall(str(cell).lower()))) if not _missing(cell) else [] for cell in column]
            return [[(f"{name}~{word}", 1.0 / len(words)) for word in words] for words in bags]
        bags = [_values(cell) for cell in column.tolist()]
        return [[(f"{name}={value}", 1.0 / len(values)) for value in values] for values in bags]


def _kind(column: pd.Series) -> str:
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        return "numeric"
    present = [cell for cell in column.tolist() if isinstance(cell, str)]
    if present and float(np.median([len(WORD.findall(cell)) for cell in present])) >= TEXT_MIN_WORDS:
        return "textual"
    return "categorical"


def padded(matrix: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """A CSR matrix as ``[rows, m]`` column indexes and weights (weight 0 pads), m its longest row (at least 1)."""
    lengths = np.diff(matrix.indptr)
    width = max(1, int(lengths.max()) if len(lengths) else 1)
    index = np.zeros((matrix.shape[0], width), np.int64)
    weight = np.zeros((matrix.shape[0], width), np.float32)
    within = np.arange(matrix.nnz) - np.repeat(matrix.indptr[:-1], lengths)
    row_of = np.repeat(np.arange(matrix.shape[0]), lengths)
    index[row_of, within] = matrix.indices
    weight[row_of, within] = matrix.data
    return index, weight
