r"""The discriminator: tells windows of the mapped AA trajectory ("real", label 1) from windows of
CG runs ("generated", label 0).

Each bead of a window gets a feature vector that is invariant to global translation and
rotation, bead permutation and periodic images (docs/method.md §4); a per-bead network maps it to a logit
:math:`s_i(w)`, and :math:`D_i(w) = \sigma(s_i(w))`. The loss is binary cross-entropy averaged
over beads (the per-bead outputs are pooled by averaging the loss), and the generator's
non-saturating loss is :math:`\ell_i(w) = -\log D_i(w)`, averaged over beads. Because every
:math:`\ell_i` depends only on bead i and its neighbours, the estimator can localise the score
(:mod:`advcg.estimator`).

Per-bead features (K lags; nearest neighbours found with the minimum image):

* window displacement :math:`|x_i(t_k) - x_i(t_0)|`, k = 1..K (window centre-of-mass drift removed);
* turning cosines between consecutive displacements :math:`x_i(t_{k}) - x_i(t_{k-1})`;
* distances to the ``n_neighbors`` nearest beads at the window start and end (sorted);
* cosines of the angles j-i-k among the ``n_angle_neighbors`` nearest beads at start and end (sorted);
* smooth coordination numbers within ``coordination_cutoff`` at start and end;
* distances at the end to the start's ``n_angle_neighbors`` nearest beads (cage persistence), and
  the displacement of bead i relative to the mean displacement of that cage.

No feature is a kinetic target: the network decides what separates the two sets.
"""

from __future__ import annotations

import logging
import math
import pickle
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from advcg.io import atomic_path
from advcg.windows import Windows

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DiscriminatorSettings:
    """``training.discriminator`` of the configuration: optimiser ``steps`` per round,
    ``batch_size`` beads per batch (half AA, half CG), Adam ``learning_rate``, and the ``hidden``
    layer widths of the per-bead network."""

    steps: int
    batch_size: int
    learning_rate: float
    hidden: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 2 or not self.learning_rate > 0 or not self.hidden \
                or min(self.hidden) < 1:
            raise ValueError(f"training.discriminator: need steps >= 1, batch_size >= 2, learning_rate "
                             f"> 0 and hidden widths >= 1, got {self}")


@dataclass(frozen=True)
class FeatureSpec:
    """Settings of the per-bead window features."""

    n_neighbors: int = 6
    n_angle_neighbors: int = 4
    coordination_cutoff: float = 3.3
    coordination_width: float = 0.1

    def n_features(self, n_lags: int) -> int:
        """Length of each bead's feature vector for windows with ``n_lags`` lags."""
        m = self.n_angle_neighbors
        n_angles = m * (m - 1) // 2
        return n_lags + (n_lags - 1) + 2 * self.n_neighbors + 2 * n_angles + 2 + m + 1


