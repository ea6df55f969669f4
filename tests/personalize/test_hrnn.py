"""HRNN: learns order within sessions, both variants, seeded, live updates, new items, cheap serving."""

from __future__ import annotations

import copy
import pickle
import time

import numpy as np
import pandas as pd
import pytest

from pipelines.personalize import RECIPES, InteractionData, get_recipe
from pipelines.personalize.evaluation import evaluate_leave_last_out
from pipelines.personalize.hrnn import Hrnn, distinct_events, session_starts, target_weights
from pipelines.personalize.popularity import PopularityCount
from tests.personalize.chain_data import FAST, chains, group_of, item
from tests.personalize.conftest import DAY, T0

LATER = T0 + 60 * DAY  # after every generated event


@pytest.fixture(scope="module")
def chain_data() -> InteractionData:
    return InteractionData.from_frames(chains())


@pytest.fixture(scope="module", params=["init", "all"])
def model(request, chain_data) -> Hrnn:
    return Hrnn(**FAST, variant=request.param).fit(chain_data)


def top(model, user: str, n: int = 3) -> list[str]:
    return [item_id for item_id, _ in model.recommend(user, n=n)]


def test_the_family_is_registered_with_personalize_names_and_ranges():
    family = {"hrnn", "hrnn-metadata", "hrnn-coldstart", "user-personalization", "personalized-ranking"}
    assert family <= set(RECIPES)
    recipe = get_recipe("arn:aws:personalize:::recipe/aws-hrnn", hidden_dimension="64", recency_mask="false")
    assert recipe.get_params()["hidden_dimension"] == 64 and recipe.get_params()["recency_mask"] is False
    assert Hrnn().get_params()["hidden_dimension"] == 43 and Hrnn().get_params()["bptt"] == 32  # Personalize's
    for bad in ({"hidden_dimension": 16}, {"bptt": 64}, {"variant": "both"}, {"loss": "top1"}):
        with pytest.raises(ValueError, match=f"{next(iter(bad))}="):
            get_recipe("hrnn", **bad)
    with pytest.raises(ValueError, match="no hyperparameters"):
        get_recipe("hrnn", exploration_weight=0.5)
    assert "exploration_weight" in RECIPES["user-personalization"].hyperparameter_defaults()
    assert "hidden_dimension" in RECIPES["user-personalization"].hyperparameter_defaults()


def test_sessions_end_after_the_gap_and_coarse_timestamps_are_chunked():
    indptr = np.array([0, 4, 6])
    times = np.array([0, 60, 4000, 4030, 10, 20])
    starts, coarse = session_starts(indptr, times, gap=1800, chunk=2)
    assert starts.tolist() == [True, False, True, False, True, False] and not coarse
    days = np.array([0, 0, 0, DAY, 0, 2 * DAY])  # dates only: time tells no session apart
    starts, coarse = session_starts(indptr, days, gap=1800, chunk=2)
    assert starts.tolist() == [True, False, True, False, True, False] and coarse


def test_repeats_are_no_targets_and_recency_weighs_newer_events_more():
    indptr = np.array([0, 4])
    weights = target_weights(indptr, np.array([3, 5, 3, 7]), np.array([1, 2, 3, 4]), n_items=8, recency=True)
    assert weights[2] == 0 and 0 < weights[0] < weights[1] < weights[3] == 1
    flat = target_weights(indptr, np.array([3, 5, 3, 7]), np.array([1, 2, 3, 4]), n_items=8, recency=False)
    assert flat.tolist() == [1, 1, 0, 1]


def test_duplicates_are_not_read_same_instant_or_right_after_themselves_in_a_session():
    indptr = np.array([0, 6, 9])
    items = np.array([3, 5, 3, 3, 3, 7, 1, 1, 2])  # user 0: 3 and 5 at t=0, 3 again at t=0, 3 at t=60, 3 after a gap
    times = np.array([0, 0, 0, 60, 9000, 9060, 0, 60, 120])
    kept_indptr, kept, kept_times, starts, coarse, _ = distinct_events(indptr, items, times, gap=1800, chunk=20)
    assert kept.tolist() == [3, 5, 3, 3, 7, 1, 2] and kept_indptr.tolist() == [0, 5, 7] and not coarse
    assert kept_times.tolist() == [0, 0, 60, 9000, 9060, 0, 120]
    assert starts.tolist() == [True, False, False, True, False, True, False]  # the gap still opens a session
    days = np.array([0, 0, 0, DAY, 2 * DAY, 3 * DAY, 0, DAY, 2 * DAY])  # coarse: any repeat in a row is one
    kept_indptr, kept, _, starts, coarse, _ = distinct_events(indptr, items, days, gap=1800, chunk=2)
    assert coarse and kept.tolist() == [3, 5, 3, 7, 1, 2] and starts.tolist() == [True, False, True, False, True, False]


