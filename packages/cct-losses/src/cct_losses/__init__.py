"""cct_losses."""

__version__ = "0.1.0"
