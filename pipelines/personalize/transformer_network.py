"""The self-attentive sequence network of the v2 recipes and its training, in torch (SASRec's kind).

SASRec (Kang & McAuley, ICDM 2018) reads a user's last ``max_length`` events left to right
with causal self-attention and, at every position, scores the catalog for the next item with
the dot product of its output and the items' vectors. Here, as the v2 recipes need:

- an item's vector is its id embedding plus the sum of its metadata tokens' embeddings (see
  ``transformer_features``), one table for the input and the output, so an item without
  events scores from its metadata. ``item_id_dropout`` of the catalog, drawn per batch, reads
  a learned "unknown item" row instead of its own id, as an item without events does: that
  row and the metadata learn to stand in for an id (DropoutNet's idea);
- each input position adds a position embedding (counted from the newest event, so the last
  position is always "now"), the time-gap bucket's and the event types' (a sum over the types
  a collapsed event had);
- blocks are pre-norm (layer norm, attention or feed-forward, residual), GELU in the
  feed-forward, dropout on embeddings, attention and residuals; a last layer norm.

The loss is cross-entropy at every position that has a target (a first interaction with an
item: repeats and padding weigh 0): over the whole catalog where it has at most
``full_softmax_max_items`` items, else a sampled softmax over the batch's targets and
``negative_samples`` items drawn by popularity ** ``sample_alpha`` (mixed negative sampling, Yi
et al. 2019), each logit corrected by the log of the item's chance of being among them (logQ,
Bengio & Senecal), so the model still estimates the full softmax. The batch's targets make the
other items that follow the same context negatives, which popularity sampling rarely draws.
With ``target_horizon`` above 1, a position's target is one of the next that many events, drawn
anew each epoch: the model learns what comes soon, not only next (Personalize's offline metrics
score a user's next tenth of events as a set).
The full softmax is computed ``SOFTMAX_ROWS`` positions at a time and its logits are computed
again in the backward pass instead of kept (``CatalogCrossEntropy``): the ``[positions, items]``
matrix never exists whole, which made the loss over 9,742 items 1.7 times faster on one thread
and keeps its memory at a few megabytes. AdamW with gradient clipping. Histories longer than the
window are cut into consecutive windows, so every event is a target once per epoch; windows of similar length
share a batch and the batch is cut to its longest window, so short histories cost little.

Early stopping: a seeded ``validation_fraction`` of users keeps its newest 10 % of events out
of training (Personalize's offline split, in time order); after each epoch the network ranks
the catalog for them, seen items left out, and the epoch with the best NDCG@25 is kept.
Training stops after ``patience`` epochs without improvement.

Torch lives only here, imported when a recipe trains; the weights leave as numpy, and
``encode`` in ``transformer`` mirrors ``SequenceNetwork.forward`` for one user in numpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from pipelines.personalize.transformer_features import GAP_BUCKETS, MAX_EVENT_TYPES, VALIDATION_CUTOFF

FEED_FORWARD = 2  # the feed-forward layer's width, in embedding dimensions
INFERENCE_BATCH = 256
SOFTMAX_ROWS = 128  # positions whose logits over the catalog are computed at once (64-128 were fastest)
# These matrices are small: a second thread halves no step, and on a busy machine threads wait on
# each other (a test's training took 20 times longer with 2 threads at load 10 on 2 cores).
THREADS = 1


@dataclass
class Settings:
    max_length: int
    dimension: int
    blocks: int
    heads: int
    dropout: float
    learning_rate: float
    weight_decay: float
    batch_size: int
    epochs: int
    patience: int
    negative_samples: int
    full_softmax_max_items: int
    sample_alpha: float
    item_id_dropout: float
    target_horizon: int
    validation_fraction: float
    seed: int


@dataclass
class Sequences:
    """Collapsed events, users' histories laid flat: user u's are ``[indptr[u], indptr[u + 1])``, oldest first.

    ``target`` weighs predicting each event (0: never a target, as a repeat or a validation event).
    """

    indptr: np.ndarray
    items: np.ndarray
    gaps: np.ndarray
    types: np.ndarray
    target: np.ndarray


@dataclass
class ItemTokens:
    """Per item, its metadata tokens (``[n_items, m]`` indexes and weights, weight 0 pads) and the token count."""

    index: np.ndarray
    weight: np.ndarray
    count: int


@dataclass
class Sampling:
    """Negatives' distribution (popularity ** alpha) and targets' (popularity).

    An item's expected count among a batch's candidates is ``negatives * share + targets *
    frequency``; candidates are unique, so the logQ correction is the log of the chance of being
    among them, ``1 - exp(-expected)``: a rare item's expected count, and 1 for an item that always is.
    """

    share: torch.Tensor
    frequency: torch.Tensor

    @classmethod
    def of(cls, counts: np.ndarray, alpha: float) -> Sampling:
        sampled = np.maximum(counts, 1) ** alpha
        return cls(torch.from_numpy(sampled / sampled.sum()), torch.from_numpy(counts / max(counts.sum(), 1)))


class CatalogCrossEntropy(torch.autograd.Function):
    """Per-row ``logsumexp(outputs @ vectors.T) - outputs . vectors[targets]``, ``SOFTMAX_ROWS`` rows at a time.

    The backward pass computes each chunk's logits again and turns them into the softmax's
    gradient at once, so neither the logits nor the probabilities of all rows are stored.
    """

    @staticmethod
    def forward(ctx, outputs: torch.Tensor, vectors: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        normalizer = torch.empty(outputs.shape[0], dtype=outputs.dtype, device=outputs.device)
        for k in range(0, outputs.shape[0], SOFTMAX_ROWS):
            normalizer[k : k + SOFTMAX_ROWS] = torch.logsumexp(outputs[k : k + SOFTMAX_ROWS] @ vectors.T, dim=1)
        ctx.save_for_backward(outputs, vectors, targets, normalizer)
        return normalizer - (outputs * vectors[targets]).sum(1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        outputs, vectors, targets, normalizer = ctx.saved_tensors
        grad_outputs, grad_vectors = torch.empty_like(outputs), torch.zeros_like(vectors)
        for k in range(0, outputs.shape[0], SOFTMAX_ROWS):
            rows = slice(k, k + SOFTMAX_ROWS)
            weighted = torch.exp(outputs[rows] @ vectors.T - normalizer[rows, None]).mul_(grad[rows, None])
            grad_outputs[rows] = weighted @ vectors
            grad_vectors.addmm_(weighted.T, outputs[rows])
        grad_outputs -= grad[:, None] * vectors[targets]
        grad_vectors.index_add_(0, targets, -grad[:, None] * outputs)
        return grad_outputs, grad_vectors, None


class Block(nn.Module):
    def __init__(self, dimension: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.norm1, self.norm2 = nn.LayerNorm(dimension), nn.LayerNorm(dimension)
        self.qkv = nn.Linear(dimension, 3 * dimension)
        self.proj = nn.Linear(dimension, dimension)
        self.ff1 = nn.Linear(dimension, FEED_FORWARD * dimension)
        self.ff2 = nn.Linear(FEED_FORWARD * dimension, dimension)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        batch, length, dimension = x.shape
        p = self.dropout if self.training else 0.0
        q, k, v = self.qkv(self.norm1(x)).view(batch, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        attended = functional.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=p)
        x = x + functional.dropout(
            self.proj(attended.transpose(1, 2).reshape(batch, length, dimension)), p, self.training
        )
        hidden = functional.gelu(self.ff1(self.norm2(x)), approximate="tanh")
        return x + functional.dropout(self.ff2(functional.dropout(hidden, p, self.training)), p, self.training)


class SequenceNetwork(nn.Module):
    """Item rows: 0 pads, 1..n are the items, n + 1 is the unknown item."""

    def __init__(self, n_items: int, tokens: ItemTokens | None, settings: Settings):
        super().__init__()
        d = settings.dimension
        self.n_items, self.settings = n_items, settings
        self.items = nn.Embedding(n_items + 2, d, padding_idx=0)
        nn.init.normal_(self.items.weight, std=d**-0.5)
        with torch.no_grad():
            self.items.weight[0].zero_()
        self.tokens = nn.Parameter(torch.randn(tokens.count, d) * d**-0.5) if tokens else None
        if tokens:
            self.register_buffer("token_index", torch.from_numpy(tokens.index), persistent=False)
            self.register_buffer("token_weight", torch.from_numpy(tokens.weight), persistent=False)
        self.positions = nn.Embedding(settings.max_length, d)
        nn.init.normal_(self.positions.weight, std=d**-0.5)
        self.gaps = nn.Embedding(GAP_BUCKETS, d)
        nn.init.zeros_(self.gaps.weight)  # a gap never seen in training (a return after months) adds nothing
        self.types = nn.Parameter(torch.zeros(MAX_EVENT_TYPES, d))
        self.blocks = nn.ModuleList(Block(d, settings.heads, settings.dropout) for _ in range(settings.blocks))
        self.norm = nn.LayerNorm(d)
        self.register_buffer("bits", 2 ** torch.arange(MAX_EVENT_TYPES, dtype=torch.int64), persistent=False)

    def item_vectors(self, items: torch.Tensor | None = None, dropped: torch.Tensor | None = None) -> torch.Tensor:
        """Vectors of catalog items (0-based; None: all), their id replaced by the unknown row where ``dropped``."""
        if items is None:
            items = torch.arange(self.n_items, device=self.items.weight.device)
        rows = items + 1
        if dropped is not None:
            rows = torch.where(dropped[items], torch.full_like(rows, self.n_items + 1), rows)
        vectors = self.items(rows)
        if self.tokens is not None:
            vectors = vectors + functional.embedding_bag(
                self.token_index[items], self.tokens, per_sample_weights=self.token_weight[items], mode="sum"
            )
        return vectors

    def forward(self, inputs, gaps, types, table: torch.Tensor) -> torch.Tensor:
        """Outputs ``[batch, length, d]`` of right-aligned windows (item rows, 0 pads); ``table``'s first row pads."""
        length = inputs.shape[1]
        slots = torch.arange(self.settings.max_length - length, self.settings.max_length, device=inputs.device)
        bits = ((types[..., None] & self.bits) != 0).to(self.types.dtype)
        x = table[inputs] + self.positions(slots) + self.gaps(gaps) + bits @ self.types
        x = functional.dropout(x, self.settings.dropout, self.training)
        valid = inputs != 0
        causal = torch.ones(length, length, dtype=torch.bool, device=inputs.device).tril()
        own = torch.eye(length, dtype=torch.bool, device=inputs.device)
        allowed = (causal & (valid[:, None, :] | own))[:, None]  # a pad position sees itself only: no empty rows
        for block in self.blocks:
            x = block(x, allowed)
        return self.norm(x)

    def padded_table(self, vectors: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.zeros_like(vectors[:1]), vectors])


