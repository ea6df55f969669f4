"""Request and response bodies, named and shaped as Personalize's and Forecast's runtime APIs."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipelines.personalize.base import MAX_RESULTS
from pipelines.personalize.segments import MAX_USERS as MAX_SEGMENT_USERS

Id = Annotated[str, Field(min_length=1, max_length=256)]
MAX_EVENTS = 10  # Personalize's PutEvents limit


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Promotion(Body):
    name: Annotated[str, Field(min_length=1, max_length=63)]
    percentPromotedItems: Annotated[int, Field(ge=1, le=100)]
    filterArn: Annotated[str, Field(min_length=1, max_length=256)]
    filterValues: dict[str, Annotated[str, Field(max_length=3000)]] | None = Field(None, max_length=25)


def _config_number(value: float | str | None, what: str) -> float | None:
    """A campaignConfig value: Personalize sends numbers as strings ("0.3"); numbers are taken too."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    return number


class ItemExplorationConfig(Body):
    """Personalize's itemExplorationConfig (user-personalization): how much to explore, and which items."""

    explorationWeight: float | str | None = Field(
        None, description="0 (only relevance) to 1 (only exploration), as a number or its text"
    )
    explorationItemAgeCutOff: float | str | None = Field(
        None, description="items created at most this many days before the newest interaction are explored"
    )

    @field_validator("explorationWeight")
    @classmethod
    def _weight(cls, value):
        number = _config_number(value, "explorationWeight")
        if number is not None and not 0 <= number <= 1:
            raise ValueError(f"explorationWeight must be between 0 and 1, got {value!r}")
        return number

    @field_validator("explorationItemAgeCutOff")
    @classmethod
    def _cut_off(cls, value):
        number = _config_number(value, "explorationItemAgeCutOff")
        if number is not None and not 0 < number <= 36_500:
            raise ValueError(f"explorationItemAgeCutOff must be more than 0 and at most 36500 days, got {value!r}")
        return number


class CampaignConfig(Body):
    itemExplorationConfig: ItemExplorationConfig | None = None


class UpdateCampaignRequest(Body):
    campaignConfig: CampaignConfig


class RecommendationsRequest(Body):
    campaignArn: (
        Annotated[str, Field(min_length=1, max_length=256, description="the dataset group (or ARN ending /<group>)")]
        | None
    ) = None
    recommenderArn: (
        Annotated[
            str,
            Field(
                min_length=1,
                max_length=256,
                description="a domain recommender, <group>__<recommender> "
                "(or an ARN ending /<that>); instead of campaignArn",
            ),
        ]
        | None
    ) = None
    userId: Id | None = None
    itemId: Id | None = Field(None, description="related items of this item (RELATED_ITEMS recipes)")
    numResults: Annotated[int, Field(ge=1, le=MAX_RESULTS)] = 25
    context: dict[str, Annotated[str, Field(max_length=1000)]] | None = Field(None, max_length=150)
    filterArn: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    filterValues: dict[str, Annotated[str, Field(max_length=3000)]] | None = Field(None, max_length=25)
    promotions: list[Promotion] | None = Field(None, max_length=1)
    itemExplorationConfig: ItemExplorationConfig | None = Field(
        None, description="this request's exploration (user-personalization), over the campaign's"
    )


class RankingRequest(Body):
    campaignArn: Annotated[str, Field(min_length=1, max_length=256)]
    userId: Id
    inputList: list[Id] = Field(min_length=1, max_length=MAX_RESULTS)
    context: dict[str, Annotated[str, Field(max_length=1000)]] | None = Field(None, max_length=150)
    filterArn: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    filterValues: dict[str, Annotated[str, Field(max_length=3000)]] | None = Field(None, max_length=25)


class ScoredItem(BaseModel):
    itemId: str
    score: float
    promotionName: str | None = None


class RecommendationsResponse(BaseModel):
    itemList: list[ScoredItem]
    recommendationId: str
    modelVersion: str


class RankingResponse(BaseModel):
    personalizedRanking: list[ScoredItem]
    recommendationId: str
    modelVersion: str


class Event(Body):
    eventId: Id | None = None
    eventType: Id
    eventValue: float | None = None
    itemId: Id | None = None
    sentAt: float | datetime = Field(description="Unix seconds or an ISO 8601 timestamp")
    recommendationId: Id | None = None
    impression: list[Id] | None = Field(None, max_length=25)
    properties: dict[str, Any] | str | None = None

    @field_validator("sentAt")
    @classmethod
    def _epoch(cls, value: float | datetime) -> float:
        seconds = value.timestamp() if isinstance(value, datetime) else float(value)
        if not math.isfinite(seconds) or not 0 <= seconds < 32_503_680_000:  # before year 3000
            raise ValueError("sentAt must be a time between 1970 and 3000")
        return seconds

    @field_validator("properties")
    @classmethod
    def _properties(cls, value: dict | str | None) -> dict | None:
        import json

        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError as exc:
                raise ValueError("properties must be a JSON object (or a string holding one)") from exc
            if not isinstance(value, dict):
                raise ValueError("properties must be a JSON object (or a string holding one)")
        return value


