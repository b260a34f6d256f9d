"""Tests of the torch CG potential: analytic forces, parameter derivatives, neighbour lists, JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from advcg.potential import CGPotential, PairSpline, PotentialFileError, build_neighbor_list, build_pairs

from helpers.potentials import model, random_box


@pytest.fixture(scope="module")
def frames() -> tuple[torch.Tensor, torch.Tensor]:
    """Two frames of 512 beads (minimum distance 2.0 Å: some pairs inside the wall)."""
    x, length = random_box(512, 2.0, seed=3)
    rng = np.random.default_rng(4)
    batch = np.stack([x, x + rng.normal(scale=0.05, size=x.shape)])
    return torch.tensor(batch), torch.tensor([length] * 3, dtype=torch.float64)


def test_pair_spline_vanishes_at_cutoff_and_is_c1_at_wall() -> None:
    torch.manual_seed(0)
    pair = PairSpline(coefficients=torch.randn(39))
    rc = torch.tensor([10.0], dtype=torch.float64)
    assert pair.n_coefficients == 39
    for value in (pair(rc), pair.derivative(rc), pair.second_derivative(rc)):
        assert value.abs().item() == 0.0
    near = torch.tensor([10.0 - 1e-4], dtype=torch.float64)
    assert pair(near).abs().item() < 1e-9 and pair.derivative(near).abs().item() < 1e-6
    eps = 1e-7
    r = torch.tensor([2.2 - eps, 2.2 + eps], dtype=torch.float64)
    phi, dphi = pair.evaluate(r)
    assert abs(phi[0] - phi[1]).item() < 1e-5
    assert abs(dphi[0] - dphi[1]).item() < 1e-4
    inside = torch.tensor([1.0, 1.5], dtype=torch.float64)
    assert (pair.second_derivative(inside) == pair.kappa).all()
    assert torch.isfinite(pair(torch.tensor([0.3], dtype=torch.float64))).all()


def test_pair_derivative_and_basis_are_consistent() -> None:
    torch.manual_seed(1)
    pair = PairSpline(coefficients=torch.randn(39))
    r = torch.linspace(0.6, 9.99, 997, dtype=torch.float64).requires_grad_(True)
    phi = pair(r)
    (grad,) = torch.autograd.grad(phi.sum(), r)
    assert torch.allclose(grad, pair.derivative(r), atol=1e-10)
    Phi, dPhi, phi0, dphi0 = pair.basis(r.detach())
    c = pair.coefficients.detach()
    assert torch.allclose(Phi @ c + phi0, phi.detach(), atol=1e-12)
    assert torch.allclose(dPhi @ c + dphi0, pair.derivative(r).detach(), atol=1e-10)
    fast_phi, fast_dphi = PairSpline.compute_fast(r.detach(), PairSpline.interval_polynomials(c),
                                                  pair.r_min, pair.spacing, pair.n_intervals, pair.kappa)
    assert torch.allclose(fast_phi, phi.detach(), atol=1e-12)
    assert torch.allclose(fast_dphi, grad, atol=1e-10)


def test_pair_fit_recovers_a_spline_and_rejects_bad_input() -> None:
    torch.manual_seed(2)
    truth = PairSpline(coefficients=torch.randn(39))
    r = np.linspace(1.0, 10.0, 400)
    fitted = PairSpline.fit(r, truth(torch.tensor(r)).detach().numpy())
    assert torch.allclose(fitted.coefficients, truth.coefficients, atol=1e-8)
    with pytest.raises(ValueError, match="finite"):
        PairSpline.fit(r, np.where(r < 2.5, np.inf, 0.0))
    with pytest.raises(ValueError, match="does not divide"):
        PairSpline(r_min=2.2, r_cut=10.0, spacing=0.25)


@pytest.mark.parametrize("variant", ["sw", "sw/angle/table"])
def test_forces_are_minus_energy_gradient(frames, variant: str) -> None:
    positions, box = frames
    m = model(variant)
    x = positions.clone().requires_grad_(True)
    energy = m.energy(x, box)
    assert energy.shape == (2,)
    (grad,) = torch.autograd.grad(energy.sum(), x)
    forces = m.forces(positions, box)
    assert forces.shape == positions.shape
    scale = forces.abs().max()
    assert (forces + grad).abs().max() < 1e-10 * scale
    beads = m.bead_energies(positions, box)
    assert beads.shape == (2, 512)
    assert torch.allclose(beads.sum(-1), energy.detach(), rtol=1e-12, atol=1e-9)
    geo = m.geometry(positions, box)
    assert all(group.n_pairs > 0 and group.n_triplets > 0 for group in geo.groups)
    assert (geo.pair_distances(positions) < m.pair.r_min).any(), "the test configuration should probe the wall"


@pytest.mark.parametrize("variant", ["sw", "sw/angle/table"])
def test_parameter_derivatives_match_autograd(frames, variant: str) -> None:
    positions, box = frames
    m = model(variant)
    geo = m.geometry(positions, box)
    params = [m.pair.coefficients, *m.threebody.parameters()]
    weights = torch.randn(positions.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    forces = m.forces(positions, box, create_graph=True, neighbors=geo)
    assert forces.requires_grad
    vjp = torch.cat([g.reshape(-1) for g in torch.autograd.grad((weights * forces).sum(), params)])
    jac = m.parameter_forces(positions, box, neighbors=geo)
    assert jac.shape == (2, 512, 3, m.n_parameters)
    assert torch.allclose(torch.einsum("fnd,fndp->p", weights, jac), vjp, rtol=1e-10, atol=1e-9)
    pair_jac = m.pair_basis_forces(positions, box, neighbors=geo)
    assert torch.equal(pair_jac, jac[..., m.pair_slice])
    per_bead = m.force_parameter_vjp(positions, box, weights, per_bead=True, neighbors=geo)
    assert torch.allclose(per_bead, torch.einsum("fnd,fndp->fnp", weights, jac), rtol=1e-10, atol=1e-9)
    per_frame = m.force_parameter_vjp(positions, box, weights, neighbors=geo)
    assert torch.allclose(per_frame, per_bead.sum(1), rtol=1e-10, atol=1e-9)
    energy_grad = torch.cat([g.reshape(-1) for g in torch.autograd.grad(m.energy(positions, box).sum(), params)])
    assert torch.allclose(m.energy_gradient(positions, box).sum(0), energy_grad, rtol=1e-10, atol=1e-9)
    # the pair part is linear in c: F(c) = F(0) + J c exactly
    theta = m.theta
    zero_pair = theta.clone()
    zero_pair[m.pair_slice] = 0.0
    m.set_theta(zero_pair)
    base = m.forces(positions, box, neighbors=geo)
    m.set_theta(theta)
    predicted = base + torch.einsum("fndk,k->fnd", pair_jac, theta[m.pair_slice])
    assert torch.allclose(predicted, m.forces(positions, box, neighbors=geo), atol=1e-9)


@pytest.mark.parametrize("variant", ["sw", "sw/angle/table"])
def test_vjp_is_the_mixed_second_derivative_of_the_energy(frames, variant: str) -> None:
    """Independent of the force kernels: w·∂F/∂θ = -∂/∂θ (w·∂U/∂x) by double autograd."""
    positions, box = frames
    m = model(variant)
    params = [m.pair.coefficients, *m.threebody.parameters()]
    weights = torch.randn(positions.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    x = positions.clone().requires_grad_(True)
    (grad_x,) = torch.autograd.grad(m.energy(x, box).sum(), x, create_graph=True)
    reference = torch.cat([g.reshape(-1) for g in torch.autograd.grad(-(weights * grad_x).sum(), params)])
    geo = m.geometry(positions, box)
    vjp = m.force_parameter_vjp(positions, box, weights, neighbors=geo).sum(0)
    assert torch.allclose(vjp, reference, rtol=1e-9, atol=1e-8 * reference.abs().max())
    forces = m.forces(positions, box, create_graph=True, neighbors=geo)
    via_forces = torch.cat([g.reshape(-1) for g in torch.autograd.grad((weights * forces).sum(), params)])
    assert torch.allclose(via_forces, vjp, rtol=1e-12, atol=1e-10)


def test_vjp_of_several_weightings_in_one_call(frames) -> None:
    positions, box = frames
    m = model("sw")
    geo = m.geometry(positions, box)
    sets = torch.randn((3, *positions.shape), dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    together = m.force_parameter_vjp(positions, box, sets, neighbors=geo)
    assert together.shape == (3, 2, m.n_parameters)
    alone = torch.stack([m.force_parameter_vjp(positions, box, w, neighbors=geo) for w in sets])
    assert torch.allclose(together, alone, rtol=1e-12, atol=1e-10)
    jac = m.parameter_forces(positions, box, neighbors=geo)
    assert torch.allclose(together, torch.einsum("sfnd,fndp->sfp", sets, jac), rtol=1e-10, atol=1e-9)
    per_bead = m.force_parameter_vjp(positions, box, sets, per_bead=True, neighbors=geo)
    assert per_bead.shape == (3, 2, 512, m.n_parameters)
    assert torch.allclose(per_bead.sum(2), together, rtol=1e-10, atol=1e-9)
    single = m.force_parameter_vjp(positions[0], box, sets[:, 0])       # no frame axis
    assert single.shape == (3, m.n_parameters)
    assert torch.allclose(single, together[:, 0], rtol=1e-10, atol=1e-9)
    with pytest.raises(ValueError, match="weights must have the shape"):
        m.force_parameter_vjp(positions, box, sets[:, :, :10], neighbors=geo)


def test_geometry_and_neighbor_list_reuse_across_frames(frames) -> None:
    positions, box = frames
    m = model("sw")
    # a window longer than one pair group, moving slowly: one Verlet list, several groups
    rng = np.random.default_rng(9)
    steps = torch.tensor(rng.normal(scale=0.004, size=(70, *positions.shape[1:])))
    window = positions[0] + torch.cumsum(steps, 0)
    listed = m.neighbor_list(window, box)
    assert len(listed.groups) == 1
    geo = m.geometry(window, box, neighbors=listed)
    assert len(geo.groups) >= 2
    every = m.forces(window, box, neighbors=geo)
    part = listed.frames(30, 45)
    assert part.n_frames == 15
    spans = listed.spans(25)
    assert spans == [(0, 25), (25, 50), (50, 70)]
    jumpy = window[:4].clone()
    jumpy[:, 0, 0] += torch.tensor([0.0, 0.6, 1.2, 1.8], dtype=torch.float64)  # > skin/2 every frame
    assert m.neighbor_list(jumpy, box).spans(25) == [(0, 1), (1, 2), (2, 3), (3, 4)]
    assert torch.allclose(m.forces(window[30:45], box, neighbors=part), every[30:45], atol=1e-12)
    for k in (0, 44, 69):
        assert torch.allclose(every[k], m.forces(window[k], box), atol=1e-11)
    with pytest.raises(ValueError, match="frames"):
        listed.frames(60, 80)
    with pytest.raises(ValueError, match="geometry built for"):
        m.forces(window[:10], box, neighbors=geo)


def test_neighbor_lists_kdtree_brute_and_rebuilds() -> None:
    x, length = random_box(300, 1.5, seed=6)
    box = torch.tensor([length] * 3, dtype=torch.float64)
    pos = torch.tensor(x)
    keys = []
    for method in ("kdtree", "brute"):
        i, j = build_pairs(pos, box, 9.5, method=method, chunk=64)
        assert (i < j).all()
        keys.append(torch.sort(i * 300 + j).values)
    assert torch.equal(keys[0], keys[1]) and keys[0].numel() > 300 * 50
    drift = torch.zeros(4, 300, 3, dtype=torch.float64)
    drift[:, 0, 0] = torch.tensor([0.0, 0.2, 0.45, 0.6])  # bead 0 leaves skin/2 = 0.5 at frame 3
    frames = pos + drift
    nl = build_neighbor_list(frames, box, 9.0, 1.0)
    assert [(g[0], g[1]) for g in nl.groups] == [(0, 3), (3, 4)]
    m = model("sw")
    # reused list == fresh per-frame evaluation; unwrapped images give the same forces
    together = m.forces(frames, box, neighbors=m.neighbor_list(frames, box))
    alone = torch.stack([m.forces(frames[k], box) for k in range(4)])
    assert torch.allclose(together, alone, atol=1e-12)
    shifted = frames + length * torch.randint(-3, 4, (4, 300, 3)).to(torch.float64)
    assert torch.allclose(m.forces(shifted, box), alone, atol=1e-9)


def test_theta_round_trip_and_names() -> None:
    for variant, extra in (("sw", ["threebody.lambda", "threebody.cos_theta0"]),
                           ("sw/angle/table", [f"threebody.g[{k}]" for k in range(21)])):
        m = model(variant)
        names = m.parameter_names()
        assert names[:2] == ["pair.c[0]", "pair.c[1]"] and names[39:] == extra
        assert m.n_parameters == len(names) == m.theta.numel()
        theta = m.theta + 0.25
        m.set_theta(theta)
        assert torch.equal(m.theta, theta)
        with pytest.raises(ValueError, match="values"):
            m.set_theta(theta[:-1])
        with pytest.raises(ValueError, match="non-finite"):
            m.set_theta(torch.full_like(theta, math.nan))


@pytest.mark.parametrize("variant", ["sw", "sw/angle/table"])
def test_json_round_trip(tmp_path: Path, frames, variant: str) -> None:
    positions, box = frames
    m = model(variant)
    path = tmp_path / "params.json"
    m.to_json(path)
    loaded = CGPotential.from_json(path)
    assert loaded.variant == variant and loaded.parameter_names() == m.parameter_names()
    assert torch.equal(loaded.theta, m.theta)
    assert torch.equal(loaded.forces(positions, box), m.forces(positions, box))
    data = json.loads(path.read_text())
    assert data["units"]["energy"] == "kcal/mol" and data["pair"]["wall"]["kappa"] == 100.0


def _mutated(tmp_path: Path, edit) -> Path:
    data = model("sw").to_dict()
    edit(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("edit, key", [
    (lambda d: d["pair"]["coefficients"].__setitem__(3, float("nan")), r"pair\.coefficients\[3\]"),
    (lambda d: d["threebody"].__setitem__("lambda", float("inf")), r"threebody\.lambda"),
    (lambda d: d["threebody"].__setitem__("variant", "tersoff"), r"threebody\.variant"),
    (lambda d: d["pair"]["knots"].__setitem__(5, d["pair"]["knots"][4]), r"pair\.knots.*increasing"),
    (lambda d: d["pair"]["coefficients"].pop(), r"pair\.coefficients"),
    (lambda d: d["pair"].pop("wall"), r"pair\.wall"),
    (lambda d: d["pair"]["wall"].__setitem__("kappa", -1.0), r"pair\.wall\.kappa"),
])
def test_bad_parameter_files_name_file_and_key(tmp_path: Path, edit, key: str) -> None:
    path = _mutated(tmp_path, edit)
    with pytest.raises(PotentialFileError, match=key) as info:
        CGPotential.from_json(path)
    assert str(path) in str(info.value)


def test_bad_angle_spline_lengths(tmp_path: Path) -> None:
    data = model("sw/angle/table").to_dict()
    data["threebody"]["coefficients"] = data["threebody"]["coefficients"][:-2]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(PotentialFileError, match=r"threebody\.coefficients"):
        CGPotential.from_json(path)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(PotentialFileError, match="broken.json"):
        CGPotential.from_json(tmp_path / "broken.json")


def test_box_and_input_validation() -> None:
    m = model("sw")
    m.validate_box([20.0, 20.0, 20.0])
    with pytest.raises(ValueError, match="exceeds half the smallest box edge"):
        m.validate_box([30.0, 30.0, 19.9])
    x = torch.zeros(10, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="exceeds half"):
        m.forces(x, [15.0, 15.0, 15.0])
    with pytest.raises(TypeError, match="float64"):
        m.forces(x.float(), [25.0, 25.0, 25.0])
    with pytest.raises(TypeError, match="box must be float64"):
        m.forces(x, torch.tensor([25.0, 25.0, 25.0]))
