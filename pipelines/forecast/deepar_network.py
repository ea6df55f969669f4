"""The network of DeepAR+ in torch: an LSTM that outputs a distribution for the next value.

Salinas et al., "DeepAR: Probabilistic forecasting with autoregressive recurrent networks"
(arXiv 1704.04110). At each step the LSTM reads the lagged target values (divided by the
series' scale), their observed flags, the covariates of that step (time features, age, related
series) and the static features of the series (embeddings of its id and of its categorical
metadata, numeric metadata, its log scale), and a linear head turns its state into the
parameters of the likelihood. Training maximises the likelihood of every observed value of a
window given the true values before it (teacher forcing); forecasting feeds each sampled value
back in as the next step's lag (ancestral sampling).

Torch lives only here and in ``deepar.py``'s fit and predict; importing the package loads neither.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.distributions import NegativeBinomial, Normal, StudentT
from torch.nn import functional

LIKELIHOODS = {"student-t": 3, "gaussian": 2, "negative-binomial": 2}  # name -> distribution parameters
CLIP_GRADIENT = 10.0  # GluonTS' default: keeps a heavy-tailed batch from throwing the weights off
FEEDBACK_LIMIT = 100.0  # a sampled value fed back as a lag stays within this many scales


def embedding_dim(cardinality: int) -> int:
    """GluonTS' rule of thumb: half the categories, at most 50."""
    return max(1, min(50, (cardinality + 1) // 2))


class DeepARNetwork(nn.Module):
    def __init__(
        self,
        n_dynamic: int,
        cardinalities: list[int],
        n_static_real: int,
        num_cells: int,
        num_layers: int,
        likelihood: str,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.likelihood = likelihood
        self.embeddings = nn.ModuleList(nn.Embedding(c, embedding_dim(c)) for c in cardinalities)
        n_static = sum(embedding_dim(c) for c in cardinalities) + n_static_real
        self.rnn = nn.LSTM(
            n_dynamic + n_static, num_cells, num_layers, batch_first=True, dropout=dropout if num_layers > 1 else 0.0
        )
        self.head = nn.Linear(num_cells, LIKELIHOODS[likelihood])

    def static(self, codes: torch.Tensor, reals: torch.Tensor) -> torch.Tensor:
        """(batch, static features): the embeddings of each categorical column, then the reals."""
        parts = [table(codes[:, j]) for j, table in enumerate(self.embeddings)]
        return torch.cat([*parts, reals], dim=-1)

    def forward(self, dynamic: torch.Tensor, static: torch.Tensor, state=None):
        """Distribution parameters for each step of ``dynamic`` (batch, steps, features), and the LSTM state."""
        inputs = torch.cat([dynamic, static[:, None, :].expand(-1, dynamic.shape[1], -1)], dim=-1)
        output, state = self.rnn(inputs, state)
        return self.head(output), state


def distribution(likelihood: str, raw: torch.Tensor, scale: torch.Tensor):
    """The predictive distribution in the series' own units, from the head's output and the scale.

    Student-t and Gaussian are located and scaled by the series' scale ``v``; the negative binomial
    takes the paper's parametrisation: mean ``v * softplus(.)``, shape ``softplus(.) / sqrt(v)``.
    """
    if likelihood == "student-t":
        df = 2.0 + functional.softplus(raw[..., 2])
        return StudentT(df, raw[..., 0] * scale, (functional.softplus(raw[..., 1]) + 1e-6) * scale, validate_args=False)
    if likelihood == "gaussian":
        return Normal(raw[..., 0] * scale, (functional.softplus(raw[..., 1]) + 1e-6) * scale, validate_args=False)
    mean = (functional.softplus(raw[..., 0]) + 1e-6) * scale
    alpha = (functional.softplus(raw[..., 1]) + 1e-6) / torch.sqrt(scale)
    return NegativeBinomial(total_count=1.0 / alpha, logits=torch.log(mean * alpha), validate_args=False)


def negative_log_likelihood(likelihood: str, raw: torch.Tensor, target: torch.Tensor, scale: torch.Tensor):
    """Per-step loss. Location-scale likelihoods are scored on ``target / v`` (the same gradients, and
    losses of series of any size on one footing); the negative binomial on the counts themselves."""
    if likelihood == "negative-binomial":
        return -distribution(likelihood, raw, scale).log_prob(target)
    return -distribution(likelihood, raw, torch.ones_like(scale)).log_prob(target / scale)


@dataclass
class Batch:
    """One batch of windows as numpy arrays; ``to`` moves it onto the training device."""

    dynamic: np.ndarray  # (batch, steps, features) float32
    codes: np.ndarray  # (batch, categorical columns) int64
    reals: np.ndarray  # (batch, static reals) float32
    target: np.ndarray  # (batch, steps) float32, 0 where unobserved
    weight: np.ndarray  # (batch, steps) float32: 1 where observed
    scale: np.ndarray  # (batch,) float32

    def to(self, device) -> dict[str, torch.Tensor]:
        return {name: torch.from_numpy(getattr(self, name)).to(device) for name in self.__dataclass_fields__}


@dataclass
class TrainingSettings:
    epochs: int
    num_batches_per_epoch: int
    batch_size: int
    learning_rate: float
    learning_rate_decay: float
    max_learning_rate_decays: int
    patience: int


def train(
    net: DeepARNetwork,
    sample_batch: Callable[[int, np.random.Generator], Batch],
    settings: TrainingSettings,
    rng: np.random.Generator,
    device,
    on_epoch: Callable[[int, float], None] | None = None,
    stop: Callable[[], bool] = lambda: False,
) -> list[float]:
    """Adam over ``epochs`` of ``num_batches_per_epoch`` random windows (fewer where ``stop()`` says so
    after an epoch); the mean loss of each epoch.

    As Forecast's DeepAR+, the learning rate is multiplied by ``learning_rate_decay`` when the
    epoch loss has not improved for ``patience`` epochs, at most ``max_learning_rate_decays`` times.
    """
    optimizer = torch.optim.Adam(net.parameters(), lr=settings.learning_rate, weight_decay=1e-8)
    history, best, waited, decays = [], math.inf, 0, 0
    net.train()
    for epoch in range(settings.epochs):
        total = 0.0
        for _ in range(settings.num_batches_per_epoch):
            batch = sample_batch(settings.batch_size, rng).to(device)
            static = net.static(batch["codes"], batch["reals"])
            raw, _ = net(batch["dynamic"], static)
            loss_steps = negative_log_likelihood(net.likelihood, raw, batch["target"], batch["scale"][:, None])
            weight = batch["weight"]
            loss = (loss_steps * weight).sum() / weight.sum().clamp(min=1.0)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), CLIP_GRADIENT)
            optimizer.step()
            total += loss.item()
        history.append(total / settings.num_batches_per_epoch)
        if on_epoch is not None:
            on_epoch(epoch, history[-1])
        if history[-1] < best - 1e-4:
            best, waited = history[-1], 0
        else:
            waited += 1
        if waited >= settings.patience and decays < settings.max_learning_rate_decays:
            decays, waited = decays + 1, 0
            for group in optimizer.param_groups:
                group["lr"] *= settings.learning_rate_decay
        if stop():
            break
    net.eval()
    return history


@torch.no_grad()
def sample_paths(
    net: DeepARNetwork,
    context: Batch,
    history: np.ndarray,
    history_seen: np.ndarray,
    future: np.ndarray,
    lags: np.ndarray,
    num_samples: int,
    device,
) -> np.ndarray:
    """Ancestral sampling: (series, samples, horizon) paths in the series' own units.

    ``context`` holds the context window's inputs (its steps are read with the true values);
    ``history`` (series, max lag) the scaled values just before the forecast start, and
    ``future`` (series, horizon, covariates) the covariates of the forecast steps.
    """
    batch = context.to(device)
    static = net.static(batch["codes"], batch["reals"])
    state = None
    if batch["dynamic"].shape[1]:
        _, state = net(batch["dynamic"], static)
        state = tuple(s.repeat_interleave(num_samples, dim=1) for s in state)
    rows = len(history) * num_samples
    horizon, max_lag = future.shape[1], history.shape[1]
    values = torch.zeros(rows, max_lag + horizon, device=device)
    seen = torch.zeros(rows, max_lag + horizon, device=device)
    values[:, :max_lag] = torch.from_numpy(history).to(device).repeat_interleave(num_samples, dim=0)
    seen[:, :max_lag] = torch.from_numpy(history_seen).to(device).repeat_interleave(num_samples, dim=0)
    covariates = torch.from_numpy(future).to(device).repeat_interleave(num_samples, dim=0)
    static = static.repeat_interleave(num_samples, dim=0)
    scale = batch["scale"].repeat_interleave(num_samples, dim=0)
    lag_index = torch.as_tensor(max_lag - lags, device=device)
    paths = torch.empty(rows, horizon, device=device)
    for step in range(horizon):
        positions = lag_index + step
        dynamic = torch.cat([values[:, positions], seen[:, positions], covariates[:, step]], dim=-1)
        raw, state = net(dynamic[:, None, :], static, state)
        draw = distribution(net.likelihood, raw[:, 0], scale).sample()
        draw = torch.clamp(draw, -FEEDBACK_LIMIT * scale, FEEDBACK_LIMIT * scale)
        paths[:, step] = draw
        values[:, max_lag + step] = draw / scale
        seen[:, max_lag + step] = 1.0
    return paths.reshape(len(history), num_samples, horizon).cpu().numpy().astype("float64")
