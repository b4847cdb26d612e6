"""Moved to :mod:`cct_train.cli.weights` (issue #16); importable here as the very same module.

``cct_train.cli_weights`` IS ``cct_train.cli.weights`` (one module object under two names), so every name, and
every ``monkeypatch`` of one, is the same through either path. New code imports ``cct_train.cli.weights``.
"""

import sys

from cct_train.cli import weights as _moved

sys.modules[__name__] = _moved
