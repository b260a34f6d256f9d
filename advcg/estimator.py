r"""The reweighting estimator: gradients of window averages with respect to the CG parameters.

LAMMPS is not differentiable, so gradients come from the score-function identity (docs/method.md §5)

.. math::

    \nabla_\vartheta\, \mathbb E_w[\ell(w)] = \mathbb E_w\big[(\ell(w) - b)\, S(w)\big],\qquad
    S = \nabla \log p_\mathrm{eq}(x^0) + \nabla \log p_\mathrm{path}(w \mid x^{-1}, x^0),

for :math:`\vartheta = (\theta, \vartheta_\mathrm{dyn})` (the potential's parameters, then the
dynamics' own, e.g. log γ: :class:`advcg.parameters.ParameterSpace`), with a baseline :math:`b`
that does not depend on :math:`w`.

* Thermodynamic part: :math:`\nabla_\theta \log p_\mathrm{eq}(x) = -\beta\,(\partial_\theta U(x) -
  \langle \partial_\theta U\rangle_\theta)`; the average is taken over the windows' starts.
* Path part, from the dynamics' exact path law (:meth:`advcg.dynamics.Dynamics.path_terms`):
  :math:`\nabla_\theta \log p_\mathrm{path} = \sum_n w^n\cdot \partial_\theta F_\theta(x^n)` with
  the force weights :math:`w^n = \partial\log p/\partial F^n` (Langevin: :math:`R^n/\sigma^2`), and
  the dynamics' own parameters' scores per bead.

Window averages here are averages of per-bead quantities, :math:`\ell(w) = \frac1N\sum_i \ell_i(w)`,
and :math:`\ell_i` depends on bead i's neighbourhood only. The score is therefore *localised*: bead
i's term is weighted with the score contributions of the beads within ``localisation_radius`` of i
at the window start,

.. math::

    G(w) = \frac1N \sum_i (\ell_i - b) \sum_{j:\,|x_i^0 - x_j^0| < r_\mathrm{loc}} s_j(w)
         = \frac1N \sum_j A_j\, s_j(w),\qquad A_j = \sum_{i:\,|x_i^0-x_j^0|<r_\mathrm{loc}} (\ell_i - b),

where :math:`s_j` is bead j's share of the score (its noise terms, and its share of the energy).
Every :math:`s_j` has zero mean, so any radius keeps the baseline unbiased; a finite radius drops
the far-away score terms, trading a small bias for a large cut in variance
(``localisation_radius = inf`` gives the exact global score). The weighted sums are single scalar
functions of :math:`\theta`, so one backward pass per chunk of steps gives the whole gradient.

Diagnostics reported with every estimate: the per-parameter standard error over windows, the
signal-to-noise ratio, and the Kish effective sample size of the reweighting weights
:math:`\exp(\Delta\vartheta \cdot S^\mathrm{global}(w))` for a proposed step.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from advcg.dynamics import Dynamics
from advcg.potential.neighbors import build_pairs

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EstimatorSpec:
    """Settings of the estimator.

    Parameters
    ----------
    localisation_radius
        r_loc of the θ score, Å (``math.inf``: global score, unbiased but noisy).
    dynamics_localisation_radius
        r_loc of the dynamics parameters' score (log γ), Å; 0 keeps each bead's own noise terms
        only. A bead's window loss depends on its own random forces at first order and on its
        neighbours' only through the forces they exert, while every bead's γ score carries the
        full χ²-fluctuation (R²/σ² − 1)/2 of its 3 × n_steps noise terms; widening the radius
        adds mostly that noise (measured in ``tests/test_estimator.py``'s gradient check).
    chunk_steps
        MD steps whose forces are evaluated in one batch (memory vs speed).
    baseline
        ``"leave_one_out"``: b for window w is the mean loss of the other windows; ``"none"``: b = 0.
    """

    localisation_radius: float
    dynamics_localisation_radius: float
    chunk_steps: int = 25
    baseline: str = "leave_one_out"

    def __post_init__(self) -> None:
        if not self.localisation_radius > 0:
            raise ValueError(f"estimator: localisation_radius must be > 0 Å, got {self.localisation_radius}")
        if not self.dynamics_localisation_radius >= 0:
            raise ValueError("estimator: dynamics_localisation_radius must be >= 0 Å, got "
                             f"{self.dynamics_localisation_radius}")
        if self.chunk_steps < 1:
            raise ValueError(f"estimator: chunk_steps must be >= 1, got {self.chunk_steps}")
        if self.baseline not in ("leave_one_out", "none"):
            raise ValueError(f"estimator: baseline must be leave_one_out or none, got {self.baseline!r}")


@dataclass
class GradientEstimate:
    """A score-function gradient estimate with its diagnostics.

    Attributes
    ----------
    names : list of str
        Parameter names: the potential's, then the dynamics' (ϑ order).
    per_window : (n_windows, n_params)
        G(w) for every window; the estimate is their mean.
    thermo, path : (n_params,)
        The thermodynamic and path parts of the mean.
    global_scores : (n_windows, n_params)
        The unweighted, global score S(w) of each window (for the effective sample size).
    value : float
        Mean of the window averages of the per-bead quantity.
    """

    names: list[str]
    per_window: np.ndarray
    thermo: np.ndarray
    path: np.ndarray
    global_scores: np.ndarray
    value: float
    value_standard_error: float
    extra: dict = field(default_factory=dict)

    @property
    def gradient(self) -> np.ndarray:
        return self.per_window.mean(axis=0)

    @property
    def standard_error(self) -> np.ndarray:
        n = len(self.per_window)
        return self.per_window.std(axis=0, ddof=1) / math.sqrt(n) if n > 1 else np.full(len(self.names), np.inf)

    @property
    def snr(self) -> np.ndarray:
        """|gradient| / standard error, per parameter."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.abs(self.gradient) / self.standard_error

    @property
    def global_snr(self) -> float:
        """‖gradient‖ / sqrt(Σ standard error²): signal-to-noise of the whole gradient vector."""
        noise = math.sqrt(np.sum(self.standard_error**2))
        return float(np.linalg.norm(self.gradient) / noise) if noise > 0 else math.nan

    def effective_sample_size(self, step: np.ndarray) -> float:
        """Kish ESS of the reweighting weights exp(step · S(w)) for a parameter change ``step``."""
        log_w = self.global_scores @ np.asarray(step, dtype=float)
        log_w -= log_w.max()
        w = np.exp(log_w)
        return float(w.sum() ** 2 / np.sum(w**2))

    def summary(self) -> dict:
        """Plain numbers for metrics files."""
        return {"names": self.names, "gradient": self.gradient.tolist(),
                "standard_error": self.standard_error.tolist(), "snr": self.snr.tolist(),
                "global_snr": self.global_snr, "n_windows": int(len(self.per_window)),
                "value": self.value, "value_standard_error": self.value_standard_error, **self.extra}


def localisation_weights(start: np.ndarray, box: np.ndarray, centred_losses: np.ndarray,
                         radius: float) -> np.ndarray:
    """:math:`A_j = \\sum_{i: |x_i - x_j| < r} a_i` for one window start ``(n_beads, 3)``
    (minimum-image distances; i = j included, so ``radius = 0`` gives :math:`A_j = a_j`)."""
    a = np.asarray(centred_losses, dtype=np.float64)
    if radius == 0:
        return a.copy()
    if math.isinf(radius):
        return np.full(len(start), a.sum())
    i, j = build_pairs(torch.as_tensor(start, dtype=torch.float64),
                       torch.as_tensor(box, dtype=torch.float64), radius)
    a_t = torch.as_tensor(a)
    weights = a_t.clone()
    weights.index_add_(0, i, a_t[j])
    weights.index_add_(0, j, a_t[i])
    return weights.numpy()


def _parameters_in_theta_order(potential: torch.nn.Module) -> list[torch.Tensor]:
    """The potential's parameter tensors, checked to flatten into θ in ``parameter_names`` order."""
    params = list(potential.parameters())
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    if flat.shape != potential.theta.shape or not torch.equal(flat, potential.theta):
        raise ValueError("estimator: the potential's parameters do not flatten into θ in order")
    return params


def _theta_gradient(value: torch.Tensor, params: list[torch.Tensor], retain_graph: bool = False
                    ) -> np.ndarray:
    """∂value/∂θ, flattened in ``parameter_names`` order."""
    grads = torch.autograd.grad(value, params, retain_graph=retain_graph, allow_unused=True)
    return torch.cat([torch.zeros_like(p).reshape(-1) if g is None else g.reshape(-1)
                      for p, g in zip(params, grads)]).numpy()


def _baselines(losses: np.ndarray, kind: str) -> np.ndarray:
    window_means = losses.mean(axis=1)
    n = len(window_means)
    if kind == "none" or n < 2:
        return np.zeros(n)
    return (window_means.sum() - window_means) / (n - 1)


def estimate_gradient(potential: torch.nn.Module, paths: np.ndarray, box: np.ndarray,
                      losses: np.ndarray, dynamics: Dynamics, spec: EstimatorSpec,
                      auxiliary: dict[str, np.ndarray] | None = None,
                      forces: np.ndarray | None = None) -> GradientEstimate:
    """Estimate ∇ of the window average of per-bead ``losses`` w.r.t. ϑ = (θ, dynamics' own).

    Parameters
    ----------
    potential
        The CG potential (:class:`advcg.potential.CGPotential`): ``forces(x, box, create_graph)``,
        ``bead_energies(x, box)``, ``parameter_names()`` and its parameters θ.
    paths : (n_windows, n_steps + 2, n_beads, 3)
        Per-step unwrapped positions of each window from one step before its start
        (:class:`advcg.recording.Recording`), Å.
    box : (3,)
        Box edges, Å.
    losses : (n_windows, n_beads)
        The per-bead quantity ℓ_i(w) whose window average is differentiated (the generator loss,
        or an observable in the gradient checks).
    dynamics
        The dynamics the paths were run with.
    auxiliary
        The dynamics' recorded state at every window step (``Recording.auxiliary``), if any.
    forces : (n_windows, n_steps + 2, n_beads, 3), optional
        The conservative forces LAMMPS had at every window step (``Recording.path_forces``): the
        forces of the path law, not recomputed (else they are computed from ``potential``).
    """
    paths = np.asarray(paths, dtype=np.float64)
    losses = np.asarray(losses, dtype=np.float64)
    if forces is not None and np.shape(forces) != paths.shape:
        raise ValueError(f"estimator: forces must have the paths' shape {paths.shape}, got {np.shape(forces)}")
    n_windows, n_path, n_beads, _ = paths.shape
    if losses.shape != (n_windows, n_beads):
        raise ValueError(f"estimator: losses must be ({n_windows}, {n_beads}), got {losses.shape}")
    if n_path < 3:
        raise ValueError("estimator: paths need at least one MD step (3 positions)")
    if not np.all(np.isfinite(losses)):
        raise ValueError("estimator: losses contain NaN or inf")
    own = [p.name for p in dynamics.parameters()]
    names = list(potential.parameter_names()) + own
    n_theta, n_own = potential.n_parameters, len(own)
    params = _parameters_in_theta_order(potential)
    auxiliary = auxiliary or {}

    beta = 1.0 / dynamics.kT
    box_t = torch.as_tensor(np.asarray(box, dtype=np.float64))
    baselines = _baselines(losses, spec.baseline)

    thermo_weighted = np.zeros((n_windows, n_theta))   # d/dθ Σ_j A_j u_j(x0)
    thermo_total = np.zeros((n_windows, n_theta))      # d/dθ U(x0)
    weight_sums = np.zeros(n_windows)                  # Σ_j A_j
    path_weighted = np.zeros((n_windows, n_theta + n_own))
    path_global = np.zeros((n_windows, n_theta + n_own))

    for w in range(n_windows):
        centred = losses[w] - baselines[w]
        weights = localisation_weights(paths[w, 1], box, centred, spec.localisation_radius)
        own_weights = torch.as_tensor(
            localisation_weights(paths[w, 1], box, centred, spec.dynamics_localisation_radius))
        weight_sums[w] = weights.sum()
        a_t = torch.as_tensor(weights)
        x0 = torch.as_tensor(paths[w, 1])
        u = potential.bead_energies(x0, box_t)
        thermo_weighted[w] = _theta_gradient((a_t * u).sum(), params, retain_graph=True)
        thermo_total[w] = _theta_gradient(u.sum(), params)

        weights_t = a_t[None, :, None]
        # one Verlet list for the whole window (rebuilt only where beads moved half the skin);
        # chunks of at most chunk_steps steps that each use one of its pair lists
        window_list = potential.neighbor_list(torch.as_tensor(paths[w, 1:-1]), box_t)
        for start, stop in window_list.spans(spec.chunk_steps):
            lo, hi = start + 1, stop + 1
            x = torch.as_tensor(paths[w, lo - 1:hi + 1])      # steps lo-1 .. hi
            inner = x[1:-1]
            geometry = potential.geometry(inner, box_t, neighbors=window_list.frames(lo - 1, hi - 1))
            if forces is None:
                step_forces = potential.forces(inner, box_t, neighbors=geometry)
            else:
                step_forces = torch.as_tensor(forces[w, lo:hi])
            aux = {name: torch.as_tensor(value[w, lo - 1:hi + 1]) for name, value in auxiliary.items()}
            terms = dynamics.path_terms(x, step_forces, aux)
            # θ: Σ_n Σ_j A_j w^n·∂F/∂θ   and the unweighted global version, in one pass
            scaled = terms.force_weights
            both = potential.force_parameter_vjp(inner, box_t, torch.stack([weights_t * scaled, scaled]),
                                                 neighbors=geometry).sum(dim=1).numpy()
            path_weighted[w, :n_theta] += both[0]
            path_global[w, :n_theta] += both[1]
            # the dynamics' own parameters, per bead
            for k, per_bead in enumerate(terms.bead_scores):
                path_weighted[w, n_theta + k] += float((own_weights * per_bead).sum())
                path_global[w, n_theta + k] += float(per_bead.sum())

    mean_bead_gradient = thermo_total.mean(axis=0) / n_beads          # <∂u_j/∂θ>
    thermo = np.zeros((n_windows, n_theta + n_own))
    thermo[:, :n_theta] = -beta * (thermo_weighted - weight_sums[:, None] * mean_bead_gradient)
    per_window = (thermo + path_weighted) / n_beads
    global_scores = path_global.copy()
    global_scores[:, :n_theta] += -beta * (thermo_total - thermo_total.mean(axis=0))

    window_values = losses.mean(axis=1)
    estimate = GradientEstimate(
        names=names, per_window=per_window, thermo=thermo.mean(axis=0) / n_beads,
        path=path_weighted.mean(axis=0) / n_beads, global_scores=global_scores,
        value=float(window_values.mean()),
        value_standard_error=float(window_values.std(ddof=1) / math.sqrt(n_windows)) if n_windows > 1 else math.inf,
        extra={"localisation_radius": spec.localisation_radius,
               "dynamics_localisation_radius": spec.dynamics_localisation_radius})
    logger.info("estimator: %d windows x %d steps x %d beads; gradient SNR %.2f",
                n_windows, n_path - 2, n_beads, estimate.global_snr)
    return estimate
