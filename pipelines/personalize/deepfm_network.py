"""The DeepFM network and its training on implicit feedback, in torch.

DeepFM (Guo et al., IJCAI 2017) scores a row of sparse fields with the sum of a factorization
machine and a feed-forward network that read the same field embeddings: the FM's pairwise
dot products capture low-order interactions (this user's taste for this genre), the network
the higher-order ones, and neither needs hand-made cross features. A field is a bag of tokens
(a user id, a list of genres, the last items of a history) whose embedding is the weighted
mean of its tokens' embeddings, and whose first-order weight is the same mean of theirs.

Fields are of two sides: the user's (id, metadata, recent items, context) and the item's (id,
metadata). A training row is a positive event and ``negative_samples`` items drawn with
probability popularity ** ``sample_alpha``, all against the event's user side, under a
logistic loss. Popular items are drawn more often than the catalog's share, so each logit is
corrected by ``logq`` times log(K q(item)) (K negatives, q the sampling probability): with the
full correction the model's score estimates log P(item | user), not the popularity-free ratio
that uncorrected sampling learns and that ranks the long tail first.

``id_dropout`` replaces a share of the ids with the "unknown" row of their table, so that row
learns what a user or an item without history looks like, and metadata learns to carry the
signal where ids are missing (DropoutNet's idea, Volkovs et al. 2017): cold users and new
items get scores from their metadata.

Torch lives only here, imported when the recipe trains; the weights leave as numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional

from pipelines.personalize.data import InteractionData
from pipelines.personalize.metadata import NOT_FEATURES, metadata_bags

MAX_TOKENS_PER_ROW = 32  # a field's bag keeps its first 32 values (weights stay 1 / all of them)
NUMERIC_BINS = 10
MAX_CONTEXT_VALUES = 1000  # a context column with more distinct values is an id or a measurement, not a field
NOT_CONTEXT = {"IMPRESSION"}  # a list of items shown, read by user-personalization


@dataclass
class Field:
    """A sparse field: per row up to m tokens (indexes into a table of ``size`` rows) and their weights (0 pads)."""

    name: str
    index: np.ndarray
    weight: np.ndarray
    size: int


@dataclass
class Examples:
    """Training rows: per positive event its user, item and event row; the fields read by those rows."""

    users: np.ndarray
    items: np.ndarray
    events: np.ndarray
    user_fields: list[Field]  # rows are users
    event_fields: list[Field]  # rows are events
    item_fields: list[Field]  # rows are items; the first is the item id
    unknown_user: int  # the user id field's unknown row
    unknown_item: int


@dataclass
class Settings:
    embedding_dimension: int
    hidden_dimension: int
    hidden_layers: int
    dropout: float
    id_dropout: float
    l2_regularization: float
    negative_samples: int
    sample_alpha: float
    logq: float
    epochs: int
    learning_rate: float
    batch_size: int
    seed: int


def id_field(name: str, count: int) -> Field:
    """One token per row, its own index; row ``count`` of the table is the unknown id's."""
    return Field(name, np.arange(count, dtype=np.int64)[:, None], np.ones((count, 1), np.float32), count + 1)


def metadata_fields(frame: pd.DataFrame | None) -> list[Field]:
    """One field per metadata column: categorical values as tokens (a list is a bag), numbers cut into deciles."""
    if frame is None:
        return []
    fields = []
    for column in frame.columns:
        if column in NOT_FEATURES or frame[column].isna().all():
            continue
        values = frame[column]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            bins = pd.qcut(pd.to_numeric(values), NUMERIC_BINS, labels=False, duplicates="drop")
            values = pd.Series([None if pd.isna(b) else f"bin{int(b)}" for b in bins], index=frame.index, dtype=object)
        bags, _ = metadata_bags(pd.DataFrame({column: values}))
        if bags is not None:
            fields.append(padded(column, bags))
    return fields


def padded(name: str, bags: sp.csr_matrix) -> Field:
    """A rows x tokens weight matrix as [rows, m] token indexes and weights (0 pads)."""
    counts = np.diff(bags.indptr)
    width = int(max(1, min(MAX_TOKENS_PER_ROW, counts.max(initial=0))))
    index = np.zeros((bags.shape[0], width), np.int64)
    weight = np.zeros((bags.shape[0], width), np.float32)
    position = np.arange(bags.nnz) - np.repeat(bags.indptr[:-1], counts)
    row = np.repeat(np.arange(bags.shape[0]), counts)
    keep = position < width
    index[row[keep], position[keep]] = bags.indices[keep]
    weight[row[keep], position[keep]] = bags.data[keep]
    return Field(name, index, weight, bags.shape[1])


