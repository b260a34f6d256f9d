"""The LAMMPS engine layer: accelerator choice, per-atom gathering, image flags, performance."""

import numpy as np
import pytest

from advcg.engine import (
    ACCELERATORS,
    Accelerator,
    Engine,
    EngineError,
    choose_accelerator,
    decode_images,
    has_kokkos_gpu,
    installed_packages,
    parse_performance,
    template_path,
)

PERF_LINE = ("Performance: 21.600 ns/day, 1.111 hours/ns, 125.000 timesteps/s, "
             "192.000 katom-step/s\n")


# -- accelerator choice -------------------------------------------------------------------------
def test_unknown_accelerator_names_the_allowed_values():
    with pytest.raises(ValueError) as err:
        choose_accelerator("cuda")
    for name in ACCELERATORS:
        assert name in str(err.value)
    assert "'cuda'" in str(err.value)


def test_kokkos_requested_without_kokkos_is_an_error():
    if has_kokkos_gpu():  # a Kokkos GPU build must then be chosen
        assert choose_accelerator("kokkos").kind == "kokkos"
        return
    with pytest.raises(EngineError, match="kokkos"):
        choose_accelerator("kokkos")


def test_auto_falls_back_to_what_the_library_has():
    chosen = choose_accelerator("auto", n_threads=2)
    if has_kokkos_gpu():
        assert chosen.kind == "kokkos"
    elif "OPENMP" in installed_packages():
        assert chosen == Accelerator("openmp", n_threads=2)
    else:
        assert chosen.kind == "serial"
    assert choose_accelerator("serial", n_threads=4) == Accelerator("serial", n_threads=1)


def test_accelerator_validation_and_switches():
    with pytest.raises(ValueError, match="kind"):
        Accelerator("gpu")
    with pytest.raises(ValueError, match="n_threads"):
        Accelerator("openmp", n_threads=0)
    with pytest.raises(ValueError, match="n_gpus"):
        Accelerator("kokkos", n_gpus=0)
    assert Accelerator("serial").cmdargs() == []
    assert Accelerator("openmp", n_threads=3).cmdargs() == ["-sf", "omp", "-pk", "omp", "3"]
    kk = Accelerator("kokkos", n_gpus=2).cmdargs()
    assert kk[:4] == ["-k", "on", "g", "2"] and "-sf" in kk and kk[kk.index("-sf") + 1] == "kk"


def test_missing_template_lists_the_known_ones():
    with pytest.raises(EngineError, match="aa_water.in"):
        template_path("no_such_template.in")
    assert template_path("aa_water.in").is_file()


# -- a small LJ gas with atoms crossing the box many times --------------------------------------
def _hot_gas(engine: Engine, n_steps: int) -> None:
    engine.commands([
        "units real", "atom_style atomic", "boundary p p p",
        "atom_modify map array sort 1 2.0",          # re-sort local atoms every step
        "region box block 0 12 0 12 0 12",
        "create_box 1 box",
        "create_atoms 1 random 60 4711 NULL overlap 2.5",
        "mass 1 18.0154",
        "pair_style lj/cut 6.0", "pair_coeff 1 1 0.1 3.0",
        "velocity all create 20000.0 8191 dist gaussian",
        "timestep 2.0",
        "fix 1 all nve",
        "thermo 100",
        f"run {n_steps}",
    ])


def _read_sorted_dump(path):
    """Per-atom rows of a one-frame text dump written with 'dump_modify sort id'."""
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("ITEM: ATOMS")) + 1
    return np.array([[float(v) for v in line.split()] for line in lines[start:]])


def test_gather_is_sorted_by_id_and_images_decode_to_xu(tmp_path):
    with Engine("serial") as engine:
        _hot_gas(engine, 400)
        local_ids = np.array(engine.lmp.numpy.extract_atom("id"), copy=True)
        assert not np.all(np.diff(local_ids) > 0), "atom sorting should have shuffled local order"
        dump = tmp_path / "x.txt"
        engine.command(f"write_dump all custom {dump} id x y z xu yu zu ix iy iz modify sort id format float %.12f")
        ids = engine.gather("id")
        x = engine.gather("x")
        images = decode_images(engine.gather("image"))
        unwrapped = engine.unwrapped_positions()
    ref = _read_sorted_dump(dump)
    np.testing.assert_array_equal(ids, np.arange(1, 61))
    np.testing.assert_array_equal(ref[:, 0], ids)
    np.testing.assert_allclose(x, ref[:, 1:4], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(images, ref[:, 7:10].astype(int))
    assert images.min() < 0 < images.max(), "the run should cross the box both ways"
    np.testing.assert_allclose(unwrapped, ref[:, 4:7], rtol=0, atol=1e-6)


def test_decode_images_packing():
    flags = np.array([[0, 0, 0], [1, -1, 3], [-511, 511, -2], [7, 0, -7]])
    packed = ((flags[:, 2] + 512) << 20) | ((flags[:, 1] + 512) << 10) | (flags[:, 0] + 512)
    np.testing.assert_array_equal(decode_images(packed), flags)


def test_gather_unknown_property_is_an_error():
    with Engine("serial") as engine:
        _hot_gas(engine, 0)
        with pytest.raises(EngineError, match="no_such"):
            engine.gather("no_such")
        with pytest.raises(EngineError, match="pair_style"):
            engine.command("pair_style no_such_style")


# -- performance ---------------------------------------------------------------------------------
def test_parse_performance_takes_the_last_line():
    text = "Loop time ...\n" + PERF_LINE + "more\n" + PERF_LINE.replace("21.600", "30.5").replace(
        "125.000", "176.5")
    perf = parse_performance(text)
    assert perf.ns_per_day == pytest.approx(30.5)
    assert perf.timesteps_per_s == pytest.approx(176.5)
    with pytest.raises(EngineError, match="Performance"):
        parse_performance("Loop time of 1.0 on 1 procs\n")


def test_engine_performance_matches_its_log(tmp_path):
    log = tmp_path / "log.lammps"
    with Engine("serial", log_file=log) as engine:
        _hot_gas(engine, 200)
        perf = engine.performance()
        engine.command("run 10")  # the log is still written after reading it
    text = log.read_text()
    assert perf.ns_per_day > 0 and perf.timesteps_per_s > 0
    first = parse_performance(text.split("run 10")[0])
    assert first == perf
    assert text.count("Performance:") == 2
    with Engine("serial") as engine, pytest.raises(EngineError, match="log"):
        engine.performance()
