"""Generated events with a known order: after item a_k comes b_k, always; the rest is popular filler."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tests.personalize.conftest import DAY, T0

PAIRS, FILLERS = 6, 30
# Small, fast settings: a few seconds of training on these sets.
FAST = {
    "max_sequence_length": 20,
    "embedding_dimension": 32,
    "blocks": 1,
    "heads": 2,
    "dropout": 0.1,
    "learning_rate": 0.005,
    "batch_size": 32,
    "epochs": 25,
    "patience": 25,
    "validation_fraction": 0.0,
}


def paired(users: int = 240, events: int = 14, seed: int = 0, duplicates: bool = False) -> pd.DataFrame:
    """Each user clicks filler items (Zipf-popular f_00 first) and, twice, a pair a_k then b_k.

    b_k follows a_k every time and never appears otherwise, so after a_k the next item is b_k,
    which no popularity ranks first (fillers are more popular). With ``duplicates`` every event
    also has a "watch" at the same second (as MovieLens in Personalize's layout has).
    """
    rng = np.random.default_rng(seed)
    weights = 1 / np.arange(1, FILLERS + 1)
    weights /= weights.sum()
    rows = []
    for u in range(users):
        sequence = [f"f_{i:02d}" for i in rng.choice(FILLERS, size=events - 4, p=weights)]
        for k in rng.choice(PAIRS, size=2, replace=False).tolist():
            at = int(rng.integers(0, len(sequence) + 1))
            sequence[at:at] = [f"a_{k}", f"b_{k}"]
        now = T0 + int(rng.integers(0, 20 * DAY))
        for item in sequence:
            rows.append((f"u{u:03d}", item, now, "click"))
            if duplicates:
                rows.append((f"u{u:03d}", item, now, "watch"))
            now += 60
    return pd.DataFrame(rows, columns=["USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE"])


def paired_items(extra: dict[str, dict] | None = None) -> pd.DataFrame:
    """ITEMS: a KIND (opener, closer, filler) and a DESCRIPTION text; plus ``extra`` rows (new items)."""
    rows = [
        {"ITEM_ID": f"a_{k}", "KIND": "opener", "DESCRIPTION": f"the opening act of story {k}"} for k in range(PAIRS)
    ]
    rows += [
        {"ITEM_ID": f"b_{k}", "KIND": "closer", "DESCRIPTION": f"the closing act of story {k}"} for k in range(PAIRS)
    ]
    rows += [
        {"ITEM_ID": f"f_{i:02d}", "KIND": "filler", "DESCRIPTION": f"an everyday filler clip {i}"}
        for i in range(FILLERS)
    ]
    rows += [{"ITEM_ID": item_id, **values} for item_id, values in (extra or {}).items()]
    return pd.DataFrame(rows)
