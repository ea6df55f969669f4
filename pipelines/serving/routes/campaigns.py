"""DescribeCampaign and UpdateCampaign: a group's serving model and its campaignConfig (itemExplorationConfig)."""

from __future__ import annotations

from fastapi import APIRouter

from pipelines.serving import schemas as s
from pipelines.serving.routes.dependencies import RuntimeDep, exploration_refused, personalize_group, serving_state
from pipelines.serving.runtime import Runtime

router = APIRouter(tags=["personalize"])


def explores(model) -> bool:
    """Whether the model takes an itemExplorationConfig (user-personalization)."""
    return callable(getattr(model, "exploration", None))


def describe_campaign(runtime: Runtime, group: str) -> dict:
    state = serving_state(runtime, group)
    config = dict(runtime.campaigns.get(group))
    model = state.model if state else None
    if model is not None and explores(model):
        from pipelines.personalize.user_personalization import item_exploration

        with item_exploration(*runtime.campaigns.exploration(group)):
            weight, cut_off = model.exploration()
        config["itemExplorationConfig"] = {"explorationWeight": f"{weight:g}",
                                           "explorationItemAgeCutOff": f"{cut_off:g}"}  # fmt: skip
    return {"name": group, "campaignArn": f"campaign/{group}", "datasetGroup": group,
            "modelVersion": state.version if state else None,
            "recipe": getattr(model, "name", None), "campaignConfig": config}  # fmt: skip


@router.get("/campaigns/{name}")
def get_campaign(name: str, runtime: RuntimeDep) -> dict:
    """DescribeCampaign: the group's serving model and its campaignConfig in force (values as text)."""
    return describe_campaign(runtime, personalize_group(runtime, name, "name"))


@router.put("/campaigns/{name}")
def update_campaign(name: str, body: s.UpdateCampaignRequest, runtime: RuntimeDep) -> dict:
    """UpdateCampaign: campaignConfig.itemExplorationConfig for every request (user-personalization); it replaces
    the previous config and reaches every server within a second."""
    group = personalize_group(runtime, name, "name")
    state = serving_state(runtime, group)
    model = state.model if state else None
    explore = body.campaignConfig.itemExplorationConfig
    if explore is not None and model is not None and not explores(model):
        raise exploration_refused(group, getattr(model, "name", "?"), "campaignConfig.itemExplorationConfig")
    config = {}
    if explore is not None:
        config["itemExplorationConfig"] = {k: v for k, v in explore.model_dump().items() if v is not None}
    runtime.campaigns.put(group, config)
    return describe_campaign(runtime, group)