def history_field(indptr: np.ndarray, items: np.ndarray, first: np.ndarray, length: int, n_items: int) -> Field | None:
    """Per event (in user-history order) the user's ``length`` newest distinct items before it, each 1 / their number.

    ``first`` marks each user's first event on an item: repeats (a click, then a watch of the same
    item) add nothing new to the history.
    """
    if length == 0:
        return None
    firsts = np.flatnonzero(first)
    start = np.repeat(indptr[:-1], np.diff(indptr))
    before = np.searchsorted(firsts, np.arange(len(items)))  # first events before each event
    back = before[:, None] - np.arange(1, length + 1)[None, :]
    present = back >= np.searchsorted(firsts, start)[:, None]
    index = np.where(present, items[firsts[np.maximum(back, 0)]] if len(firsts) else 0, 0).astype(np.int64)
    weight = present / np.maximum(present.sum(1, keepdims=True), 1)
    return Field("HISTORY", index, weight.astype(np.float32), n_items)


def context_fields(data: InteractionData, rows: np.ndarray) -> tuple[list[Field], dict[str, dict[str, int]]]:
    """EVENT_TYPE and the categorical context columns, per event in user-history order, and their codes by value."""
    columns: dict[str, np.ndarray] = {}
    if len(data.event_type_names) >= 2:
        names = np.array([*data.event_type_names, None], dtype=object)
        columns["EVENT_TYPE"] = names[data.event_types[rows]]
    for name in [] if data.context is None else data.context.columns:
        if name not in NOT_CONTEXT:
            columns[name] = data.context[name].to_numpy(dtype=object)[rows]
    fields, codes = [], {}
    for name, values in columns.items():
        text = pd.Series(values, dtype=object).map(lambda v: None if _missing(v) else str(v))
        frequent = text.value_counts()
        frequent = frequent[frequent >= 2]
        if not 2 <= len(frequent) <= MAX_CONTEXT_VALUES:
            continue
        codes[name] = {value: k for k, value in enumerate(frequent.index)}
        code = text.map(codes[name]).to_numpy(dtype=np.float64, na_value=np.nan)
        known = ~np.isnan(code)
        fields.append(
            Field(
                name,
                np.where(known, code, 0).astype(np.int64)[:, None],
                known.astype(np.float32)[:, None],
                len(frequent),
            )
        )
    return fields, codes


def _missing(value) -> bool:
    return value is None or (not isinstance(value, str | list | tuple | np.ndarray) and bool(pd.isna(value)))


class DeepFMNetwork(nn.Module):
    def __init__(self, user_sizes: list[int], item_sizes: list[int], settings: Settings):
        super().__init__()
        k = settings.embedding_dimension
        self.user_vectors = nn.ModuleList(nn.Embedding(size, k) for size in user_sizes)
        self.user_weights = nn.ModuleList(nn.Embedding(size, 1) for size in user_sizes)
        self.item_vectors = nn.ModuleList(nn.Embedding(size, k) for size in item_sizes)
        self.item_weights = nn.ModuleList(nn.Embedding(size, 1) for size in item_sizes)
        self.bias = nn.Parameter(torch.zeros(1))
        layers: list[nn.Module] = []
        width = (len(user_sizes) + len(item_sizes)) * k
        for _ in range(settings.hidden_layers):
            layers += [nn.Linear(width, settings.hidden_dimension), nn.ReLU(), nn.Dropout(settings.dropout)]
            width = settings.hidden_dimension
        self.hidden = nn.Sequential(*layers)
        self.output = nn.Linear(width, 1)
        for table in (*self.user_vectors, *self.item_vectors):
            nn.init.normal_(table.weight, std=0.05)
        for table in (*self.user_weights, *self.item_weights):
            nn.init.zeros_(table.weight)

    @staticmethod
    def side(vectors: nn.ModuleList, weights: nn.ModuleList, fields: list[tuple[torch.Tensor, torch.Tensor]]):
        """Field embeddings ``[..., F, k]`` and the summed first-order terms ``[...]`` of one side."""
        embedded = [(table(index) * w[..., None]).sum(-2) for table, (index, w) in zip(vectors, fields, strict=True)]
        first = sum((table(index)[..., 0] * w).sum(-1) for table, (index, w) in zip(weights, fields, strict=True))
        return torch.stack(embedded, -2), first

    def forward(self, user_fields, item_fields) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits [B, J] of B user sides ([B, m] fields) against J items each ([B, J, m]), and the L2 term."""
        eu, fu = self.side(self.user_vectors, self.user_weights, user_fields)  # [B, Fu, k], [B]
        ei, fi = self.side(self.item_vectors, self.item_weights, item_fields)  # [B, J, Fi, k], [B, J]
        total = eu.sum(-2)[:, None, :] + ei.sum(-2)
        squares = eu.pow(2).sum((-1, -2))[:, None] + ei.pow(2).sum((-1, -2))
        fm = self.bias + fu[:, None] + fi + 0.5 * (total.pow(2).sum(-1) - squares)
        # The first layer over the concatenated embeddings, split by side: the user's part once per row, not per item.
        first = self.hidden[0]
        width = eu.shape[-2] * eu.shape[-1]
        user_part = functional.linear(eu.flatten(-2), first.weight[:, :width], first.bias)
        item_part = functional.linear(ei.flatten(-2), first.weight[:, width:])
        deep = self.output(self.hidden[1:](user_part[:, None, :] + item_part))[..., 0]
        l2 = (eu.pow(2).sum() + ei.pow(2).sum()) / eu.shape[0]
        return fm + deep, l2


def train_network(examples: Examples, counts: np.ndarray, settings: Settings) -> dict[str, np.ndarray]:
    """Train on the positive events of ``examples``; ``counts`` are the items' positives (for sampling)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)  # small batches: threads wait on each other, and stall on a busy machine
    try:
        with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
            torch.manual_seed(settings.seed)  # seeded, and the caller's random state is restored after
            user_sizes = [f.size for f in (*examples.user_fields, *examples.event_fields)]
            net = DeepFMNetwork(user_sizes, [f.size for f in examples.item_fields], settings).to(device)
            if len(examples.items):
                fit_epochs(net, examples, counts, settings, device)
            net.eval()
    finally:
        torch.set_num_threads(threads)
    return {name: value.detach().cpu().numpy().astype(np.float32) for name, value in net.state_dict().items()}


