"""The network of CNN-QR in torch: a causal dilated CNN encoder and a multi-horizon quantile decoder.

After Wen et al., "A Multi-Horizon Quantile Recurrent Forecaster" (MQ-CNN, arXiv 1711.11053), the
model behind Amazon Forecast's CNN-QR. The encoder reads the context window (scaled target,
observed flags, time features, age, historical related series) through stacked causal
convolutions with dilations 1, 2, 4, ...; its last step and the static features (embeddings of
the series id and categorical metadata, numeric metadata, the log scale) make a global context,
and one local context per horizon step. The decoder reads, for each step, the global context,
that step's local context and the step's known future covariates (time features, age,
forward-looking related series) and outputs every training quantile at once. Quantiles are a
base value plus cumulative softplus increments, so they never cross. Training minimises the
quantile (pinball) loss of every observed value of the horizon.

Torch lives only here and in ``cnn_qr.py``'s fit and predict; importing the package loads neither.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from pipelines.forecast.deepar_network import CLIP_GRADIENT, embedding_dim


class CNNQRNetwork(nn.Module):
    def __init__(
        self,
        n_past: int,
        n_future: int,
        cardinalities: list[int],
        n_static_real: int,
        horizon: int,
        levels: np.ndarray,
        channels: int = 32,
        dilations: tuple[int, ...] = (1, 2, 4, 8, 16, 32),
        local_dim: int = 16,
        hidden: int = 64,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.horizon, self.local_dim = horizon, local_dim
        self.register_buffer("levels", torch.as_tensor(np.asarray(levels), dtype=torch.float32))
        self.embeddings = nn.ModuleList(nn.Embedding(c, embedding_dim(c)) for c in cardinalities)
        n_static = sum(embedding_dim(c) for c in cardinalities) + n_static_real
        self.dilations = dilations
        self.convs = nn.ModuleList(
            nn.Conv1d(n_past if k == 0 else channels, channels, kernel_size=2, dilation=d)
            for k, d in enumerate(dilations)
        )
        self.dropout = nn.Dropout(dropout)
        self.context = nn.Sequential(nn.Linear(channels + n_static, hidden), nn.ReLU())
        self.global_out = nn.Linear(hidden, hidden)
        self.local_out = nn.Linear(hidden, horizon * local_dim)
        self.decoder = nn.Sequential(
            nn.Linear(hidden + local_dim + n_future + n_static, hidden),
            nn.ReLU(),
            nn.Linear(hidden, len(levels)),
        )

    def static(self, codes: torch.Tensor, reals: torch.Tensor) -> torch.Tensor:
        parts = [table(codes[:, j]) for j, table in enumerate(self.embeddings)]
        return torch.cat([*parts, reals], dim=-1)

    def forward(self, past: torch.Tensor, future: torch.Tensor, static: torch.Tensor) -> torch.Tensor:
        """Quantiles (batch, horizon, levels) in scaled units from past (batch, steps, features) and
        future (batch, horizon, features) inputs."""
        x = past.transpose(1, 2)
        for conv, dilation in zip(self.convs, self.dilations, strict=True):
            out = functional.relu(conv(functional.pad(x, (dilation, 0))))  # causal: pad on the left only
            x = out + x if out.shape[1] == x.shape[1] else out
            x = self.dropout(x)
        encoded = x[:, :, -1] if x.shape[2] else torch.zeros(x.shape[:2], device=x.device)
        hidden = self.context(torch.cat([encoded, static], dim=-1))
        glob = functional.relu(self.global_out(hidden))[:, None, :].expand(-1, self.horizon, -1)
        local = functional.relu(self.local_out(hidden)).view(-1, self.horizon, self.local_dim)
        steps = torch.cat([glob, local, future, static[:, None, :].expand(-1, self.horizon, -1)], dim=-1)
        raw = self.decoder(steps)
        increments = functional.softplus(raw[..., 1:])
        return torch.cat([raw[..., :1], raw[..., :1] + torch.cumsum(increments, dim=-1)], dim=-1)


def quantile_loss(quantiles: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, levels: torch.Tensor):
    """Mean pinball loss over levels and observed steps."""
    error = target[..., None] - quantiles
    loss = torch.maximum(levels * error, (levels - 1) * error).mean(dim=-1)
    return (loss * weight).sum() / weight.sum().clamp(min=1.0)


@dataclass
class Batch:
    past: np.ndarray  # (batch, context, features) float32
    future: np.ndarray  # (batch, horizon, features) float32
    codes: np.ndarray  # (batch, categorical columns) int64
    reals: np.ndarray  # (batch, static reals) float32
    target: np.ndarray  # (batch, horizon) float32, scaled, 0 where unobserved
    weight: np.ndarray  # (batch, horizon) float32
    scale: np.ndarray  # (batch,) float32

    def to(self, device) -> dict[str, torch.Tensor]:
        return {name: torch.from_numpy(getattr(self, name)).to(device) for name in self.__dataclass_fields__}


def train(
    net: CNNQRNetwork,
    sample_batch: Callable[[int, np.random.Generator], Batch],
    epochs: int,
    batches: int,
    batch_size: int,
    learning_rate: float,
    rng: np.random.Generator,
    device,
    patience: int = 10,
    stop: Callable[[], bool] = lambda: False,
) -> list[float]:
    """Adam over ``epochs`` of ``batches`` random windows, stopping early after ``patience`` epochs
    without a better mean loss, or when ``stop()`` says so after an epoch; the mean loss of each epoch."""
    optimizer = torch.optim.Adam(net.parameters(), lr=learning_rate)
    history, best, waited = [], math.inf, 0
    net.train()
    for _ in range(epochs):
        total = 0.0
        for _ in range(batches):
            batch = sample_batch(batch_size, rng).to(device)
            quantiles = net(batch["past"], batch["future"], net.static(batch["codes"], batch["reals"]))
            loss = quantile_loss(quantiles, batch["target"], batch["weight"], net.levels)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), CLIP_GRADIENT)
            optimizer.step()
            total += loss.item()
        history.append(total / batches)
        if history[-1] < best - 1e-4:
            best, waited = history[-1], 0
        else:
            waited += 1
            if waited >= patience:
                break
        if stop():
            break
    net.eval()
    return history


@torch.no_grad()
def predict(net: CNNQRNetwork, batch: Batch, device) -> np.ndarray:
    """Quantiles (batch, horizon, levels) in the series' own units."""
    inputs = batch.to(device)
    quantiles = net(inputs["past"], inputs["future"], net.static(inputs["codes"], inputs["reals"]))
    return (quantiles * inputs["scale"][:, None, None]).cpu().numpy().astype("float64")
