"""The package version, in one place (setup.cfg and the docs read it from here)."""

__version__ = "0.1.0"
