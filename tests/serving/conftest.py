"""A served world in a temporary folder: two dataset groups, a champion model, a published forecast, keys.

``shop`` (personalize) has a SIMS champion fitted on ``two_groups()`` (a_ users use a_ items,
b_ users b_ items) with item metadata (GENRE a or b, PRICE) in an imported snapshot; ``sales``
(forecast) has a published export of 4 items x 2 stores x 10 days with p10, p50, p90.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

mlflow = pytest.importorskip("mlflow")

from fastapi.testclient import TestClient  # noqa: E402

from pipelines.personalize import InteractionData, get_recipe  # noqa: E402
from pipelines.serving.app import create_app  # noqa: E402
from pipelines.serving.auth import create_key  # noqa: E402
from pipelines.serving.settings import ServingSettings  # noqa: E402
from pipelines.serving.store import Store  # noqa: E402
from pipelines.training import publish, registry  # noqa: E402
from pipelines.training import pyfunc as models  # noqa: E402
from tests.personalize.conftest import two_groups  # noqa: E402

SHOP = """\
name: {name}
kind: personalize
storage: ./{name}_store
datasets:
  INTERACTIONS:
    path: interactions.csv
    schema:
      - {{name: USER_ID, type: string}}
      - {{name: ITEM_ID, type: string}}
      - {{name: TIMESTAMP, type: long}}
      - {{name: EVENT_TYPE, type: string}}
  ITEMS:
    path: items.csv
    schema:
      - {{name: ITEM_ID, type: string}}
      - {{name: GENRE, type: string, categorical: true}}
      - {{name: PRICE, type: float}}
"""
SALES = """\
name: sales
kind: forecast
domain: RETAIL
frequency: 1D
horizon: 10
forecast_dimensions: [store]
storage: ./sales_store
datasets:
  TARGET_TIME_SERIES:
    path: target.csv
    schema:
      - {name: item_id, type: string}
      - {name: store, type: string}
      - {name: timestamp, type: timestamp}
      - {name: demand, type: float}
"""


def items_frame() -> pd.DataFrame:
    ids = [f"{g}_i{i:02d}" for g in "ab" for i in range(30)]
    return pd.DataFrame({"ITEM_ID": ids, "GENRE": [i[0] for i in ids], "PRICE": [float(k) for k in range(len(ids))]})


def register_champion(group: str, native, force: bool = True) -> str:
    with mlflow.start_run(experiment_id=registry.experiment(models.registered_name("personalize", group))):
        info = models.log_model("personalize", native, pd.DataFrame({"userId": ["a_u000"], "itemId": [""]}))
    version = models.register(info, "personalize", group, {"recipe": getattr(native, "name", "?")})
    registry.gate(models.registered_name("personalize", group), version, "coverage", 0.5, force=force)
    return version


def forecast_frame(level: float = 10.0) -> pd.DataFrame:
    rows = []
    for item in ("i0", "i1", "i2", "i3"):
        for store in ("s1", "s2"):
            for d, day in enumerate(pd.date_range("2024-03-01", periods=10, freq="D")):
                base = level + d
                rows.append((item, store, day, base - 2, base, base + 2))
    return pd.DataFrame(rows, columns=["item_id", "store", "date", "p10", "p50", "p90"])


def publish_forecast(root: str, frame: pd.DataFrame, as_of: str) -> dict:
    def write(folder: Path) -> dict:
        frame.to_parquet(folder / "forecast.parquet", index=False)
        frame.to_csv(folder / "forecast.csv", index=False)
        return {"rows": len(frame)}

    return publish.publish(root, "forecast", pd.Timestamp(as_of), write)


@dataclass
class World:
    root: Path
    groups_dir: Path
    database_url: str
    group: str = "shop"
    version: str = "1"
    keys: dict[str, str] = field(default_factory=dict)

    def settings(self, **overrides) -> ServingSettings:
        values = {"database_url": self.database_url, "groups_dir": str(self.groups_dir), "poll_seconds": 3600}
        return ServingSettings(**{**values, **overrides})

    def headers(self, who: str = "writer") -> dict:
        return {"Authorization": f"Bearer {self.keys[who]}"}


def build_world(
    tmp: Path,
    shop: str = "shop",
    database_url: str | None = None,
    interactions: pd.DataFrame | None = None,
    solution=None,
    settings: str = "",
) -> World:
    """The world above; ``interactions`` (default ``two_groups()``) go to the snapshot and train
    ``solution`` (default SIMS), an unfitted recipe; ``settings`` is more YAML for the shop group."""
    groups_dir = tmp / "groups.d"
    groups_dir.mkdir(parents=True, exist_ok=True)
    (groups_dir / f"{shop}.yaml").write_text(SHOP.format(name=shop) + settings)
    (groups_dir / "sales.yaml").write_text(SALES)
    interactions = two_groups() if interactions is None else interactions
    snapshot = groups_dir / f"{shop}_store" / "snapshots" / "as_of=20240101T000000"
    snapshot.mkdir(parents=True)
    interactions.to_parquet(snapshot / "INTERACTIONS.parquet", index=False)
    items_frame().to_parquet(snapshot / "ITEMS.parquet", index=False)
    (snapshot / "manifest.json").write_text(json.dumps({"rows": len(interactions)}))
    solution = get_recipe("sims", min_cointeraction_count=1) if solution is None else solution
    model = solution.fit(InteractionData.from_frames(interactions, items_frame()))
    version = register_champion(shop, model)
    publish_forecast(str(groups_dir / "sales_store"), forecast_frame(), "2024-02-29")
    world = World(tmp, groups_dir, database_url or f"sqlite:///{tmp / 'serving.db'}", shop, version)
    store = Store(world.database_url)
    for name, scopes in {"reader": ["read"], "writer": ["read", "write"], "admin": ["read", "write", "admin"]}.items():
        world.keys[name] = create_key(store, f"{name}-{np.random.default_rng().integers(1 << 30)}", scopes)
    store.close()
    return world


@pytest.fixture(scope="session")
def mlflow_store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serving_mlflow")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    patch = pytest.MonkeyPatch()
    patch.setenv("MLFLOW_TRACKING_URI", uri)
    patch.setenv("AIRSIGHT_MLFLOW_ARTIFACTS", (tmp / "artifacts").as_uri())
    patch.setenv("AIRSIGHT_HOME", str(tmp / "home"))
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    yield tmp
    patch.undo()


@pytest.fixture(scope="module")
def world(mlflow_store, request) -> World:
    """One world per test module; a module names its Personalize group with ``GROUP`` (default shop)."""
    group = getattr(request.module, "GROUP", "shop")
    return build_world(mlflow_store / f"world_{request.module.__name__.rsplit('.', 1)[-1]}", group)


@pytest.fixture(scope="module")
def client(world):
    with TestClient(create_app(world.settings())) as test_client:
        yield test_client


@pytest.fixture
def runtime(client):
    return client.app.state.runtime


def recommend(client, world, user: str = "a_u000", who: str = "reader", **body) -> dict:
    answer = client.post("/recommendations", json={"campaignArn": world.group, "userId": user, **body},
                         headers=world.headers(who))  # fmt: skip
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.fixture(scope="module")
def live_url(world):
    """The world's app served over real HTTP by uvicorn in a thread, for the clients; its base URL."""
    import threading

    import uvicorn

    from pipelines.launch.airflow_local import free_port

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(world.settings()), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the live server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(30)