def _minimum_image(dx: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    return dx - box * torch.round(dx / box)


#: Largest number of pair distances held at once by :func:`_neighbours` (~100 B each with the
#: temporaries of the minimum-image differences).
_NEIGHBOUR_BLOCK = 2**22


def _neighbours(frame: torch.Tensor, box: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Distances ``(W, N, k)`` and indices of the k nearest beads of every bead in ``frame`` (W, N, 3).

    Rows are processed in blocks of at most :data:`_NEIGHBOUR_BLOCK` distances, so memory stays
    bounded for large N (a full ``(W, N, N, 3)`` difference array needs ~50 GB at 32,768 beads)."""
    n_w, n, _ = frame.shape
    rows = max(1, _NEIGHBOUR_BLOCK // max(1, n_w * n))
    values, indices = [], []
    for lo in range(0, n, rows):
        hi = min(lo + rows, n)
        diff = _minimum_image(frame[:, None, :, :] - frame[:, lo:hi, None, :], box[:, None, None, :])
        dist = diff.norm(dim=-1)                                  # (W, hi - lo, N)
        own = torch.arange(lo, hi)
        dist[:, own - lo, own] = math.inf
        block_values, block_index = torch.topk(dist, k, dim=-1, largest=False)
        values.append(block_values)
        indices.append(block_index)
    return torch.cat(values, dim=1), torch.cat(indices, dim=1)


def _gather_beads(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``values`` (W, N, 3) gathered at ``index`` (W, N, k) -> (W, N, k, 3)."""
    n_w, n, k = index.shape
    flat = index.reshape(n_w, n * k, 1).expand(-1, -1, 3)
    return torch.gather(values, 1, flat).reshape(n_w, n, k, 3)


def _angle_cosines(frame: torch.Tensor, box: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Sorted cosines of all angles j-i-k among the neighbours ``index`` of each bead."""
    vec = _minimum_image(_gather_beads(frame, index) - frame[:, :, None, :], box[:, None, None, :])
    unit = vec / vec.norm(dim=-1, keepdim=True)
    cos = unit @ unit.transpose(-1, -2)
    m = index.shape[-1]
    iu = torch.triu_indices(m, m, offset=1)
    return torch.sort(cos[..., iu[0], iu[1]], dim=-1).values


def _coordination(dist: torch.Tensor, cutoff: float, width: float) -> torch.Tensor:
    return torch.sigmoid((cutoff - dist) / width).sum(dim=-1, keepdim=True)


def window_features(windows: Windows, spec: FeatureSpec = FeatureSpec(),
                    chunk: int = 16) -> torch.Tensor:
    """Per-bead features of every window: ``(n_windows, n_beads, spec.n_features(K))`` float32."""
    out = []
    positions = torch.as_tensor(windows.positions, dtype=torch.float64)
    boxes = torch.as_tensor(windows.box, dtype=torch.float64)
    for lo in range(0, windows.n_windows, chunk):
        out.append(_features(positions[lo:lo + chunk], boxes[lo:lo + chunk], spec))
    return torch.cat(out).to(torch.float32)


def _features(pos: torch.Tensor, box: torch.Tensor, spec: FeatureSpec) -> torch.Tensor:
    n_w, k1, n, _ = pos.shape
    com = pos.mean(dim=2, keepdim=True)
    pos = pos - (com - com[:, :1])                       # remove the window's centre-of-mass drift
    disp = pos[:, 1:] - pos[:, :1]                         # (W, K, N, 3)
    steps = pos[:, 1:] - pos[:, :-1]
    feats = [disp.norm(dim=-1).transpose(1, 2)]            # (W, N, K)
    if k1 > 2:
        cos_turn = torch.nn.functional.cosine_similarity(steps[:, 1:], steps[:, :-1], dim=-1, eps=1e-12)
        feats.append(cos_turn.transpose(1, 2))             # (W, N, K-1)
    first, last = pos[:, 0], pos[:, -1]
    n_nb = max(spec.n_neighbors, spec.n_angle_neighbors)
    for frame in (first, last):
        dist, index = _neighbours(frame, box, n_nb)
        feats.append(dist[..., :spec.n_neighbors])
        feats.append(_angle_cosines(frame, box, index[..., :spec.n_angle_neighbors]))
        feats.append(_coordination(dist, spec.coordination_cutoff, spec.coordination_width))
        if frame is first:
            cage = index[..., :spec.n_angle_neighbors]
    cage_end = _minimum_image(_gather_beads(last, cage) - last[:, :, None, :], box[:, None, None, :])
    feats.append(torch.sort(cage_end.norm(dim=-1), dim=-1).values)
    cage_disp = _gather_beads(disp[:, -1], cage).mean(dim=2)
    feats.append((disp[:, -1] - cage_disp).norm(dim=-1, keepdim=True))
    return torch.cat(feats, dim=-1)


class Discriminator(nn.Module):
    """Per-bead MLP on standardised window features; returns logits ``(..., n_beads)``."""

    def __init__(self, n_features: int, hidden: tuple[int, ...] = (64, 64)) -> None:
        super().__init__()
        self.n_features = n_features
        self.hidden = tuple(hidden)
        layers: list[nn.Module] = []
        width = n_features
        for h in self.hidden:
            layers += [nn.Linear(width, h), nn.SiLU()]
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)
        self.register_buffer("feature_mean", torch.zeros(n_features))
        self.register_buffer("feature_std", torch.ones(n_features))

    def set_standardisation(self, features: torch.Tensor) -> None:
        """Fix the feature mean and spread from reference features ``(..., n_features)``."""
        flat = features.reshape(-1, self.n_features)
        self.feature_mean.copy_(flat.mean(dim=0))
        self.feature_std.copy_(flat.std(dim=0).clamp_min(1e-6))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        z = (features - self.feature_mean) / self.feature_std
        return self.net(z).squeeze(-1)


@dataclass
class TrainingLog:
    """Curves of one discriminator training: loss per step, held-out accuracy and loss."""

    loss: list[float] = field(default_factory=list)
    val_accuracy: float = float("nan")
    val_loss: float = float("nan")
    val_accuracy_real: float = float("nan")
    val_accuracy_generated: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def train_discriminator(model: Discriminator, real: torch.Tensor, generated: torch.Tensor,
                        n_steps: int, batch_size: int = 2048, lr: float = 1e-3,
                        val_fraction: float = 0.2, seed: int = 0,
                        optimizer_state: dict | None = None) -> tuple[TrainingLog, dict]:
    """Train ``model`` with BCE on per-bead features of real (AA) and generated (CG) windows.

    Windows (not beads) are split into training and held-out sets, so held-out beads come from
    windows the network never saw. Batches are balanced between the two classes.

    Returns
    -------
    The training log and the optimiser's state (to resume next round).
    """
    if real.shape[-1] != model.n_features or generated.shape[-1] != model.n_features:
        raise ValueError(f"discriminator: features must have {model.n_features} columns")
    gen = torch.Generator().manual_seed(seed)

    def split(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        order = torch.randperm(x.shape[0], generator=gen)
        n_val = max(1, int(round(val_fraction * x.shape[0]))) if x.shape[0] > 1 else 0
        return (x[order[n_val:]].reshape(-1, x.shape[-1]), x[order[:n_val]].reshape(-1, x.shape[-1]))

    real_train, real_val = split(real)
    gen_train, gen_val = split(generated)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    if optimizer_state:
        optimizer.load_state_dict(optimizer_state)
    bce = nn.BCEWithLogitsLoss()
    log = TrainingLog()
    half = batch_size // 2
    model.train()
    for _ in range(n_steps):
        xr = real_train[torch.randint(len(real_train), (half,), generator=gen)]
        xg = gen_train[torch.randint(len(gen_train), (half,), generator=gen)]
        logits = model(torch.cat([xr, xg]))
        labels = torch.cat([torch.ones(half), torch.zeros(half)])
        loss = bce(logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        log.loss.append(loss.item())
    model.eval()
    if len(real_val) and len(gen_val):
        with torch.no_grad():
            lr_, lg_ = model(real_val), model(gen_val)
            acc_r = float((lr_ > 0).float().mean())
            acc_g = float((lg_ < 0).float().mean())
            log.val_accuracy_real, log.val_accuracy_generated = acc_r, acc_g
            log.val_accuracy = 0.5 * (acc_r + acc_g)
            log.val_loss = 0.5 * float(bce(lr_, torch.ones_like(lr_)) + bce(lg_, torch.zeros_like(lg_)))
    logger.info("discriminator: %d steps, final loss %.4f, held-out accuracy %.3f (real %.3f, CG %.3f)",
                n_steps, log.loss[-1] if log.loss else float("nan"), log.val_accuracy,
                log.val_accuracy_real, log.val_accuracy_generated)
    return log, optimizer.state_dict()


def generator_losses(model: Discriminator, features: torch.Tensor) -> np.ndarray:
    r"""Per-bead non-saturating generator loss :math:`\ell_i = -\log D_i = \mathrm{softplus}(-s_i)`,
    ``(n_windows, n_beads)`` float64."""
    with torch.no_grad():
        return nn.functional.softplus(-model(features)).double().numpy()


def save_discriminator(path: str | Path, model: Discriminator, optimizer_state: dict | None,
                       extra: dict[str, Any] | None = None) -> None:
    """Checkpoint the network, its architecture and the optimiser state atomically."""
    with atomic_path(path) as tmp:
        torch.save({"n_features": model.n_features, "hidden": list(model.hidden),
                    "state_dict": model.state_dict(), "optimizer": optimizer_state,
                    "extra": extra or {}}, tmp)


def load_discriminator(path: str | Path) -> tuple[Discriminator, dict | None, dict[str, Any]]:
    """Load a checkpoint written by :func:`save_discriminator`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"discriminator checkpoint {path} does not exist")
    try:
        data = torch.load(path, weights_only=True)
        if not isinstance(data, dict):
            raise ValueError("not a dict")
        model = Discriminator(int(data["n_features"]), tuple(data["hidden"]))
        model.load_state_dict(data["state_dict"])
    except (KeyError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as exc:
        raise ValueError(f"discriminator checkpoint {path} is unreadable or incomplete: {exc}") from exc
    model.eval()
    return model, data.get("optimizer"), data.get("extra", {})
