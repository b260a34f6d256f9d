"""The update rule of a round: the gradient, thresholded at its noise, drives one Adam step of ϑ.

1. :func:`significant_gradient`: every component is shrunk towards 0 by ``threshold`` of its
   standard errors (Adam's first step is ±rate whatever the gradient's size, so without this a
   component that is pure noise would move as far as one that is not);
2. :func:`adam_step`: one step of torch's Adam with a step size per parameter (the
   configuration's ``training.learning_rates`` per group, times the guard's scale per block:
   :meth:`advcg.parameters.ParameterSpace.learning_rates`) and first-moment decay ``momentum``,
   resumed from the optimiser state of the previous round;
3. :meth:`advcg.parameters.ParameterSpace.project`: into the parameters' bounds.

Measured on water with Adam's usual β1 = 0.9, the friction kept drifting for rounds after its
gradient had fallen inside its error; the default momentum is therefore 0.
"""

from __future__ import annotations

import numpy as np
import torch


def significant_gradient(gradient: np.ndarray, standard_error: np.ndarray, threshold: float) -> np.ndarray:
    """The gradient soft-thresholded at ``threshold`` standard errors: each component shrunk
    towards 0 by ``threshold`` × its standard error, and 0 where it is within that or where its
    standard error is not finite; ``threshold`` 0 returns the gradient as it is."""
    gradient, standard_error = np.asarray(gradient, float), np.asarray(standard_error, float)
    if threshold == 0:
        return gradient
    with np.errstate(invalid="ignore"):
        shrunk = np.sign(gradient) * np.maximum(np.abs(gradient) - threshold * standard_error, 0.0)
    return np.where(np.isfinite(standard_error), shrunk, 0.0)


def adam_step(start: np.ndarray, optimizer_state: dict | None, gradient: np.ndarray,
              rates: np.ndarray, momentum: float = 0.0) -> tuple[np.ndarray, dict]:
    """One Adam step from ϑ = ``start`` with per-parameter step sizes ``rates`` and first-moment
    decay ``momentum`` (β1); returns the new ϑ and the optimiser state (torch's Adam, resumed
    from ``optimizer_state``). A zero rate keeps that parameter as it is (its Adam moments still
    see the gradient)."""
    # per-parameter rates: optimise u = ϑ / rate with lr = 1, so each Adam step moves ϑ_p by ~rate_p
    start = np.asarray(start, dtype=float)
    rates = np.asarray(rates, dtype=float)
    frozen = rates == 0
    scale = torch.as_tensor(np.where(frozen, 1.0, rates))
    u = torch.nn.Parameter(torch.as_tensor(start) / scale)
    optimizer = torch.optim.Adam([u], lr=1.0)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    for group in optimizer.param_groups:   # the configured β1, not the one saved with the state
        group["betas"] = (momentum, group["betas"][1])
    u.grad = torch.as_tensor(gradient) * scale
    optimizer.step()
    return np.where(frozen, start, (u.detach() * scale).numpy()), optimizer.state_dict()
