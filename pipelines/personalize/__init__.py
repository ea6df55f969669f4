"""The Personalize engine: interactions data, recipes behind one interface, offline evaluation.

Importing the package registers every recipe in ``RECIPES`` under Personalize's name.
"""

from pipelines.personalize import popularity, sims, trending
from pipelines.personalize.base import RECIPES, Recipe, get_recipe
from pipelines.personalize.data import InteractionData

__all__ = ["RECIPES", "InteractionData", "Recipe", "get_recipe", "popularity", "sims", "trending"]
