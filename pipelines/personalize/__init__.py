"""The Personalize engine: interactions data, recipes behind one interface, offline evaluation.

Importing the package registers every recipe in ``RECIPES`` under Personalize's name.
"""

from pipelines.personalize import popularity, sims, trending
from pipelines.personalize.base import RECIPES, Recipe, get_recipe
from pipelines.personalize.data import InteractionData

from pipelines.personalize import hrnn, hrnn_metadata, ranking, user_personalization  # noqa: F401  # isort: skip
from pipelines.personalize import deepfm  # noqa: F401  # isort: skip
from pipelines.personalize import similar_items, transformer  # noqa: F401  # isort: skip

__all__ = ["RECIPES", "InteractionData", "Recipe", "get_recipe", "popularity", "sims", "trending"]
