"""cct_perturb."""

__version__ = "0.1.0"
