"""Moved to :mod:`cct_train.eval.evaluate` (issue #16); importable here as the very same module.

``cct_train.evaluate`` IS ``cct_train.eval.evaluate`` (one module object under two names), so every name, and
every ``monkeypatch`` of one, is the same through either path. New code imports ``cct_train.eval.evaluate``.
"""

import sys

from cct_train.eval import evaluate as _moved

sys.modules[__name__] = _moved
