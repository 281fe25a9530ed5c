"""benchbed-energy: the energy distance as a benchbed divergence.

The ``benchbed`` entry point in pyproject.toml names this module, so the
hook below is found as soon as the distribution is installed.
"""

from benchbed import hookimpl

from benchbed_energy.divergence import EnergyDistance, energy_distance

__all__ = ["EnergyDistance", "energy_distance"]


@hookimpl
def register_divergences(register):
    register("energy", EnergyDistance)