def test_serving_reads_a_history_with_duplicates_as_training_did(chain_data):
    frame = chains(users=60)
    doubled = pd.concat([frame, frame.assign(EVENT_TYPE="watch")]).sort_values("TIMESTAMP", kind="stable")
    model = Hrnn(**{**FAST, "epochs": 3}).fit(InteractionData.from_frames(doubled))
    plain = Hrnn(**{**FAST, "epochs": 3}).fit(InteractionData.from_frames(frame))
    for user in ("g0_u000", "g1_u001", "g2_u005"):
        stored = model._stored_state(user)
        history, times = model._history(user)
        types = model._history_types(user, len(history))
        replayed = model._fresh_state(user)
        for item_index, when, event_type in zip(history.tolist(), times.tolist(), types.tolist(), strict=True):
            replayed = model._read(replayed, item_index, when, None, event_type)
        np.testing.assert_allclose(replayed.session, stored.session, atol=1e-5)
        assert replayed.events == stored.events == len(history) and replayed.session_events == stored.session_events
        # Every event twice trains the same network as every event once: the copies are never read.
        np.testing.assert_allclose(
            model.session_states_[model.user_index_[user]], plain.session_states_[plain.user_index_[user]], atol=1e-5
        )
    live = copy.deepcopy(model)
    user = "g0_u000"
    last_item, last_time = live._history(user)[0][-1], int(live._history(user)[1][-1])
    before = live.recommend(user, n=5)
    live.update(user, [(live.item_ids_[last_item], last_time + 30)])  # the same item again, in the session
    assert live.recommend(user, n=5) == before and live.live_states_[user].events == len(live._history(user)[0])


def test_long_histories_train_on_their_newest_events_and_training_stops_early():
    frame = chains(users=300)
    busy = frame[frame.USER_ID == "g0_u000"]
    many = pd.concat([busy.assign(TIMESTAMP=busy.TIMESTAMP + k * 10 * DAY) for k in range(30)])
    oldest = pd.DataFrame([("g0_u000", "only-in-the-oldest", T0 - DAY, "click")], columns=frame.columns)
    data = InteractionData.from_frames(pd.concat([oldest, frame, many]).sort_values("TIMESTAMP", kind="stable"))
    model = Hrnn(**{**FAST, "max_user_history_length_percentile": 0.9})
    indptr = np.array([0, 3, 10, 40])
    users, begin = model._training_spans(indptr)
    assert users.tolist() == [0, 1, 2] and begin[:2].tolist() == [0, 3] and begin[2] > 10  # kept, cut to its newest
    model = Hrnn(**{**FAST, "epochs": 30, "patience": 2, "validation_fraction": 0.2}).fit(data)
    # The busy user's oldest events were not read: an item only there counts as untrained (the mean
    # trained item's vectors), and the user's state as serving starts is still the whole history's.
    only = model.item_index_["only-in-the-oldest"]
    assert model.training_counts_[only] == 0 and model.training_counts_.sum() > 0
    np.testing.assert_allclose(model.output_[only], model.cold_item_[1], atol=1e-6)
    stored, history = model._stored_state("g0_u000"), model._history("g0_u000")
    replayed = model._fresh_state("g0_u000")
    for item_index, when in zip(*(h.tolist() for h in history), strict=True):
        replayed = model._read(replayed, item_index, when, None)
    np.testing.assert_allclose(replayed.session, stored.session, atol=1e-5)
    np.testing.assert_allclose(replayed.user, stored.user, atol=1e-5)
    report = model.training_report_
    assert len(report["validation_ndcg_at_10"]) == report["epochs"] <= 30 and report["best_epoch"] >= 1
    assert report["epochs"] == 30 or report["epochs"] - report["best_epoch"] == 2
    assert max(report["validation_ndcg_at_10"]) > 0.2  # the chains are learnt, judged on held-out newest events
    assert Hrnn(**{**FAST, "patience": 0}).fit(data).training_report_["validation_ndcg_at_10"] == []


