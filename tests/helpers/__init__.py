"""Shared test helpers: small real systems and runs. Test modules import from here, never from
each other."""
