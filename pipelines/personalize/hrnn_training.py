"""Training the hierarchical recurrent network of the HRNN recipes, in torch.

The network is Quadrana et al.'s HRNN (RecSys 2017). A session-level GRU reads the items of a
session and its state scores the next item. A user-level GRU reads the final session state
when a session ends; its state initializes the next session (``variant="init"``, HRNN-Init)
and, with ``variant="all"`` (HRNN-All), is also fed to the session GRU at every step. So
what a user did in earlier sessions carries into the next one, which GRU4Rec forgets. Item
and user metadata, where given, are bags of token embeddings concatenated to the item input
and to the user state.

Batches are user-parallel, GRU4Rec's session-parallel mini-batches one level up: each of
``batch_size`` lanes reads one user's events after another, sessions and all, so the user
GRU sees the sessions in order; a lane that finishes a user takes the next one and resets
its states. Gradients flow through ``bptt`` steps (truncated back-propagation through time).
Scoring every item at every step would cost the catalog per event; instead each step scores
its target against the other lanes' targets and ``negative_samples`` items drawn with
probability popularity ** ``sample_alpha`` (Hidasi & Karatzoglou 2018), under a
cross-entropy or a BPR-max loss. The target that follows a session's last event is scored
from the next session's initial state: that is how the user GRU learns. The optimizer is
Adagrad, as in GRU4Rec: a batch touches few item rows, and Adam's running moments keep moving
rows no batch touched (on MovieLens, Adam reached a fifth lower Recall@10 in as many epochs).

Torch lives only here, imported when a recipe trains; the trained weights leave as numpy.
"""

from __future__ import annotations

import copy
import heapq
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional

INFERENCE_LANES = 1024
TYPE_DROPOUT = 0.1  # the share of events training reads as of no type (serving may get events without one)


@dataclass
class Sequences:
    """Every user's events in time order, flat: user u's are ``[indptr[u], indptr[u + 1])``.

    ``weight`` is the loss weight of predicting an event (0: never a target, e.g. a repeat).
    ``types`` (optional) is each event's EVENT_TYPE code plus one (0: none), an input beside the item.
    ``begin`` and ``end`` (per user, default the whole history) bound what training reads:
    a long history's newest events, a validation user's older ones.
    """

    indptr: np.ndarray
    items: np.ndarray
    session_start: np.ndarray
    weight: np.ndarray
    begin: np.ndarray | None = None
    end: np.ndarray | None = None
    types: np.ndarray | None = None

    def span(self) -> tuple[np.ndarray, np.ndarray]:
        begin = self.indptr[:-1] if self.begin is None else self.begin
        return begin, self.indptr[1:] if self.end is None else self.end


@dataclass
class Settings:
    hidden: int
    variant: str
    loss: str
    negative_samples: int
    sample_alpha: float
    bpreg: float
    logq: float
    dropout: float
    epochs: int
    patience: int
    validation_fraction: float
    learning_rate: float
    batch_size: int
    bptt: int
    seed: int