def test_recommends_the_next_item_of_the_chain(model):
    visitor = copy.deepcopy(model)
    visitor.update("visitor", [(item(0, 3), LATER), (item(0, 4), LATER + 60)])
    assert item(0, 5) in top(visitor, "visitor")
    visitor.update("visitor", [(item(3, 6), LATER + 120)])
    assert item(3, 7) in top(visitor, "visitor")
    scores = [score for _, score in visitor.recommend("visitor", n=5)]
    assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1  # softmax over the catalog


def test_beats_popularity_when_the_next_item_depends_on_the_last(chain_data, model):
    ours = evaluate_leave_last_out(model.clone(), chain_data)["metrics"]
    baseline = evaluate_leave_last_out(PopularityCount(), chain_data)["metrics"]
    assert ours["recall_at_10"] > baseline["recall_at_10"] + 0.2
    assert ours["ndcg_at_10"] > 2 * baseline["ndcg_at_10"]


def test_the_user_state_carries_the_groups_taste_into_the_next_session(model, chain_data):
    # A session starts at a random link of one of the group's chains: only the user GRU can know which group.
    in_group = []
    for user in chain_data.user_ids:
        opening = model._close_session(model._stored_state(user), None)
        best = np.argsort(-model._scores(opening))[:5]
        in_group += [group_of(chain_data.item_ids[i]) == group_of(user) for i in best]
    assert np.mean(in_group) > 0.8  # a third by chance


def test_same_seed_same_scores_and_another_seed_another_model(chain_data):
    first = Hrnn(**{**FAST, "epochs": 2, "seed": 7}).fit(chain_data)
    again = first.clone().fit(chain_data)
    assert again.recommend("g0_u000", n=20) == first.recommend("g0_u000", n=20)
    np.testing.assert_array_equal(again.output_, first.output_)
    other = Hrnn(**{**FAST, "epochs": 2, "seed": 8}).fit(chain_data)
    assert not np.array_equal(other.output_, first.output_)


def test_update_changes_the_next_recommendation_at_once(model, chain_data):
    live = copy.deepcopy(model)
    user = "g0_u000"
    before = live.recommend(user, n=10)
    last_time = int(chain_data.timestamps[chain_data.users == chain_data.user_index[user]].max())
    assert before[0][0] == item(1, 8)  # the user's last session walked chain 1 up to c1_07
    live.update(user, [(item(1, 8), last_time + 60)])  # same session: the session state moves on
    during = live.recommend(user, n=10)
    assert during != before and during[0][0] == item(1, 9)
    state = live.live_states_[user]
    assert state.events == len(live._history(user)[0]) and state.session_events > 1
    live.update(user, [(item(5, 0), last_time + 2 * DAY)])  # after the gap: a new session
    assert live.live_states_[user].session_events == 1
    assert not np.allclose(live.live_states_[user].user, state.user)  # the finished session reached the user GRU
    assert live.recommend(user, n=10) != during


def test_new_items_from_update_become_recommendable(model):
    live = copy.deepcopy(model)
    live.update("g1_u001", [("brand-new", LATER)])
    everything = dict(live.recommend("g2_u002", n=live.output_.shape[0] - 20))
    assert everything.get("brand-new", 0) > 0
    ranked = [i for i, _ in live.rank("g2_u002", ["ghost", "brand-new", item(4, 1)])]
    assert ranked[-1] == "ghost" and set(ranked[:2]) == {"brand-new", item(4, 1)}
    assert "brand-new" not in top(live, "g1_u001", n=50)  # seen: left out, and the session went on
    assert live.live_states_["g1_u001"].events == len(live._history("g1_u001")[0])


def test_unknown_users_get_popular_items_and_related_items_is_not_served(model, chain_data):
    assert model.recommend("nobody", n=5) == [
        (i, 0.0) for i, _ in PopularityCount().fit(chain_data).recommend("nobody", n=5)
    ]
    with pytest.raises(NotImplementedError, match="hrnn"):
        model.related_items(item(0, 0))


