"""CGTrajectory: validation, slicing, the .npz file and the MDAnalysis view."""

import numpy as np
import pytest

from advcg.trajectory import CGTrajectory


def _traj(n_frames=6, n_beads=5, dt=20.0, seed=0):
    rng = np.random.default_rng(seed)
    return CGTrajectory(rng.normal(0, 10, (n_frames, n_beads, 3)),
                        np.tile([10.0, 11.0, 12.0], (n_frames, 1)),
                        100.0 + dt * np.arange(n_frames), mass=18.0154)


def test_arrays_are_float64_readonly_copies():
    pos = np.zeros((2, 3, 3), dtype=np.float32)
    traj = CGTrajectory(pos, np.ones((2, 3)), [0, 1])
    pos[0, 0, 0] = 5.0
    assert traj.positions.dtype == np.float64 and traj.positions[0, 0, 0] == 0.0
    with pytest.raises(ValueError):
        traj.positions[0, 0, 0] = 1.0
    assert (traj.n_frames, traj.n_beads) == (2, 3)


@pytest.mark.parametrize("kwargs, message", [
    (dict(positions=np.zeros((2, 3))), "positions must have shape"),
    (dict(positions=np.zeros((2, 0, 3))), "positions must have shape"),
    (dict(box=np.ones((3, 3))), "box must have shape"),
    (dict(box=-np.ones((2, 3))), "box edge"),
    (dict(times=[0.0]), "times must have shape"),
    (dict(times=[5.0, 5.0]), "strictly increasing"),
    (dict(positions=np.full((2, 3, 3), np.nan)), "NaN"),
    (dict(mass=0.0), "mass"),
])
def test_invalid_inputs_are_refused(kwargs, message):
    args = dict(positions=np.zeros((2, 3, 3)), box=np.ones((2, 3)), times=[0.0, 1.0], mass=18.0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        CGTrajectory(**args)


def test_timestep_slice_and_wrapping():
    traj = _traj()
    assert traj.timestep == pytest.approx(20.0)
    part = traj.slice(1, None, 2)
    np.testing.assert_array_equal(part.times, traj.times[1::2])
    assert part.timestep == pytest.approx(40.0)
    with pytest.raises(ValueError, match="select nothing"):
        traj.slice(10)
    wrapped = traj.wrapped_positions()
    assert np.all((wrapped >= 0) & (wrapped < traj.box[:, None, :]))
    shift = (traj.positions - wrapped) / traj.box[:, None, :]
    np.testing.assert_allclose(shift, np.round(shift), atol=1e-12)
    uneven = CGTrajectory(traj.positions[:3], traj.box[:3], [0.0, 1.0, 3.0])
    assert not uneven.is_uniform
    with pytest.raises(ValueError, match="not equally spaced"):
        _ = uneven.timestep
    with pytest.raises(ValueError, match="single-frame"):
        _ = traj.slice(0, 1).timestep


def test_save_load_roundtrip(tmp_path):
    traj = _traj()
    path = traj.save(tmp_path / "sub" / "t.npz")
    back = CGTrajectory.load(path)
    for name in ("positions", "box", "times"):
        np.testing.assert_array_equal(getattr(back, name), getattr(traj, name))
    assert back.mass == traj.mass
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["t.npz"]  # no temporary left


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        CGTrajectory.load(tmp_path / "missing.npz")
    good = _traj().save(tmp_path / "good.npz")
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated.npz"):
        CGTrajectory.load(truncated)
    other = tmp_path / "other.npz"
    np.savez(other, positions=np.zeros((1, 1, 3)))
    with pytest.raises(ValueError, match="not an advcg CG trajectory"):
        CGTrajectory.load(other)
    text = tmp_path / "text.npz"
    text.write_text("hello")
    with pytest.raises(ValueError, match="text.npz"):
        CGTrajectory.load(text)


def test_to_universe_frames_times_and_timeseries():
    traj = _traj()
    u = traj.to_universe()
    assert len(u.atoms) == traj.n_beads and len(u.residues) == traj.n_beads
    np.testing.assert_allclose(u.atoms.masses, 18.0154)
    assert u.trajectory.n_frames == traj.n_frames
    times = [ts.time * 1000.0 for ts in u.trajectory]
    np.testing.assert_allclose(times, traj.times, rtol=1e-9)
    u.trajectory[3]
    np.testing.assert_allclose(u.dimensions, [10, 11, 12, 90, 90, 90])
    series = u.trajectory.timeseries(atomgroup=u.atoms, order="fac")
    np.testing.assert_allclose(series, traj.positions, rtol=1e-6, atol=1e-5)  # float32 there
    uneven = CGTrajectory(traj.positions[:3], traj.box[:3], [0.0, 1.0, 3.0])
    with pytest.raises(ValueError, match="not equally spaced"):
        uneven.to_universe()