class HrnnNetwork(nn.Module):
    def __init__(self, n_items: int, item_tokens: int, user_tokens: int, settings: Settings, event_types: int = 0):
        super().__init__()
        hidden, features = settings.hidden, max(8, settings.hidden // 2)
        self.all = settings.variant == "all"
        self.item_embedding = nn.Embedding(n_items, hidden)
        self.output = nn.Embedding(n_items, hidden)
        self.output_bias = nn.Embedding(n_items, 1)
        self.item_tokens = nn.Parameter(torch.randn(item_tokens, features) * 0.1) if item_tokens else None
        self.user_tokens = nn.Parameter(torch.randn(user_tokens, features) * 0.1) if user_tokens else None
        user_dim = hidden + (features if user_tokens else 0)
        item_dim = hidden + (features if item_tokens else 0)
        # An event type's vector is added to the item's input (row 0: no type, which training's type
        # dropout and untyped events teach); zeros at first (drawing nothing from the random stream, so
        # the other weights start as without types), so a type adds only what training finds it tells.
        self.event_types = nn.Parameter(torch.zeros(event_types + 1, item_dim)) if event_types else None
        self.session_gru = nn.GRUCell(item_dim + (user_dim if self.all else 0), hidden)
        self.user_gru = nn.GRUCell(hidden, hidden)
        self.session_init = nn.Linear(user_dim, hidden)
        self.dropout = nn.Dropout(settings.dropout)
        for table in (self.item_embedding, self.output):
            nn.init.normal_(table.weight, std=0.1)
        nn.init.zeros_(self.output_bias.weight)

    def init_session(self, c: torch.Tensor, user_features: torch.Tensor | None) -> torch.Tensor:
        return torch.tanh(self.session_init(c if user_features is None else torch.cat([c, user_features], -1)))

    def forward(self, chunk: dict, c: torch.Tensor, h: torch.Tensor):
        """Run ``chunk``'s steps; per step the state that scores the target, and the user states."""
        outputs, user_states = [], []
        item_features, user_features = chunk.get("item_features"), chunk.get("user_features")
        for t in range(chunk["items"].shape[0]):
            fu = None if user_features is None else user_features[t]
            first = chunk["first"][t]
            if bool(first.any()):  # a lane starts a new user: empty user state, fresh session
                c = torch.where(first[:, None], torch.zeros_like(c), c)
                h = torch.where(first[:, None], self.init_session(c, fu), h)
            x = [self.item_embedding(chunk["items"][t])]
            if item_features is not None:
                x.append(item_features[t])
            if self.event_types is not None and "types" in chunk:
                x = [torch.cat(x, -1) + self.event_types[chunk["types"][t]]]
            if self.all:
                x += [c] if fu is None else [c, fu]
            h = self.session_gru(torch.cat(x, -1), h)
            fold = chunk["fold"][t]
            if bool(fold.any()):  # the session ended: the user GRU reads it and opens the next
                c = torch.where(fold[:, None], self.user_gru(self.dropout(h), c), c)
                h = torch.where(fold[:, None], self.init_session(c, fu), h)
            outputs.append(h)
            user_states.append(c)
        return torch.stack(outputs), torch.stack(user_states), c, h


def lanes(seqs: Sequences, users: np.ndarray, n_lanes: int, rng: np.random.Generator | None) -> np.ndarray:
    """``[steps, n_lanes]`` event positions (-1 once a lane runs dry); each lane reads its users' spans in turn.

    Users go, in random order, to the lane with the fewest events so far, so lanes end within
    one user of each other and the batch stays full to the end.
    """
    begin, end = seqs.span()
    lengths = (end[users] - begin[users]).astype(np.int64)
    order = rng.permutation(len(users)) if rng is not None else np.arange(len(users))
    lane_of, offset_of = np.zeros(len(users), np.int64), np.zeros(len(users), np.int64)
    load = [(0, lane) for lane in range(n_lanes)]
    for k in order.tolist():
        used, lane = heapq.heappop(load)
        lane_of[k], offset_of[k] = lane, used
        heapq.heappush(load, (used + int(lengths[k]), lane))
    positions = np.full((max(used for used, _ in load), n_lanes), -1, dtype=np.int64)
    within = offsets_within(lengths)
    positions[np.repeat(offset_of, lengths) + within, np.repeat(lane_of, lengths)] = (
        np.repeat(begin[users], lengths) + within
    )
    return positions


def offsets_within(lengths: np.ndarray) -> np.ndarray:
    """0, 1, ..., length - 1 for each length in turn, flat."""
    return np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)


def step_arrays(seqs: Sequences, positions: np.ndarray) -> dict[str, np.ndarray]:
    """What each lane reads, predicts and does at each step, from the event positions."""
    n = len(seqs.items)
    active = positions >= 0
    event = np.where(active, positions, 0)
    lengths = np.diff(seqs.indptr)
    user_of = np.repeat(np.arange(len(lengths)), lengths)
    begin, end = seqs.span()
    read = end > begin
    first_of = np.zeros(n, dtype=bool)
    first_of[begin[read]] = True
    last_of = np.zeros(n, dtype=bool)
    last_of[end[read] - 1] = True
    ends = last_of[event] | ~active
    following = np.where(ends, 0, event + 1)
    types = {} if seqs.types is None else {"types": np.where(active, seqs.types[event], 0).astype(np.int64)}
    return {
        **types,
        "items": seqs.items[event],
        "targets": np.where(ends, -1, seqs.items[following]),
        "weights": np.where(ends, 0.0, seqs.weight[following]).astype(np.float32),
        "first": active & first_of[event],
        "fold": ~ends & seqs.session_start[following],
        "last": active & last_of[event],
        "users": user_of[event],
        "active": active,
    }


