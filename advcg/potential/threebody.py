r"""Three-body terms of Stillinger–Weber form.

.. math::

    E_3 = \sum_i \sum_{j<k \in \mathrm{nbr}(i)}
      \exp\!\left(\frac{\gamma\sigma}{r_{ij} - a\sigma}\right)
      \exp\!\left(\frac{\gamma\sigma}{r_{ik} - a\sigma}\right) g(\theta_{jik}),
    \qquad r_{ij}, r_{ik} < a\sigma

which is LAMMPS's ``sw`` three-body term (with ``g = λε(cos θ − cos θ0)²``) and
``sw/angle/table``'s :math:`\phi_3` (with ``g = f^{3b}(θ)`` read from an angle table).

Fixed radial constants (buffers), taken from LAMMPS's coarse-grained SPC/E example
``examples/PACKAGES/manybody_table``: its ``spce.3b`` uses a 3.7 Å three-body cutoff, and the
VOTCA force-matching settings that produced its ``sw/angle/table`` model
(``csg-tutorials/spce/3body_sw/fmatch.xml``) use :math:`a\sigma` = 0.37 nm and
:math:`\gamma\sigma` = 0.08 nm. With :math:`\sigma` = 1 Å this is ``a = 3.7``, ``γ = 0.8``: the
screening switches on over ≈ 0.8 Å inside the first RDF minimum and vanishes smoothly (with all
derivatives) at 3.7 Å.

Two variants (:data:`VARIANTS`):

* ``sw``: :math:`g = \lambda\varepsilon(\cos\theta - \cos\theta_0)^2`, learned :math:`\lambda`
  and :math:`\cos\theta_0`, :math:`\varepsilon` = 1 kcal/mol fixed;
* ``sw/angle/table``: :math:`g(\theta) = \sum_m a_m B_m(\theta)`, a cubic B-spline on uniform
  knots over :math:`[0, \pi]` (radians) with learned coefficients :math:`a_m`.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
from torch import nn

from advcg.potential.bspline import coefficient_tensor, interval_and_offset, local_basis
from advcg.potential.scratch import Scratch

logger = logging.getLogger(__name__)

__all__ = ["ThreeBody", "SWThreeBody", "AngleTableThreeBody", "VARIANTS", "DEFAULT_SIGMA",
           "DEFAULT_A", "DEFAULT_GAMMA", "DEFAULT_EPSILON", "DEFAULT_LAMBDA",
           "DEFAULT_COS_THETA0", "DEFAULT_ANGLE_INTERVALS"]

#: The three-body variants, named after the LAMMPS pair style that runs them.
VARIANTS = ("sw", "sw/angle/table")

#: SW length unit σ, Å.
DEFAULT_SIGMA = 1.0
#: SW cutoff in units of σ (aσ = 3.7 Å).
DEFAULT_A = 3.7
#: SW screening γ (γσ = 0.8 Å).
DEFAULT_GAMMA = 0.8
#: SW energy unit ε, kcal/mol.
DEFAULT_EPSILON = 1.0
#: Initial λ of the ``sw`` variant (learned).
DEFAULT_LAMBDA = 10.0
#: Initial cos θ0 of the ``sw`` variant (tetrahedral, learned).
DEFAULT_COS_THETA0 = -1.0 / 3.0
#: Knot intervals of the angle spline over [0, π] (10° spacing).
DEFAULT_ANGLE_INTERVALS = 18

# |cos θ| is clamped below 1 by this much before acos and 1/sin θ (θ ≈ 1.4e-6 rad from collinear).
_COS_MARGIN = 1e-12


class ThreeBody(nn.Module):
    r"""Base of the SW-form three-body terms: the radial screening and the force assembly.

    Subclasses define the angular factor :math:`g(\cos\theta)` via :meth:`angular` and its
    parameter derivatives via :meth:`angular_parameter_terms`.

    Parameters
    ----------
    sigma, a, gamma
        Radial constants (Å, unitless, unitless), fixed.
    """

    variant: str = ""

    def __init__(self, sigma: float = DEFAULT_SIGMA, a: float = DEFAULT_A,
                 gamma: float = DEFAULT_GAMMA) -> None:
        super().__init__()
        for name, value in (("sigma", sigma), ("a", a), ("gamma", gamma)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"three-body {name} must be finite and > 0, got {value}")
        self.register_buffer("sigma", torch.tensor(float(sigma), dtype=torch.float64))
        self.register_buffer("a", torch.tensor(float(a), dtype=torch.float64))
        self.register_buffer("gamma", torch.tensor(float(gamma), dtype=torch.float64))

    @property
    def cutoff(self) -> float:
        r"""Three-body cutoff :math:`a\sigma`, Å."""
        return float(self.a * self.sigma)

    @staticmethod
    def radial(r: torch.Tensor, sigma_gamma: float, cutoff: float) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Screening factor and its derivative.

        .. math::

            f(r) = \exp\!\left(\frac{\gamma\sigma}{r - a\sigma}\right),\quad
            f'(r) = -\frac{\gamma\sigma}{(r - a\sigma)^2} f(r)\quad (r < a\sigma;\ 0 \text{ beyond})

        Parameters
        ----------
        r
            Distances ``(...)``, Å.

        Returns
        -------
        f, df
            ``(...)``; ``df`` per Å.
        """
        d = r - cutoff
        inside = d < 0.0
        safe = torch.where(inside, d, -torch.ones_like(d))
        e = torch.exp(sigma_gamma / safe)
        zero = torch.zeros_like(d)
        return torch.where(inside, e, zero), torch.where(inside, -sigma_gamma / (safe * safe) * e, zero)

    def angular(self, cos_theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Angular factor :math:`g` and :math:`dg/d\cos\theta`, each shaped like ``cos_theta``."""
        raise NotImplementedError

    def angular_out(self, cos_theta: torch.Tensor, g: torch.Tensor, g_c: torch.Tensor) -> None:
        r""":meth:`angular` written into ``g`` and ``g_c`` (no graph); subclasses avoid temporaries."""
        with torch.no_grad():
            value, slope = self.angular(cos_theta)
            g.copy_(value)
            g_c.copy_(slope)

    def angular_parameter_terms(self, cos_theta: torch.Tensor
                                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        r"""Local parameter derivatives of :math:`g` and :math:`dg/d\cos\theta`.

        Parameters
        ----------
        cos_theta
            Any shape ``(...)``.

        Returns
        -------
        index
            ``(..., L)`` int64 indices into this term's parameter vector.
        dg, dg_dcos
            ``(..., L)``: :math:`\partial g/\partial\theta_p` and
            :math:`\partial^2 g/\partial\theta_p\,\partial\cos\theta`.
        """
        raise NotImplementedError

    def add_parameter_terms(self, cos_theta: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                            rows: torch.Tensor | None, out: torch.Tensor, scratch: Scratch) -> None:
        r"""Accumulate :math:`\partial g/\partial\theta_p\, a + \partial g_c/\partial\theta_p\, b`
        into rows of ``out`` (no graph).

        Parameters
        ----------
        cos_theta
            ``(q, n)``: triplets by frames.
        a, b
            ``(n_sets, q, n)``.
        rows
            ``(q, n)`` int64 row of each entry, or ``None`` for the frame index (summed over the
            triplets).
        out
            ``(n_sets, n_rows * n_parameters)``; entry ``row * n_parameters + p``.
        """
        n3 = self.n_parameters
        index, dg, dgc = self.angular_parameter_terms(cos_theta)   # (q, n, L)
        if rows is None:
            rows = torch.arange(cos_theta.shape[1], device=cos_theta.device).expand_as(cos_theta)
        bins = ((rows * n3).unsqueeze(-1) + index).reshape(-1)
        for k in range(a.shape[0]):
            values = dg * a[k].unsqueeze(-1) + dgc * b[k].unsqueeze(-1)
            out[k].index_add_(0, bins, values.reshape(-1))

    def parameter_vector(self) -> torch.Tensor:
        """This term's learned parameters as one ``(n_parameters,)`` tensor (in graph)."""
        raise NotImplementedError

    def parameter_names(self) -> list[str]:
        """Names of the entries of :meth:`parameter_vector`."""
        raise NotImplementedError

    def set_parameter_vector(self, values: torch.Tensor) -> None:
        """Copy ``values`` into the parameters (no graph)."""
        raise NotImplementedError

    @property
    def n_parameters(self) -> int:
        """Number of learned parameters."""
        return len(self.parameter_names())

    def to_dict(self) -> dict:
        """JSON-ready description (constants and values)."""
        raise NotImplementedError

    def legs(self, r1: torch.Tensor, r2: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Screening factors and derivatives of both legs."""
        sg = float(self.sigma * self.gamma)
        cut = self.cutoff
        f1, df1 = self.radial(r1, sg, cut)
        f2, df2 = self.radial(r2, sg, cut)
        return f1, df1, f2, df2


class SWThreeBody(ThreeBody):
    r"""``sw`` variant: :math:`g(\theta) = \lambda\varepsilon(\cos\theta - \cos\theta_0)^2`.

    Parameters
    ----------
    strength
        Initial :math:`\lambda` (unitless, learned; LAMMPS requires :math:`\lambda \ge 0`).
    cos_theta0
        Initial :math:`\cos\theta_0` (learned).
    epsilon
        :math:`\varepsilon`, kcal/mol, fixed.
    sigma, a, gamma
        Radial constants, see :class:`ThreeBody`.
    """

    variant = "sw"

    def __init__(self, strength: float = DEFAULT_LAMBDA, cos_theta0: float = DEFAULT_COS_THETA0,
                 epsilon: float = DEFAULT_EPSILON, sigma: float = DEFAULT_SIGMA,
                 a: float = DEFAULT_A, gamma: float = DEFAULT_GAMMA) -> None:
        super().__init__(sigma, a, gamma)
        for name, value in (("lambda", strength), ("cos_theta0", cos_theta0), ("epsilon", epsilon)):
            if not math.isfinite(value):
                raise ValueError(f"three-body {name} must be finite, got {value}")
        if epsilon <= 0:
            raise ValueError(f"three-body epsilon must be > 0, got {epsilon}")
        self.register_buffer("epsilon", torch.tensor(float(epsilon), dtype=torch.float64))
        self.strength = nn.Parameter(torch.tensor(float(strength), dtype=torch.float64))
        self.cos_theta0 = nn.Parameter(torch.tensor(float(cos_theta0), dtype=torch.float64))

    @staticmethod
    def compute(cos_theta: torch.Tensor, strength: torch.Tensor, cos_theta0: torch.Tensor,
                epsilon: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r""":math:`g = \lambda\varepsilon(c - c_0)^2` and :math:`dg/dc = 2\lambda\varepsilon(c - c_0)`."""
        delta = cos_theta - cos_theta0
        le = strength * epsilon
        return le * delta * delta, 2.0 * le * delta

    def angular(self, cos_theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.compute(cos_theta, self.strength, self.cos_theta0, self.epsilon)

    def angular_parameter_terms(self, cos_theta: torch.Tensor
                                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        delta = cos_theta - self.cos_theta0
        eps = self.epsilon
        dg = torch.stack([eps * delta * delta, -2.0 * self.strength * eps * delta], dim=-1)
        dgc = torch.stack([2.0 * eps * delta, (-2.0 * self.strength * eps).expand_as(delta)], dim=-1)
        index = torch.arange(2, device=cos_theta.device).expand(*cos_theta.shape, 2)
        return index, dg, dgc

    def add_parameter_terms(self, cos_theta: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                            rows: torch.Tensor | None, out: torch.Tensor, scratch: Scratch) -> None:
        # δ = cos θ - c0: ∂g/∂λ = εδ², ∂g_c/∂λ = 2εδ; ∂g/∂c0 = -2λεδ, ∂g_c/∂c0 = -2λε,
        # so the λ entry is εδ(δa + 2b) and the c0 entry -2λε(δa + b)
        epsilon = float(self.epsilon)
        strength = float(self.strength.detach())
        shape = tuple(cos_theta.shape)
        delta = scratch.get("sw.delta", shape)
        torch.sub(cos_theta, float(self.cos_theta0.detach()), out=delta)
        first = scratch.get("sw.first", shape)    # δa + b
        second = scratch.get("sw.second", shape)  # δ(δa + 2b)
        for k in range(a.shape[0]):
            torch.addcmul(b[k], delta, a[k], out=first)
            torch.add(first, b[k], out=second).mul_(delta)
            rows_k = out[k].view(-1, 2)
            if rows is None:
                rows_k[:, 0].add_(second.sum(0), alpha=epsilon)
                rows_k[:, 1].add_(first.sum(0), alpha=-2.0 * strength * epsilon)
            else:
                flat = rows.reshape(-1)
                rows_k[:, 0].index_add_(0, flat, second.view(-1), alpha=epsilon)
                rows_k[:, 1].index_add_(0, flat, first.view(-1), alpha=-2.0 * strength * epsilon)

    def angular_out(self, cos_theta: torch.Tensor, g: torch.Tensor, g_c: torch.Tensor) -> None:
        strength = float(self.strength.detach() * self.epsilon)
        torch.sub(cos_theta, float(self.cos_theta0.detach()), out=g_c)   # δ = cos θ - cos θ0
        torch.mul(g_c, g_c, out=g).mul_(strength)
        g_c.mul_(2.0 * strength)

    def parameter_vector(self) -> torch.Tensor:
        return torch.stack([self.strength, self.cos_theta0])

    def parameter_names(self) -> list[str]:
        return ["threebody.lambda", "threebody.cos_theta0"]

    def set_parameter_vector(self, values: torch.Tensor) -> None:
        with torch.no_grad():
            self.strength.copy_(values[0])
            self.cos_theta0.copy_(values[1])

    def to_dict(self) -> dict:
        return {"variant": self.variant, "sigma": float(self.sigma), "a": float(self.a),
                "gamma": float(self.gamma), "epsilon": float(self.epsilon),
                "lambda": float(self.strength.detach()), "cos_theta0": float(self.cos_theta0.detach())}

    def extra_repr(self) -> str:
        return (f"lambda={float(self.strength.detach()):.6g}, "
                f"cos_theta0={float(self.cos_theta0.detach()):.6g}, "
                f"cutoff={self.cutoff}")


class AngleTableThreeBody(ThreeBody):
    r"""``sw/angle/table`` variant: :math:`g(\theta) = \sum_m a_m B_m(\theta)`, cubic B-spline.

    Knots :math:`\theta_m = m h`, :math:`h = \pi/n`, ``n`` intervals, ``n + 3`` coefficients
    (every cubic B-spline that is non-zero on :math:`[0, \pi]`).

    Parameters
    ----------
    coefficients
        Initial :math:`a_m`, kcal/mol, shape ``(n_intervals + 3,)``; ``None``: the least-squares
        fit of :math:`\lambda\varepsilon(\cos\theta - \cos\theta_0)^2` with the ``sw`` defaults.
    n_intervals
        Knot intervals over :math:`[0, \pi]`.
    sigma, a, gamma
        Radial constants, see :class:`ThreeBody`.
    """

    variant = "sw/angle/table"

    def __init__(self, coefficients: torch.Tensor | np.ndarray | list[float] | None = None,
                 n_intervals: int = DEFAULT_ANGLE_INTERVALS, sigma: float = DEFAULT_SIGMA,
                 a: float = DEFAULT_A, gamma: float = DEFAULT_GAMMA) -> None:
        super().__init__(sigma, a, gamma)
        if int(n_intervals) < 1:
            raise ValueError(f"the angle spline needs >= 1 knot interval, got {n_intervals}")
        self.n_intervals = int(n_intervals)
        self.spacing = math.pi / self.n_intervals
        self.register_buffer("knots", torch.linspace(0.0, math.pi, self.n_intervals + 1, dtype=torch.float64))
        n = self.n_intervals + 3
        if coefficients is None:
            theta = torch.linspace(0.0, math.pi, 20 * self.n_intervals + 1, dtype=torch.float64)
            g = DEFAULT_EPSILON * DEFAULT_LAMBDA * (torch.cos(theta) - DEFAULT_COS_THETA0) ** 2
            values = self.fit_coefficients(theta, g, self.n_intervals)
        else:
            values = coefficient_tensor(coefficients, n, "angle-spline",
                                        f"{self.n_intervals} knot intervals")
        self.coefficients = nn.Parameter(values)

    @staticmethod
    def design(theta: torch.Tensor, n_intervals: int) -> torch.Tensor:
        r"""Dense basis matrix :math:`B_m(\theta_i)`, shape ``(len(theta), n_intervals + 3)``."""
        theta = torch.as_tensor(theta, dtype=torch.float64).reshape(-1)
        m, u = interval_and_offset(theta, 0.0, math.pi / n_intervals, n_intervals)
        values, _, _ = local_basis(u)
        index = m.unsqueeze(-1) + torch.arange(4)
        return theta.new_zeros(theta.numel(), n_intervals + 3).scatter_add_(1, index, values)

    @classmethod
    def fit_coefficients(cls, theta: torch.Tensor | np.ndarray, g: torch.Tensor | np.ndarray,
                         n_intervals: int = DEFAULT_ANGLE_INTERVALS) -> torch.Tensor:
        r"""Least-squares coefficients :math:`\min_a \sum_i (\sum_m a_m B_m(\theta_i) - g_i)^2`.

        Parameters
        ----------
        theta, g
            Angles in radians within :math:`[0, \pi]` and values in kcal/mol, shape ``(n,)``.
        """
        theta = torch.as_tensor(np.asarray(theta, dtype=np.float64)).reshape(-1)
        g = torch.as_tensor(np.asarray(g, dtype=np.float64)).reshape(-1)
        if theta.shape != g.shape or not (torch.isfinite(theta).all() and torch.isfinite(g).all()):
            raise ValueError("theta and g must be finite and of equal length")
        if (theta < 0).any() or (theta > math.pi).any():
            raise ValueError("theta must lie in [0, pi] (radians)")
        A = cls.design(theta, n_intervals)
        return torch.linalg.lstsq(A, g.unsqueeze(-1), driver="gelsd").solution.reshape(-1)

    @classmethod
    def fit(cls, theta: torch.Tensor | np.ndarray, g: torch.Tensor | np.ndarray,
            n_intervals: int = DEFAULT_ANGLE_INTERVALS, **constants: float) -> AngleTableThreeBody:
        """A new term whose spline is the least-squares fit to ``g(theta)`` (radians, kcal/mol)."""
        return cls(cls.fit_coefficients(theta, g, n_intervals), n_intervals, **constants)

    def evaluate_theta(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        r""":math:`g(\theta)`, :math:`g'(\theta)`, :math:`g''(\theta)` (per radian) for θ in [0, π]."""
        theta = torch.as_tensor(theta, dtype=torch.float64)
        m, u = interval_and_offset(theta, 0.0, self.spacing, self.n_intervals)
        values, first, second = local_basis(u)
        c = self.coefficients[m.unsqueeze(-1) + torch.arange(4, device=theta.device)]
        return ((c * values).sum(-1), (c * first).sum(-1) / self.spacing,
                (c * second).sum(-1) / self.spacing ** 2)

    def _theta(self, cos_theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = cos_theta.clamp(-1.0 + _COS_MARGIN, 1.0 - _COS_MARGIN)
        return torch.acos(c), torch.sqrt(1.0 - c * c)

    def angular(self, cos_theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        theta, sin_theta = self._theta(cos_theta)
        m, u = interval_and_offset(theta, 0.0, self.spacing, self.n_intervals)
        values, first, _ = local_basis(u)
        c = self.coefficients[m.unsqueeze(-1) + torch.arange(4, device=theta.device)]
        g = (c * values).sum(-1)
        g_theta = (c * first).sum(-1) / self.spacing
        return g, -g_theta / sin_theta

    def angular_parameter_terms(self, cos_theta: torch.Tensor
                                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        theta, sin_theta = self._theta(cos_theta)
        m, u = interval_and_offset(theta, 0.0, self.spacing, self.n_intervals)
        values, first, _ = local_basis(u)
        index = m.unsqueeze(-1) + torch.arange(4, device=theta.device)
        return index, values, -first / (self.spacing * sin_theta.unsqueeze(-1))

    def parameter_vector(self) -> torch.Tensor:
        return self.coefficients

    def parameter_names(self) -> list[str]:
        return [f"threebody.g[{m}]" for m in range(self.n_intervals + 3)]

    def set_parameter_vector(self, values: torch.Tensor) -> None:
        with torch.no_grad():
            self.coefficients.copy_(values)

    def to_dict(self) -> dict:
        return {"variant": self.variant, "sigma": float(self.sigma), "a": float(self.a),
                "gamma": float(self.gamma), "knots": self.knots.tolist(),
                "coefficients": self.coefficients.detach().tolist()}

    def extra_repr(self) -> str:
        return f"n_intervals={self.n_intervals}, cutoff={self.cutoff}"
