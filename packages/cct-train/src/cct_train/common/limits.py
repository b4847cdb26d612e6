"""Upper bounds on what a config, a model file or a data set may ask for, each with the reason: above
them a run does not fail, it takes minutes and gigabytes first (or, from a shared model file, hangs
`cct predict`). The checks that use them name the key or the file.
"""

from __future__ import annotations

__all__ = ["MAX_AUX_DECODERS", "MAX_IMAGE_PIXELS"]

MAX_AUX_DECODERS = 128
"""Auxiliary decoders of one model (or one domain): four times the paper's 30. 100,000 were accepted
before and took over 60 s and 2 GB to build; the same count in a model file's metadata made `cct predict`
build them all."""

MAX_IMAGE_PIXELS = 64_000_000
"""The largest image or mask (width x height) decoded for training, checking or prediction: 64 MP (8000 x
8000). Larger files are refused by name before they are decoded (a 10000 x 10000 image took 2.4 GB to
check); PIL's own decompression-bomb limit (about 179 MP) stays in force above it."""