def windows(firsts: np.ndarray, ends: np.ndarray, max_length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training windows ``(starts, stops, limits)`` over users' events ``[firsts[u], ends[u])`` (limits: ``ends``).

    A window's events are inputs, each followed by its target, so a window stops one event
    before the user's last. A history is cut from the newest event back: the newest window is
    full and every event but a user's first is a target once.
    """
    starts, stops, limits = [], [], []
    for first, end in zip(firsts.tolist(), ends.tolist(), strict=True):
        stop = end - 1
        while stop > first:
            start = max(first, stop - max_length)
            starts.append(start)
            stops.append(stop)
            limits.append(end)
            stop = start
    return tuple(np.asarray(values, np.int64) for values in (starts, stops, limits))


def batch_arrays(
    seqs: Sequences,
    starts: np.ndarray,
    stops: np.ndarray,
    limits: np.ndarray | None = None,
    horizon: int = 1,
    rng: np.random.Generator | None = None,
) -> dict[str, np.ndarray]:
    """Right-aligned inputs (item rows, 0 pads), gaps, types, targets (-1: none) and weights of some windows.

    Each position's target is the next event, or with ``horizon`` > 1 one of the next ``horizon``
    events drawn at random, before the window's ``limits`` (the user's end in training).
    """
    width = int((stops - starts).max())
    positions = stops[:, None] + np.arange(-width, 0)[None, :]
    valid = positions >= starts[:, None]
    at = np.where(valid, positions, 0)
    ahead = np.ones_like(positions)
    if horizon > 1 and rng is not None and limits is not None:
        reach = np.clip(np.minimum(horizon, limits[:, None] - 1 - positions), 1, None)
        ahead = 1 + (rng.random(positions.shape) * reach).astype(np.int64)
    following = np.where(valid, np.minimum(positions + ahead, len(seqs.items) - 1), 0)  # inference: to the end
    weights = np.where(valid, seqs.target[following], 0.0).astype(np.float32)
    return {
        "inputs": np.where(valid, seqs.items[at] + 1, 0),
        "gaps": np.where(valid, seqs.gaps[at], 0),
        "types": np.where(valid, seqs.types[at], 0),
        "targets": np.where(weights > 0, seqs.items[following], -1),
        "weights": weights,
    }


def validation_split(seqs: Sequences, fraction: float, rng: np.random.Generator) -> dict[int, tuple[int, np.ndarray]]:
    """Per validation user, the number of events kept as input and the held-out items (their newest 10 %)."""
    lengths = np.diff(seqs.indptr)
    eligible = np.flatnonzero(lengths >= 3)
    count = min(len(eligible), round(fraction * len(eligible)))
    chosen = np.sort(rng.choice(eligible, size=count, replace=False)) if count else eligible[:0]
    held: dict[int, tuple[int, np.ndarray]] = {}
    for u in chosen.tolist():
        start, n = int(seqs.indptr[u]), int(lengths[u])
        kept = min(max(1, n * 9 // 10), n - 1)
        truth = np.setdiff1d(seqs.items[start + kept : start + n], seqs.items[start : start + kept])
        if len(truth):
            held[u] = (kept, truth)
    return held


@dataclass
class Validation:
    """The validation slice as the kept network sees it: what the recipe chooses its blend on."""

    users: np.ndarray  # validation users (indexes)
    kept: np.ndarray  # per user, the events of its (collapsed) sequence read as input
    truths: list[np.ndarray]  # per user, the held-out items not in the input
    states: np.ndarray  # per user, the network's output after the input [users, d]


def train_network(seqs: Sequences, n_items: int, tokens: ItemTokens | None, settings: Settings):
    """Train; return ``(weights as numpy, users' final vectors [n_users, d], a training report, the
    validation slice with the kept network's outputs)``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(settings.seed)  # seeded; the caller's random state is restored after
            rng = np.random.default_rng(settings.seed)
            net = SequenceNetwork(n_items, tokens, settings)
            report, held = fit_epochs(net, seqs, settings, rng)
            net.eval()
            vectors = final_vectors(net, seqs, settings.max_length)
            users, states = held_states(net, seqs, held, settings.max_length, net.item_vectors())
    finally:
        torch.set_num_threads(threads)
    weights = {name: value.detach().numpy().astype(np.float32) for name, value in net.state_dict().items()}
    kept = np.array([held[u][0] for u in users.tolist()], np.int64)
    validation = Validation(users, kept, [held[u][1] for u in users.tolist()], states.numpy())
    return weights, vectors, report, validation


def fit_epochs(net: SequenceNetwork, seqs: Sequences, settings: Settings, rng: np.random.Generator):
    """Train for the epochs early stopping allows; ``(a report, the validation slice of validation_split)``."""
    held = validation_split(seqs, settings.validation_fraction, rng)
    train = Sequences(seqs.indptr, seqs.items, seqs.gaps, seqs.types, seqs.target.copy())
    for u, (kept, _) in held.items():
        train.target[seqs.indptr[u] + kept : seqs.indptr[u + 1]] = 0  # the future is not trained on
    ends = seqs.indptr[1:].copy()
    for u, (kept, _) in held.items():
        ends[u] = seqs.indptr[u] + kept  # validation users train on their input only
    starts, stops, limits = windows(seqs.indptr[:-1], ends, settings.max_length)
    report = {"windows": len(starts), "epochs": 0, "best_epoch": 0, "validation_ndcg": None, "full_softmax": False,
              "validation_by_epoch": []}  # fmt: skip
    if len(starts) == 0:
        return report, held
    counts = np.bincount(train.items[train.target > 0], minlength=net.n_items).astype(np.float64)
    full = net.n_items <= settings.full_softmax_max_items
    report["full_softmax"] = full
    sampling = None if full else Sampling.of(counts, settings.sample_alpha)
    optimizer = torch.optim.AdamW(net.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    best, best_state, waited = -math.inf, None, 0
    for epoch in range(settings.epochs):
        net.train()
        for batch in batches(starts, stops, settings.batch_size, rng):
            picked = batch_arrays(train, starts[batch], stops[batch], limits[batch], settings.target_horizon, rng)
            arrays = {k: torch.from_numpy(v) for k, v in picked.items()}
            loss = batch_loss(net, arrays, sampling, settings, rng)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            optimizer.step()
        report["epochs"] = epoch + 1
        if not held:
            continue
        score = validation_ndcg(net, seqs, held, settings.max_length)
        report["validation_by_epoch"].append(round(score, 6))
        if score > best:
            best, waited, report["best_epoch"] = score, 0, epoch + 1
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            waited += 1
            if waited >= settings.patience:
                break
    if best_state is not None:
        net.load_state_dict(best_state)
        report["validation_ndcg"] = round(best, 6)
    return report, held


def batches(starts: np.ndarray, stops: np.ndarray, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Windows of similar length together (sorted with a random tie-break), the batches in random order."""
    lengths = stops - starts
    order = np.lexsort((rng.random(len(lengths)), lengths))
    groups = [order[k : k + size] for k in range(0, len(order), size)]
    return [groups[k] for k in rng.permutation(len(groups))]


def batch_loss(net: SequenceNetwork, arrays: dict, sampling: Sampling | None, settings: Settings, rng) -> torch.Tensor:
    """Weighted cross-entropy of the batch's targets: over the catalog, or (``sampling``) over sampled candidates."""
    dropped = None
    if net.tokens is not None and settings.item_id_dropout > 0:
        dropped = torch.from_numpy(rng.random(net.n_items) < settings.item_id_dropout)
    targets, weights = arrays["targets"], arrays["weights"]
    scored = targets >= 0
    positive = targets[scored]
    if sampling is None:
        vectors = net.item_vectors(None, dropped)
        outputs = net(arrays["inputs"], arrays["gaps"], arrays["types"], net.padded_table(vectors))
        per_row = CatalogCrossEntropy.apply(outputs[scored], vectors, positive)
    else:
        negatives = torch.from_numpy(rng.choice(net.n_items, size=settings.negative_samples, p=sampling.share.numpy()))
        candidates, where = torch.unique(torch.cat([positive, negatives]), return_inverse=True)
        present = arrays["inputs"][arrays["inputs"] > 0] - 1
        needed = torch.unique(torch.cat([present, candidates]))
        vectors = net.item_vectors(needed, dropped)
        lookup = torch.zeros(net.n_items + 1, dtype=torch.int64)
        lookup[needed + 1] = torch.arange(1, len(needed) + 1)
        outputs = net(lookup[arrays["inputs"]], arrays["gaps"], arrays["types"], net.padded_table(vectors))
        expected = (
            settings.negative_samples * sampling.share[candidates] + len(positive) * sampling.frequency[candidates]
        )
        included = -torch.expm1(-expected.float())  # the chance an item is among the (unique) candidates
        logits = outputs[scored] @ vectors[lookup[candidates + 1] - 1].T - torch.log(included)
        per_row = functional.cross_entropy(logits, where[: len(positive)], reduction="none")
    return (per_row * weights[scored]).sum() / weights[scored].sum()


@torch.no_grad()
def encode_last(net: SequenceNetwork, seqs: Sequences, firsts: np.ndarray, ends: np.ndarray, max_length: int, table):
    """Outputs at the newest position of the windows ``[max(firsts, ends - max_length), ends)``."""
    out = np.zeros((len(ends), net.settings.dimension), np.float32)
    for k in range(0, len(ends), INFERENCE_BATCH):
        stop, first = ends[k : k + INFERENCE_BATCH], firsts[k : k + INFERENCE_BATCH]
        start = np.maximum(first, stop - max_length)
        arrays = batch_arrays(seqs, start, stop)
        outputs = net(*(torch.from_numpy(arrays[key]) for key in ("inputs", "gaps", "types")), table)
        out[k : k + INFERENCE_BATCH] = outputs[:, -1].numpy()
    return out


@torch.no_grad()
def validation_ndcg(net: SequenceNetwork, seqs: Sequences, held: dict, max_length: int) -> float:
    """Mean NDCG@25 of the held-out items over the catalog, the input's items left out."""
    net.eval()
    vectors = net.item_vectors()
    users, states = held_states(net, seqs, held, max_length, vectors)
    scores = (states @ vectors.T).numpy()
    cutoff = min(VALIDATION_CUTOFF, net.n_items)
    discounts = 1 / np.log2(np.arange(2, cutoff + 2))
    total = 0.0
    for row, u in enumerate(users.tolist()):
        kept, truth = held[u]
        scores[row, seqs.items[seqs.indptr[u] : seqs.indptr[u] + kept]] = -np.inf
        top = np.argpartition(-scores[row], cutoff - 1)[:cutoff]
        top = top[np.argsort(-scores[row, top], kind="stable")]
        gains = np.isin(top, truth) * discounts
        total += gains.sum() / discounts[: min(cutoff, len(truth))].sum()
    return total / len(users)


@torch.no_grad()
def held_states(net: SequenceNetwork, seqs: Sequences, held: dict, max_length: int, vectors: torch.Tensor):
    """The validation users (indexes) and the network's outputs after their inputs."""
    users = np.fromiter(held, np.int64, len(held))
    firsts = seqs.indptr[users]
    ends = firsts + np.array([held[u][0] for u in users.tolist()], np.int64)
    if not len(users):
        return users, torch.zeros((0, net.settings.dimension))
    return users, torch.from_numpy(encode_last(net, seqs, firsts, ends, max_length, net.padded_table(vectors)))


@torch.no_grad()
def final_vectors(net: SequenceNetwork, seqs: Sequences, max_length: int) -> np.ndarray:
    """Every user's output after their newest event (zeros for users without events): what serving starts from."""
    firsts, ends = seqs.indptr[:-1], seqs.indptr[1:]
    vectors = np.zeros((len(ends), net.settings.dimension), np.float32)
    active = np.flatnonzero(ends > firsts)
    if len(active):
        table = net.padded_table(net.item_vectors())
        vectors[active] = encode_last(net, seqs, firsts[active], ends[active], max_length, table)
    return vectors
