"""Moved to :mod:`cct_train.eval.metrics` (issue #16); importable here as the very same module.

``cct_train.metrics`` IS ``cct_train.eval.metrics`` (one module object under two names), so every name, and
every ``monkeypatch`` of one, is the same through either path. New code imports ``cct_train.eval.metrics``.
"""

import sys

from cct_train.eval import metrics as _moved

sys.modules[__name__] = _moved