def chunk_tensors(steps: dict, start: int, stop: int, item_bags, user_bags, net: HrnnNetwork, device) -> dict:
    """Steps ``start:stop`` as tensors, with the metadata vectors of the items and users in them."""
    chunk = {k: torch.from_numpy(np.ascontiguousarray(v[start:stop])).to(device) for k, v in steps.items()}
    for bags, tokens, key, name in (
        (item_bags, net.item_tokens, "items", "item_features"),
        (user_bags, net.user_tokens, "users", "user_features"),
    ):
        if tokens is None:
            continue
        uniques, inverse = np.unique(steps[key][start:stop], return_inverse=True)
        vectors = torch.sparse.mm(sparse_tensor(bags[uniques], device), tokens)
        chunk[name] = vectors[torch.from_numpy(inverse.reshape(stop - start, -1)).to(device)]
    return chunk


def sparse_tensor(matrix: sp.csr_matrix, device) -> torch.Tensor:
    coo = matrix.tocoo()
    index = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    values = torch.from_numpy(coo.data.astype(np.float32))
    return torch.sparse_coo_tensor(index, values, coo.shape, check_invariants=False).to(device)  # built valid above


def sampled_loss(net: HrnnNetwork, outputs, targets, weights, negatives, logq, settings: Settings) -> torch.Tensor:
    """Each step's targets against the other lanes' targets and the step's sampled negatives.

    A candidate equal to the row's own target is no negative and is masked; rows weigh by
    ``weights`` (recency, and 0 for steps without a target). Popular items are candidates
    more often than the catalog's share, so cross-entropy subtracts ``logq`` times each
    candidate's log sampling probability (Bengio & Senecal's correction): without it the
    model learns to push popular items down and ranks the long tail first over the catalog.
    """
    batch = targets.shape[1]
    candidates = torch.cat([targets.clamp(min=0), negatives], 1)
    logits = torch.baddbmm(
        net.output_bias(candidates).transpose(1, 2), outputs, net.output(candidates).transpose(1, 2)
    )  # [steps, batch, batch + samples]
    own = torch.eye(batch, candidates.shape[1], dtype=torch.bool, device=targets.device)
    missing = torch.cat([targets < 0, torch.zeros_like(negatives, dtype=torch.bool)], 1)[:, None, :]
    masked = (missing | (candidates[:, None, :] == targets[:, :, None])) & ~own
    if settings.loss == "cross-entropy":
        logits = logits - settings.logq * logq[candidates][:, None, :]
        per_row = -functional.log_softmax(logits.masked_fill(masked, float("-inf")), -1).diagonal(0, 1, 2)
    else:  # BPR-max: softmax-weighted BPR over the negatives, plus a score regularizer on them
        share = torch.nan_to_num(torch.softmax(logits.masked_fill(masked | own, float("-inf")), -1))
        positive = logits.diagonal(0, 1, 2)[..., None]
        bpr = (share * torch.sigmoid(positive - logits)).sum(-1)
        per_row = -torch.log(bpr + 1e-24) + settings.bpreg * (share * logits**2).sum(-1)
    total = weights.sum()
    return (per_row * weights).sum() / total if total > 0 else per_row.sum() * 0


