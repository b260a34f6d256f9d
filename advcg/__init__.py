"""advcg: adversarial, dynamics-consistent coarse-graining of molecular liquids around LAMMPS.

Units
-----
Everything inside advcg is in LAMMPS ``real`` units, stated here once:
length Å, time fs, energy kcal/mol, mass g/mol, temperature K, force kcal/(mol Å).
MDAnalysis reports time in ps; :mod:`advcg.mapping` converts to fs at the boundary.
"""

__version__ = "0.1.0"