def fit_epochs(net: DeepFMNetwork, examples: Examples, counts: np.ndarray, settings: Settings, device) -> None:
    rng = np.random.default_rng(settings.seed)
    sampled = counts.astype(np.float64) ** settings.sample_alpha * (counts > 0)
    q = sampled / sampled.sum()
    cdf = np.cumsum(q)
    logq = np.log(np.maximum(settings.negative_samples * q, 1e-12)).astype(np.float32)
    tensors = {
        "user": [_pair(f, device) for f in examples.user_fields],
        "event": [_pair(f, device) for f in examples.event_fields],
        "item": [_pair(f, device) for f in examples.item_fields],
    }
    logq_t = torch.from_numpy(logq).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=settings.learning_rate)
    n, size = len(examples.items), settings.batch_size
    labels = torch.zeros(1 + settings.negative_samples, device=device)
    labels[0] = 1.0
    for _ in range(settings.epochs):
        net.train()
        for batch in np.array_split(rng.permutation(n), max(1, -(-n // size))):
            negatives = np.minimum(
                np.searchsorted(cdf, rng.random((len(batch), settings.negative_samples))), len(q) - 1
            )
            items = np.concatenate([examples.items[batch, None], negatives], 1)
            users = examples.users[batch].copy()
            items_id = items.copy()
            if settings.id_dropout > 0:
                users[rng.random(len(users)) < settings.id_dropout] = examples.unknown_user
                items_id[rng.random(items.shape) < settings.id_dropout] = examples.unknown_item
            users_t = torch.from_numpy(examples.users[batch]).to(device)
            events_t = torch.from_numpy(examples.events[batch]).to(device)
            items_t = torch.from_numpy(items).to(device)
            user_fields = [(index[users_t], weight[users_t]) for index, weight in tensors["user"]]
            user_fields[0] = (torch.from_numpy(users).to(device)[:, None], user_fields[0][1])  # ids after dropout
            user_fields += [(index[events_t], weight[events_t]) for index, weight in tensors["event"]]
            item_fields = [(index[items_t], weight[items_t]) for index, weight in tensors["item"]]
            item_fields[0] = (torch.from_numpy(items_id).to(device)[..., None], item_fields[0][1])
            logits, l2 = net(user_fields, item_fields)
            logits = logits - settings.logq * logq_t[items_t]
            loss = functional.binary_cross_entropy_with_logits(logits, labels.expand_as(logits), reduction="sum")
            loss = (loss + settings.l2_regularization * l2 * len(batch)) / len(batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


def _pair(field: Field, device) -> tuple[torch.Tensor, torch.Tensor]:
    return (
        torch.from_numpy(np.ascontiguousarray(field.index, dtype=np.int64)).to(device),
        torch.from_numpy(np.ascontiguousarray(field.weight, dtype=np.float32)).to(device),
    )


def serving_arrays(weights: dict[str, np.ndarray], examples: Examples, counts: np.ndarray, settings: Settings) -> dict:
    """What serving keeps, as the recipe's attributes: numpy weights and each item's side computed once.

    Ids without training events (and, at serving, users and items the model never saw) read their
    table's unknown row; history items never read in training add nothing to a history.
    """
    n_static, n_users = len(examples.user_fields), len(examples.user_fields[0].index)
    k = settings.embedding_dimension
    layers = [
        (weights[f"hidden.{3 * j}.weight"], weights[f"hidden.{3 * j}.bias"]) for j in range(settings.hidden_layers)
    ]
    width = (n_static + len(examples.event_fields)) * k
    first_layer = layers[0][0]
    out: dict[str, Any] = {
        "first_user_": first_layer[:, :width],
        "first_bias_": layers[0][1],
        "layers_": layers[1:],
        "output_": (weights["output.weight"][0], float(weights["output.bias"][0])),
        "bias_": float(weights["bias"][0]),
    }

    def table(side: str, j: int) -> tuple[np.ndarray, np.ndarray]:
        return weights[f"{side}_vectors.{j}.weight"], weights[f"{side}_weights.{j}.weight"][:, 0]

    item_tables = [table("item", j) for j in range(len(examples.item_fields))]
    ids = np.where(counts > 0, np.arange(len(counts)), examples.unknown_item)[:, None]
    fields = [(ids, np.ones(ids.shape, np.float32)), *((f.index, f.weight) for f in examples.item_fields[1:])]
    out["item_sum_"], out["item_const_"], out["item_deep_"] = item_side(
        *pool(item_tables, fields), first_layer[:, width:]
    )
    cold = [(np.array([[examples.unknown_item]]), np.ones((1, 1), np.float32))]
    cold += [(np.zeros((1, 1), np.int64), np.zeros((1, 1), np.float32)) for _ in fields[1:]]
    out["cold_item_"] = item_side(*pool(item_tables, cold), first_layer[:, width:])

    trained = np.zeros(n_users, dtype=bool)
    trained[examples.users] = True
    ids = np.append(np.where(trained, np.arange(n_users), examples.unknown_user), examples.unknown_user)[:, None]
    out["user_trained_"] = trained
    out["user_id_vectors_"], out["user_id_first_"] = pool([table("user", 0)], [(ids, np.ones(ids.shape, np.float32))])
    fields = [
        (np.vstack([f.index, f.index[:1] * 0]), np.vstack([f.weight, f.weight[:1] * 0]))
        for f in examples.user_fields[1:]
    ]
    out["user_meta_vectors_"], out["user_meta_first_"] = pool(
        [table("user", j) for j in range(1, n_static)], fields, rows=n_users + 1, k=k
    )
    out["user_has_metadata_"] = np.zeros(n_users + 1, dtype=bool)
    for _, weight in fields:
        out["user_has_metadata_"] |= (weight > 0).any(1)

    event_tables = [table("user", n_static + j) for j in range(len(examples.event_fields))]
    out["history_vectors_"] = None
    context = list(zip(event_tables, examples.event_fields, strict=True))
    if context and context[0][1].name == "HISTORY":
        (vectors, first), field = context.pop(0)
        read = field.weight[examples.events] > 0
        known = np.zeros(len(vectors), dtype=bool)
        known[field.index[examples.events][read]] = True
        out["history_vectors_"] = np.where(known[:, None], vectors, 0).astype(np.float32)
        out["history_first_"] = np.where(known, first, 0).astype(np.float32)
        out["history_known_"] = known
    out["context_tables_"] = []
    for (vectors, first), field in context:  # an absent value reads as the training events' mean
        read = field.weight[examples.events, 0] > 0
        share = np.bincount(field.index[examples.events, 0][read], minlength=len(vectors)).astype(np.float64)
        share /= max(share.sum(), 1.0)
        out["context_tables_"].append((vectors, first, (share @ vectors).astype(np.float32), float(share @ first)))
    return out


def pool(tables, fields, rows: int = 1, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Rows' field embeddings [rows, F, k] and summed first-order terms [rows] from token indexes and weights."""
    if not fields:
        return np.zeros((rows, 0, k), np.float32), np.zeros(rows, np.float32)
    vectors = np.stack([(v[index] * w[..., None]).sum(1) for (v, _), (index, w) in zip(tables, fields, strict=True)], 1)
    first = sum((f[index] * w).sum(1) for (_, f), (index, w) in zip(tables, fields, strict=True))
    return vectors.astype(np.float32), np.asarray(first, np.float32)


def item_side(vectors: np.ndarray, first: np.ndarray, first_layer: np.ndarray):
    """Per item: the FM's S_i, its item-only terms, and the first layer's item part."""
    total = vectors.sum(1)
    const = first + 0.5 * ((total**2).sum(1) - (vectors**2).sum((1, 2)))
    deep = vectors.reshape(len(vectors), -1) @ first_layer.T
    return total.astype(np.float32), const.astype(np.float32), deep.astype(np.float32)