def train_network(
    seqs: Sequences,
    train_users: np.ndarray,
    n_items: int,
    item_bags: sp.csr_matrix | None,
    user_bags: sp.csr_matrix | None,
    settings: Settings,
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, dict, np.ndarray]:
    """Train; return the weights, every user's user and session state after their last event (the whole
    history, as serving replays it), a report (epochs run, the validation NDCG@10 of each, the epoch
    kept) and how often each item occurs in what training read (0: never trained)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)  # steps are small: threads wait on each other, and stall on a busy machine
    try:
        with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
            torch.manual_seed(settings.seed)  # seeded, and the caller's random state is restored after
            tokens = (0 if bags is None else bags.shape[1] for bags in (item_bags, user_bags))
            types = 0 if seqs.types is None else int(seqs.types.max(initial=0))
            net = HrnnNetwork(n_items, *tokens, settings, event_types=types).to(device)
            report = {"epochs": 0, "validation_ndcg_at_10": [], "best_epoch": None}
            counts = np.zeros(n_items, np.int64)
            if len(train_users):
                holdout = Holdout.draw(seqs, train_users, settings)
                training = seqs if holdout is None else replace(seqs, end=holdout.cut)
                counts = read_counts(training, train_users, n_items)
                report = fit_epochs(net, training, train_users, counts, item_bags, user_bags, settings, device, holdout)
            net.eval()
            whole = replace(seqs, begin=None, end=None)
            user_states, session_states = final_states(net, whole, item_bags, user_bags, device)
    finally:
        torch.set_num_threads(threads)
    return export(net), user_states, session_states, report, counts


def read_counts(seqs: Sequences, users: np.ndarray, n_items: int) -> np.ndarray:
    """How often each item occurs in the spans of ``users`` that training reads."""
    begin, end = seqs.span()
    lengths = end[users] - begin[users]
    positions = np.repeat(begin[users], lengths) + offsets_within(lengths)
    return np.bincount(seqs.items[positions], minlength=n_items).astype(np.int64)


@dataclass
class Holdout:
    """A time-ordered validation slice: for some training users, their newest events are held out of
    training, and the network's top 10 after the older ones is scored against them (NDCG@10, items
    already seen left out, as recommendations leave them out)."""

    users: np.ndarray
    cut: np.ndarray  # per user: where training stops reading (the whole span for users not held out)
    truth: list[set]

    MIN_USERS: ClassVar[int] = 10
    MAX_USERS: ClassVar[int] = 1000

    @classmethod
    def draw(cls, seqs: Sequences, train_users: np.ndarray, settings: Settings) -> Holdout | None:
        begin, end = seqs.span()
        eligible = train_users[end[train_users] - begin[train_users] >= 3]
        count = min(int(settings.validation_fraction * len(train_users)), len(eligible), cls.MAX_USERS)
        if settings.patience < 1 or count < cls.MIN_USERS:
            return None
        rng = np.random.default_rng(settings.seed + 1)
        users = np.sort(rng.choice(eligible, count, replace=False))
        length = end[users] - begin[users]
        cut = end.copy()
        cut[users] = begin[users] + np.clip(np.ceil(length * (1 - settings.validation_fraction)), 2, length - 1).astype(
            np.int64
        )
        truth = [
            set(seqs.items[cut[u] : end[u]].tolist()) - set(seqs.items[seqs.indptr[u] : cut[u]].tolist())
            for u in users.tolist()
        ]
        keep = np.array([bool(t) for t in truth])
        if keep.sum() < cls.MIN_USERS:
            return None
        cut[users[~keep]] = end[users[~keep]]  # nothing new to predict: trains in full, scored by nothing
        return cls(users[keep], cut, [t for t, k in zip(truth, keep, strict=True) if k])

    @torch.no_grad()
    def ndcg_at_10(self, net: HrnnNetwork, seqs: Sequences, item_bags, user_bags, device) -> float:
        from pipelines.personalize.evaluation import ndcg_at_k

        net.eval()
        try:
            _, session = final_states(net, replace(seqs, end=self.cut), item_bags, user_bags, device, self.users)
        finally:
            net.train()
        output = net.output.weight.detach().cpu().numpy()
        bias = net.output_bias.weight.detach().cpu().numpy()[:, 0]
        scores = []
        for k, u in enumerate(self.users.tolist()):
            logits = output @ session[u] + bias
            logits[seqs.items[seqs.indptr[u] : self.cut[u]]] = -np.inf
            top = np.argpartition(-logits, 9)[:10] if len(logits) > 10 else np.arange(len(logits))
            top = top[np.argsort(-logits[top], kind="stable")]
            scores.append(ndcg_at_k(top.tolist(), self.truth[k], 10))
        return float(np.mean(scores))


def fit_epochs(
    net: HrnnNetwork,
    seqs: Sequences,
    train_users,
    counts: np.ndarray,
    item_bags,
    user_bags,
    settings: Settings,
    device,
    holdout: Holdout | None = None,
) -> dict:
    """Epochs of truncated BPTT; with a holdout, stop after ``patience`` epochs without a better
    validation NDCG@10 and keep the best epoch's weights. ``counts``: each item's events that training
    reads (``read_counts``), for the negatives' sampling."""
    rng = np.random.default_rng(settings.seed)
    counts = counts.astype(np.float64)
    sampled = counts**settings.sample_alpha
    cdf = np.cumsum(sampled / sampled.sum())
    n_lanes = min(settings.batch_size, len(train_users))
    share = (n_lanes * counts / counts.sum() + settings.negative_samples * sampled / sampled.sum()) / (
        n_lanes + settings.negative_samples
    )
    logq = torch.from_numpy(np.log(np.maximum(share, 1e-12)).astype(np.float32)).to(device)
    optimizer = torch.optim.Adagrad(net.parameters(), lr=settings.learning_rate)  # sparse rows: GRU4Rec's choice
    report = {"epochs": 0, "validation_ndcg_at_10": [], "best_epoch": None}
    best, since = None, 0
    for epoch in range(settings.epochs):
        steps = step_arrays(seqs, lanes(seqs, train_users, n_lanes, rng))
        if "types" in steps:
            steps["types"][rng.random(steps["types"].shape) < TYPE_DROPOUT] = 0
        c = h = torch.zeros(n_lanes, settings.hidden, device=device)
        for start in range(0, len(steps["items"]), settings.bptt):
            stop = min(start + settings.bptt, len(steps["items"]))
            chunk = chunk_tensors(steps, start, stop, item_bags, user_bags, net, device)
            negatives = np.minimum(
                np.searchsorted(cdf, rng.random((stop - start, settings.negative_samples))), len(cdf) - 1
            )
            outputs, _, c, h = net(chunk, c.detach(), h.detach())
            loss = sampled_loss(
                net,
                net.dropout(outputs),
                chunk["targets"],
                chunk["weights"],
                torch.from_numpy(negatives).to(device),
                logq,
                settings,
            )
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            optimizer.step()
        report["epochs"] = epoch + 1
        if holdout is None:
            continue
        score = holdout.ndcg_at_10(net, seqs, item_bags, user_bags, device)
        report["validation_ndcg_at_10"].append(round(score, 5))
        if best is None or score > best[0]:
            best, since = (score, copy.deepcopy(net.state_dict())), 0
            report["best_epoch"] = epoch + 1
        else:
            since += 1
            if since >= settings.patience:
                break
    if best is not None:
        net.load_state_dict(best[1])
    return report