def test_models_pickle_and_keep_serving(model):
    live = copy.deepcopy(model)
    live.update("g0_u003", [(item(1, 4), LATER)])
    copied = pickle.loads(pickle.dumps(live))
    assert copied.recommend("g0_u003") == live.recommend("g0_u003")
    copied.update("g0_u003", [(item(1, 5), LATER + 60)])
    assert copied.recommend("g0_u003") != live.recommend("g0_u003")


def test_serving_a_ten_thousand_item_catalog_takes_milliseconds():
    frame = chains(users=60)
    catalog = pd.DataFrame({"ITEM_ID": [f"extra{k:05d}" for k in range(10_000)]})
    data = InteractionData.from_frames(frame, items=catalog)
    model = Hrnn(**{**FAST, "epochs": 1}).fit(data)
    assert model.output_.shape[0] == data.n_items > 10_000
    users = list(data.user_ids[:30])
    start = time.perf_counter()
    for user in users:
        model.recommend(user, n=25)
    assert (time.perf_counter() - start) / len(users) < 0.02  # a few ms here; generous for busy machines


def test_models_pickled_before_duplicates_and_early_stopping_still_serve(model):
    old = copy.deepcopy(model)
    for name in ("last_items_", "patience", "validation_fraction"):
        old.__dict__.pop(name, None)
    restored = pickle.loads(pickle.dumps(old))
    assert restored.recommend("g0_u000", n=3) == model.recommend("g0_u000", n=3)
    assert restored.get_params()["patience"] == 0  # they trained without early stopping


def typed_walks(users: int = 240, seed: int = 0) -> pd.DataFrame:
    """Sessions of two events: item ``a`` (clicked or watched), then ``after-watch`` or ``after-click`` by its type,
    then filler; items otherwise alike, so only the event type tells what follows ``a``."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(users):
        now = T0 + int(rng.integers(0, DAY))
        for _ in range(4):
            kind = "watch" if rng.random() < 0.5 else "click"
            rows += [(f"u{u:03d}", "a", now, kind), (f"u{u:03d}", f"after-{kind}", now + 60, "click")]
            rows.append((f"u{u:03d}", f"filler{int(rng.integers(8))}", now + 120, "click"))
            now += DAY
    return pd.DataFrame(rows, columns=["USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE"])


def test_event_types_are_inputs_in_training_serving_and_put_events():
    walks = typed_walks()
    walks.loc[walks.index % 7 == 0, "EVENT_TYPE"] = None  # some events come without a type
    data = InteractionData.from_frames(walks)
    assert Hrnn(**FAST).fit(data).type_inputs_ is None  # an input only when asked for
    model = Hrnn(**{**FAST, "epochs": 40, "patience": 0, "use_event_types": True}).fit(data)
    assert model.history_types_ is not None and model.type_inputs_ is not None
    later = LATER
    for kind in ("watch", "click"):
        visitor = copy.deepcopy(model)
        visitor.update("newcomer", [{"itemId": "a", "sentAt": later, "eventType": kind}])
        assert top(visitor, "newcomer", 1) == [f"after-{kind}"]  # the same item, told apart by its type
    # The stored states are what serving replays from the history and its types, untyped events included.
    assert np.abs(model.type_inputs_[0]).sum() > 0  # "no type" is learned, and read in serving too
    for user in ("u000", "u007", "u013"):
        stored = model._stored_state(user)
        history, times = model._history(user)
        replayed = model._fresh_state(user)
        types = model._history_types(user, len(history)).tolist()
        for item_index, when, event_type in zip(history.tolist(), times.tolist(), types, strict=True):
            replayed = model._read(replayed, item_index, when, None, event_type)
        np.testing.assert_allclose(replayed.session, stored.session, atol=1e-5)
    # An event of no type, or of a type training never saw, reads as none; one type alone is no input.
    visitor = copy.deepcopy(model)
    visitor.update("u001", [("a", later), ("after-click", later + 60, "rating")])
    assert visitor._history_types("u001", len(visitor._history("u001")[0]))[-2:].tolist() == [0, 0]
    single = Hrnn(**FAST, use_event_types=True).fit(
        InteractionData.from_frames(typed_walks().assign(EVENT_TYPE="click"))
    )
    assert single.history_types_ is None and single.type_inputs_ is None
