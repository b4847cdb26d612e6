"""Moved to :mod:`cct_train.engine.progress` (issue #16); importable here as the very same module.

``cct_train.progress`` IS ``cct_train.engine.progress`` (one module object under two names), so every name, and
every ``monkeypatch`` of one, is the same through either path. New code imports ``cct_train.engine.progress``.
"""

import sys

from cct_train.engine import progress as _moved

sys.modules[__name__] = _moved
