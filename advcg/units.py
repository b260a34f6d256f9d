"""LAMMPS ``real`` units, the only unit system used inside advcg.

=========== ============ ==========================================
quantity    unit         note
=========== ============ ==========================================
length      Å
time        fs           MDAnalysis uses ps: convert once, at I/O
energy      kcal/mol
mass        g/mol
force       kcal/(mol Å)
temperature K
=========== ============ ==========================================

Constants are the values LAMMPS uses (``src/update.cpp``, ``units real``), so that torch and
LAMMPS agree to round-off.
"""

#: Boltzmann constant, kcal/(mol K) (LAMMPS ``force->boltz`` for ``units real``).
BOLTZMANN = 0.0019872067

#: force/mass -> acceleration: (kcal/(mol Å)) / (g/mol) -> Å/fs² (LAMMPS ``force->ftm2v``).
FTM2V = 1.0 / 48.88821291 / 48.88821291

#: mass * velocity² -> energy: (g/mol) Å²/fs² -> kcal/mol (LAMMPS ``force->mvv2e``).
MVV2E = 48.88821291 * 48.88821291

#: Mass of one water molecule, g/mol (bead mass of one-bead CG water).
WATER_MASS = 18.0154

#: Avogadro's number, 1/mol.
AVOGADRO = 6.02214076e23

#: femtoseconds per picosecond.
FS_PER_PS = 1000.0


def kT(temperature: float) -> float:
    """Thermal energy k_B T in kcal/mol for ``temperature`` in K."""
    return BOLTZMANN * temperature


def number_density(mass_density: float, molar_mass: float = WATER_MASS) -> float:
    """Molecules per Å³ for a mass density in g/cm³ and a molar mass in g/mol."""
    return mass_density / molar_mass * AVOGADRO * 1e-24


def mass_density(n_molecules: int, volume: float, molar_mass: float = WATER_MASS) -> float:
    """Mass density in g/cm³ of ``n_molecules`` of ``molar_mass`` g/mol in ``volume`` Å³."""
    return n_molecules * molar_mass / AVOGADRO / (volume * 1e-24)


def diffusion_to_si(slope: float) -> float:
    """Diffusion coefficient in m²/s from D in Å²/fs."""
    return slope * 1e-20 / 1e-15
