"""Moved to :mod:`cct_train.engine.trainer` (issue #16); importable here as the very same module.

``cct_train.trainer`` IS ``cct_train.engine.trainer`` (one module object under two names), so every name, and
every ``monkeypatch`` of one, is the same through either path. New code imports ``cct_train.engine.trainer``.
"""

import sys

from cct_train.engine import trainer as _moved

sys.modules[__name__] = _moved
