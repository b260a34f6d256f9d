"""The update rule of a round: the gradient is soft-thresholded at its standard error, and Adam
carries no momentum across rounds unless asked to (advcg.update_rule)."""

import numpy as np

from advcg.state import RoundProgress, TrainingState
from advcg.update_rule import adam_step, significant_gradient

from helpers.systems import langevin, water_like_potential


def test_significant_gradient_shrinks_each_component_by_its_standard_errors():
    gradient = np.array([0.25, -0.25, 0.05, -0.05, 1.0, 2.0])
    se = np.array([0.10, 0.10, 0.10, 0.10, np.inf, np.nan])
    np.testing.assert_allclose(significant_gradient(gradient, se, 1.0),
                               [0.15, -0.15, 0.0, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(significant_gradient(gradient, se, 0.0), gradient)


def _state() -> TrainingState:
    return TrainingState(water_like_potential(), langevin(), RoundProgress(seed=3))


def test_without_momentum_a_vanished_gradient_stops_the_parameters():
    """One round with a gradient, then one where it is gone (thresholded to 0): with β1 = 0 the
    second step is 0; with Adam's usual β1 = 0.9 it moves by ~0.9 of the rate again."""
    rates = np.full(_state().parameter_vector().size, 0.3)
    gradient = np.zeros_like(rates)
    gradient[-1] = 0.2                      # log γ only
    b1, b2 = 0.9, 0.999                     # Adam after one gradient g and one zero gradient:
    m_hat = b1 * (1 - b1) / (1 - b1**2)     # m̂ / g
    v_hat = b2 * (1 - b2) / (1 - b2**2)     # v̂ / g²
    for momentum, second_step in ((0.0, 0.0), (b1, 0.3 * m_hat / np.sqrt(v_hat))):
        state = _state()
        first, optimizer = adam_step(state.parameter_vector(), state.optimizer, gradient, rates, momentum)
        np.testing.assert_allclose(first[-1] - state.parameter_vector()[-1], -0.3, rtol=1e-6)
        moved = state.with_parameters(first)
        moved.optimizer = optimizer
        second, _ = adam_step(moved.parameter_vector(), moved.optimizer, np.zeros_like(rates), rates,
                              momentum)
        print(f"momentum {momentum}: second step of log gamma {second[-1] - first[-1]:.4f}")
        np.testing.assert_allclose(abs(second[-1] - first[-1]), second_step, rtol=1e-4, atol=1e-9)
        np.testing.assert_array_equal(second[:-1], first[:-1])
