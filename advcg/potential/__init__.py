r"""The CG force field of advcg: pair spline + Stillinger–Weber-form three-body term, in torch.

.. math::

    U_\theta(X) = \sum_{i<j} \phi(r_{ij})
      + \sum_i \sum_{j<k \in \mathrm{nbr}(i)} f(r_{ij}) f(r_{ik})\, g(\theta_{jik})

Modules: :mod:`~advcg.potential.pair` (:class:`PairSpline`), :mod:`~advcg.potential.threebody`
(:class:`SWThreeBody`, :class:`AngleTableThreeBody`), :mod:`~advcg.potential.neighbors`
(periodic Verlet lists, pair groups shared across frames), :mod:`~advcg.potential.kernels`
(allocation-free forces and parameter derivatives), :mod:`~advcg.potential.model`
(:class:`CGPotential`, JSON files).
Export to LAMMPS lives in :mod:`advcg.export`.
"""

from advcg.potential.model import DEFAULT_SKIN, CGPotential, PotentialFileError
from advcg.potential.neighbors import Geometry, NeighborList, PairGroup, build_neighbor_list, build_pairs
from advcg.potential.pair import DEFAULT_KAPPA, DEFAULT_R_CUT, DEFAULT_R_MIN, DEFAULT_SPACING, PairSpline
from advcg.potential.threebody import (
                                       DEFAULT_A,
                                       DEFAULT_ANGLE_INTERVALS,
                                       DEFAULT_COS_THETA0,
                                       DEFAULT_EPSILON,
                                       DEFAULT_GAMMA,
                                       DEFAULT_LAMBDA,
                                       DEFAULT_SIGMA,
                                       VARIANTS,
                                       AngleTableThreeBody,
                                       SWThreeBody,
                                       ThreeBody,
)

__all__ = ["CGPotential", "PotentialFileError", "PairSpline", "ThreeBody", "SWThreeBody",
           "AngleTableThreeBody", "NeighborList", "Geometry", "PairGroup", "build_neighbor_list",
           "build_pairs",
           "VARIANTS", "DEFAULT_SKIN", "DEFAULT_R_MIN", "DEFAULT_R_CUT", "DEFAULT_SPACING",
           "DEFAULT_KAPPA", "DEFAULT_SIGMA", "DEFAULT_A", "DEFAULT_GAMMA", "DEFAULT_EPSILON",
           "DEFAULT_LAMBDA", "DEFAULT_COS_THETA0", "DEFAULT_ANGLE_INTERVALS"]