class PutEventsRequest(Body):
    trackingId: Annotated[str, Field(min_length=1, max_length=256, description="the dataset group's name")]
    userId: Id | None = None
    sessionId: Id
    eventList: list[Event] = Field(min_length=1, max_length=MAX_EVENTS)


class PutEventsResponse(BaseModel):
    eventsStored: int
    eventIds: list[int]


MAX_RECORDS = 10  # Personalize's PutItems and PutUsers limit
Properties = Annotated[str, Field(max_length=24_262)] | dict[str, Any] | None


class PutItem(Body):
    itemId: Id
    properties: Properties = Field(None, description="a JSON object of ITEMS fields, usually as a string")


class PutUser(Body):
    userId: Id
    properties: Properties = Field(None, description="a JSON object of USERS fields, usually as a string")


class PutItemsRequest(Body):
    datasetArn: Annotated[str, Field(min_length=1, max_length=256)] | None = Field(
        None, description="the group's ITEMS dataset (<group>/ITEMS, an ARN ending so, or the group); "
        "optional where one Personalize group is served",
    )  # fmt: skip
    items: list[PutItem] = Field(min_length=1, max_length=MAX_RECORDS)


class PutUsersRequest(Body):
    datasetArn: Annotated[str, Field(min_length=1, max_length=256)] | None = Field(
        None, description="the group's USERS dataset (<group>/USERS, an ARN ending so, or the group)"
    )
    users: list[PutUser] = Field(min_length=1, max_length=MAX_RECORDS)


class PutRecordsResponse(BaseModel):
    datasetGroup: str
    recordsStored: int
    recordIds: list[int]


class CreateFilterRequest(Body):
    name: Annotated[str, Field(min_length=1, max_length=63)]
    datasetGroup: Annotated[str, Field(min_length=1, max_length=256)]
    filterExpression: Annotated[str, Field(min_length=1, max_length=2500)]


class FilterDescription(BaseModel):
    name: str
    filterArn: str
    datasetGroup: str
    filterExpression: str
    creationDateTime: float


class FilterList(BaseModel):
    filters: list[FilterDescription]


class ForecastQuery(Body):
    forecastArn: Annotated[str, Field(min_length=1, max_length=256, description="the forecast group's name")]
    filters: dict[Annotated[str, Field(min_length=1, max_length=256)], Annotated[str, Field(max_length=256)]] = Field(
        default_factory=dict, max_length=11, description="item_id and any forecast dimensions"
    )
    startDate: str | None = Field(None, max_length=64)
    endDate: str | None = Field(None, max_length=64)
    forecastTypes: list[Annotated[str, Field(min_length=1, max_length=16)]] | None = Field(None, max_length=20)
    maxResults: Annotated[int, Field(ge=1, le=1000)] = 100
    nextToken: str | None = Field(None, max_length=1000)


class WhatIfQuery(ForecastQuery):
    """A what-if scenario (Forecast's TimeSeriesTransformations) and QueryForecast's selection of series."""

    scenario: dict = Field(
        description="name and transformations, as the group settings' what_if entries (a replacement file is a "
        "group setting, not a request)"
    )
    timeoutSeconds: Annotated[float, Field(gt=0, le=300)] = 30.0


class BatchPath(Body):
    path: Annotated[str, Field(min_length=1, max_length=1024, description="relative to the server's batch folder")]


class BatchJobFiles(Body):
    """What every batch job names: itself, its dataset group, its JSON Lines input and output."""

    jobName: Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")]
    datasetGroup: Annotated[str, Field(min_length=1, max_length=256)]
    jobInput: BatchPath
    jobOutput: BatchPath


class BatchJobRequest(BatchJobFiles):
    numResults: Annotated[int, Field(ge=1, le=MAX_RESULTS)] = 25
    filterArn: Annotated[str, Field(min_length=1, max_length=256)] | None = None


class BatchSegmentJobRequest(BatchJobFiles):
    """CreateBatchSegmentJob: item-affinity ({"itemId": …}) and item-attribute-affinity ({"itemAttributes": …})
    queries, one a line, in; each query's ``usersList`` out."""

    numResults: Annotated[int, Field(ge=1, le=MAX_SEGMENT_USERS, description="users per query")] = 25
