"""Moved to :mod:`cct_train.eval.plots` (issue #16); importable here as the very same module.

``cct_train.plots`` IS ``cct_train.eval.plots`` (one module object under two names), so every name, and
every ``monkeypatch`` of one, is the same through either path. New code imports ``cct_train.eval.plots``.
"""

import sys

from cct_train.eval import plots as _moved

sys.modules[__name__] = _moved