@torch.no_grad()
def final_states(
    net: HrnnNetwork, seqs: Sequences, item_bags, user_bags, device, users: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Every user's (user state, session state) after reading their span, as serving starts
    (``users``: only these; the others' rows stay zero)."""
    n_users = len(seqs.indptr) - 1
    begin, end = seqs.span()
    if users is None:
        users = np.flatnonzero(end > begin)
    user_states = np.zeros((n_users, net.user_gru.hidden_size), dtype=np.float32)
    session_states = np.zeros_like(user_states)
    if len(users) == 0:
        return user_states, session_states
    lengths = end[users] - begin[users]
    n_lanes = int(
        min(INFERENCE_LANES, len(users), -(-lengths.sum() // lengths.max()))
    )  # the longest user sets the steps
    steps = step_arrays(seqs, lanes(seqs, users, n_lanes, None))
    c = h = torch.zeros(n_lanes, net.user_gru.hidden_size, device=device)
    for start in range(0, len(steps["items"]), 64):
        stop = min(start + 64, len(steps["items"]))
        chunk = chunk_tensors(steps, start, stop, item_bags, user_bags, net, device)
        outputs, users_c, c, h = net(chunk, c, h)
        last = steps["last"][start:stop]
        who = steps["users"][start:stop][last]
        session_states[who] = outputs.cpu().numpy()[last]
        user_states[who] = users_c.cpu().numpy()[last]
    return user_states, session_states


def export(net: HrnnNetwork) -> dict[str, np.ndarray]:
    return {name: value.detach().cpu().numpy().astype(np.float32) for name, value in net.state_dict().items()}
