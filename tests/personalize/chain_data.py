"""Generated sessions whose order matters, for the HRNN recipes: item chains walked by taste groups."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tests.personalize.conftest import DAY, T0

GROUPS, CHAINS_PER_GROUP, LENGTH = 3, 2, 10
# Tiny, fast settings that learn the chains in about a second (Personalize's range starts at 32 dimensions).
FAST = {
    "hidden_dimension": 32,
    "epochs": 10,
    "batch_size": 16,
    "learning_rate": 0.02,
    "negative_samples": 32,
    "bptt": 8,
    "patience": 0,  # every epoch runs: early stopping has its own test
}


def item(chain: int, step: int) -> str:
    return f"c{chain}_{step:02d}"


def group_of(item_or_user: str) -> int:
    """The taste group of a user (g1_u004) or of a chain item (c3_05 belongs to group 1)."""
    if item_or_user.startswith("g"):
        return int(item_or_user[1])
    return int(item_or_user[1 : item_or_user.index("_")]) // CHAINS_PER_GROUP


def chains(users: int = 150, seed: int = 0) -> pd.DataFrame:
    """Users of three taste groups walk item chains c_00 -> c_01 -> … in sessions a day apart.

    A group's users walk only its two chains; a session follows one chain for 3 to 6 steps from
    a random start, one event a minute. Every item of a chain is about as popular as the next,
    so only the order of events tells what comes next, and only the history tells the group.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(users):
        group = u % GROUPS
        now = T0 + int(rng.integers(0, DAY))
        for _ in range(int(rng.integers(2, 6))):
            chain = group * CHAINS_PER_GROUP + int(rng.integers(CHAINS_PER_GROUP))
            size = int(rng.integers(3, 7))
            start = int(rng.integers(0, LENGTH - size + 1))
            for step in range(start, start + size):
                rows.append((f"g{group}_u{u:03d}", item(chain, step), now, "click"))
                now += 60
            now += DAY
    return pd.DataFrame(rows, columns=["USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE"])


def chain_items(extra: dict[str, dict] | None = None) -> pd.DataFrame:
    """ITEMS for the chain items: a GENRE naming the group, a multi-valued TAGS, a numeric RANK; plus ``extra`` rows."""
    rows = [
        {
            "ITEM_ID": item(chain, step),
            "GENRE": f"genre{chain // CHAINS_PER_GROUP}",
            "TAGS": f"tag{chain // CHAINS_PER_GROUP}|chain{chain}",
            "RANK": float(step),
            "CREATION_TIMESTAMP": T0 - 400 * DAY,
        }
        for chain in range(GROUPS * CHAINS_PER_GROUP)
        for step in range(LENGTH)
    ]
    rows += [{"ITEM_ID": item_id, **values} for item_id, values in (extra or {}).items()]
    return pd.DataFrame(rows)


def chain_users(users: int = 150, newcomers: dict[str, int] | None = None) -> pd.DataFrame:
    """USERS with their taste group as a categorical field; ``newcomers`` are users with metadata only."""
    rows = [{"USER_ID": f"g{u % GROUPS}_u{u:03d}", "SEGMENT": f"segment{u % GROUPS}"} for u in range(users)]
    rows += [{"USER_ID": user, "SEGMENT": f"segment{group}"} for user, group in (newcomers or {}).items()]
    return pd.DataFrame(rows)
