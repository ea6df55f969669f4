"""What Amazon Forecast and Amazon Personalize require of each dataset.

These tables mirror the managed services' documented schemas so that a migrating team's
files and schemas load unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

TARGET_TIME_SERIES = "TARGET_TIME_SERIES"
RELATED_TIME_SERIES = "RELATED_TIME_SERIES"
ITEM_METADATA = "ITEM_METADATA"
INTERACTIONS = "INTERACTIONS"
ITEMS = "ITEMS"
USERS = "USERS"

FORECAST_DATASET_TYPES = (TARGET_TIME_SERIES, RELATED_TIME_SERIES, ITEM_METADATA)
PERSONALIZE_DATASET_TYPES = (INTERACTIONS, ITEMS, USERS)


@dataclass(frozen=True)
class ForecastDomain:
    """A Forecast domain: which field identifies a series and which holds the target."""

    name: str
    identifier: str
    target: str
    non_negative: bool  # the domain's target counts something, so it cannot go below zero


FORECAST_DOMAINS: dict[str, ForecastDomain] = {
    d.name: d
    for d in (
        ForecastDomain("RETAIL", "item_id", "demand", True),
        ForecastDomain("CUSTOM", "item_id", "target_value", False),
        ForecastDomain("INVENTORY_PLANNING", "item_id", "demand", True),
        ForecastDomain("EC2_CAPACITY", "instance_type", "number_of_instances", True),
        ForecastDomain("WORK_FORCE", "workforce_type", "workforce_demand", True),
        ForecastDomain("WEB_TRAFFIC", "item_id", "value", True),
        ForecastDomain("METRICS", "metric_name", "metric_value", False),
    )
}

# Forecast's column quotas (CreateDatasetImportJob): required + dimensions (+ features).
MAX_FORECAST_DIMENSIONS = 10
MAX_COLUMNS = {TARGET_TIME_SERIES: 13, RELATED_TIME_SERIES: 25, ITEM_METADATA: 10}
MAX_RELATED_FEATURES = 13
MAX_HORIZON = 500

# Personalize: required fields per dataset type and how many others a schema may add.
PERSONALIZE_REQUIRED = {
    INTERACTIONS: ("USER_ID", "ITEM_ID", "TIMESTAMP"),
    ITEMS: ("ITEM_ID",),
    USERS: ("USER_ID",),
}
PERSONALIZE_RESERVED = {
    INTERACTIONS: ("EVENT_TYPE", "EVENT_VALUE", "IMPRESSION", "RECOMMENDATION_ID"),
    ITEMS: ("CREATION_TIMESTAMP",),
    USERS: (),
}
PERSONALIZE_EXTRA_FIELDS = {INTERACTIONS: (0, 20), ITEMS: (1, 50), USERS: (1, 5)}
MIN_INTERACTIONS = 1000
MIN_ACTIVE_USERS = 25  # users with at least two interactions
MULTI_VALUE_SEPARATOR = "|"

# Field types, with Avro's names (Personalize schemas) folded onto Forecast's.
FIELD_TYPES = {
    "string": "string",
    "integer": "integer",
    "int": "integer",
    "long": "integer",
    "float": "float",
    "double": "float",
    "timestamp": "timestamp",
    "geolocation": "geolocation",
    "boolean": "boolean",
}

# Names the training settings and the Airflow params forms offer (the registries in
# pipelines.forecast and pipelines.personalize hold the same names; a test keeps them equal).
# Each kind's predict step, as the DAG names its task (Forecast's CreateForecast, Personalize's batch job).
PREDICT_STEPS = {"forecast": "forecast", "personalize": "recommend"}
FORECAST_ALGORITHMS = (
    "AutoPredictor", "SeasonalNaive", "ETS", "ARIMA", "Theta", "NPTS", "Prophet", "DeepAR+", "CNN-QR",
)  # fmt: skip
FORECAST_METRICS = ("AverageWeightedQuantileLoss", "WAPE", "RMSE", "MASE", "MAPE")
PERSONALIZE_RECIPES = (
    "popularity-count", "sims", "trending-now", "hrnn", "hrnn-metadata", "hrnn-coldstart",
    "user-personalization", "personalized-ranking", "deepfm", "user-personalization-v2", "personalized-ranking-v2",
    "similar-items",
)  # fmt: skip


@dataclass(frozen=True)
class Recommender:
    """A domain recommender (Personalize's use case): the recipe it trains, on which of the domain's event
    types, and whether it answers for a user (``user``) or an item (``item``: related items)."""

    recipe: str
    events: tuple[str, ...]
    answers: str  # "user" or "item"
    description: str


# Personalize's domain dataset groups: their use cases, as presets of recipes and event types.
RECOMMENDERS: dict[str, dict[str, Recommender]] = {
    "ECOMMERCE": {
        "most_viewed": Recommender("popularity-count", ("View",), "user", "the most viewed items"),
        "best_sellers": Recommender("popularity-count", ("Purchase",), "user", "the most purchased items"),
        "frequently_bought_together": Recommender("sims", ("Purchase",), "item",
                                                  "items bought with the given item"),
        "customers_who_viewed_x_also_viewed": Recommender("sims", ("View",), "item",
                                                          "items viewed by customers who viewed the given item"),
        "recommended_for_you": Recommender("user-personalization", ("View", "Purchase"), "user",
                                           "items for the user, new ones explored"),
    },
    "VIDEO_ON_DEMAND": {
        "most_popular": Recommender("popularity-count", ("Watch",), "user", "the most watched videos"),
        "because_you_watched_x": Recommender("sims", ("Watch",), "item", "videos watched with the given video"),
        "more_like_x": Recommender("similar-items", ("Watch",), "item",
                                   "videos like the given one, by metadata and watches"),
        "top_picks": Recommender("user-personalization", ("Watch", "Click"), "user",
                                 "videos for the user, new ones explored"),
    },
}  # fmt: skip
RECOMMENDER_SEP = "__"  # a recommender's served name: <dataset group>__<recommender>

PERSONALIZE_METRICS = (
    "normalized_discounted_cumulative_gain_at_25", "normalized_discounted_cumulative_gain_at_10",
    "normalized_discounted_cumulative_gain_at_5", "mean_reciprocal_rank_at_25", "precision_at_25",
    "precision_at_10", "precision_at_5", "coverage",
)  # fmt: skip
