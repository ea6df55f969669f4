"""Item and user metadata as bags of tokens: the form in which the HRNN recipes read it.

Columns differ in kind (a genre, a list of tags, a price), recipes want one vector per row.
Each categorical value becomes a token ``COLUMN=value``. A multi-valued field (a list, as the
import writes categorical fields, or text with ``|`` as in a raw CSV) spreads a weight of 1
over its values, so its vector is the mean of its values' embeddings (a bag of categories)
however many there are. A numeric column is one token whose weight is the standardized value.
So a sparse matrix (rows x tokens) times a token-embedding table gives every row's vector,
whatever the mix of columns, and a value never seen in training adds nothing.

Tokens met fewer than ``MIN_COUNT`` times are left out: a token of one row only is that row's
id again, and ids already have embeddings. The ``MAX_TOKENS`` most frequent ones are kept.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import scipy.sparse as sp

from pipelines.domains import MULTI_VALUE_SEPARATOR

NOT_FEATURES = {"ITEM_ID", "USER_ID", "CREATION_TIMESTAMP"}  # keys; item age is the explorer's business
MIN_COUNT = 2
MAX_TOKENS = 4096


def metadata_bags(frame: pd.DataFrame | None) -> tuple[sp.csr_matrix | None, list[str]]:
    """``(rows x tokens weights, token names)`` for a metadata frame in index order; None without features."""
    if frame is None or len(frame) == 0:
        return None, []
    columns: list[tuple[str, list[list[str]] | np.ndarray]] = []
    counts: Counter[str] = Counter()
    for name in frame.columns:
        if name in NOT_FEATURES or frame[name].isna().all():
            continue
        column = frame[name]
        if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            values = pd.to_numeric(column).to_numpy(np.float64, na_value=np.nan)
            spread = np.nanstd(values)
            if spread > 0:
                columns.append((name, (values - np.nanmean(values)) / spread))
                counts[name] = len(frame)  # a numeric column is always worth keeping
            continue
        bags = [[f"{name}={value}" for value in _values(cell)] for cell in column.tolist()]
        counts.update(token for bag in bags for token in set(bag))
        columns.append((name, bags))
    kept = [token for token, count in counts.most_common(MAX_TOKENS) if count >= MIN_COUNT]
    if not kept:
        return None, []
    vocabulary = {token: k for k, token in enumerate(sorted(kept))}
    rows, cols, weights = [], [], []
    for name, content in columns:
        if isinstance(content, np.ndarray):
            if name in vocabulary:
                present = np.flatnonzero(~np.isnan(content))
                rows.append(present)
                cols.append(np.full(len(present), vocabulary[name]))
                weights.append(content[present])
            continue
        for r, bag in enumerate(content):
            known = [vocabulary[token] for token in bag if token in vocabulary]
            if known:
                rows.append(np.full(len(known), r))
                cols.append(np.array(known))
                weights.append(np.full(len(known), 1.0 / len(bag)))
    if not rows:
        return None, []
    matrix = sp.csr_matrix(
        (np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))), shape=(len(frame), len(vocabulary))
    )
    matrix.sum_duplicates()
    return matrix.astype(np.float32), sorted(vocabulary, key=vocabulary.get)


def _values(cell) -> list[str]:
    if isinstance(cell, list | tuple | np.ndarray):
        return [str(v) for v in cell if not _missing(v)]
    if _missing(cell):
        return []
    if isinstance(cell, str):
        return [v for v in cell.split(MULTI_VALUE_SEPARATOR) if v]
    return [str(cell)]


def _missing(value) -> bool:
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))
