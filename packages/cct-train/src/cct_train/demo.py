"""Moved to :mod:`cct_train.tools.demo` (issue #16); importable here as the very same module.

``cct_train.demo`` IS ``cct_train.tools.demo`` (one module object under two names), so every name, and
every ``monkeypatch`` of one, is the same through either path. New code imports ``cct_train.tools.demo``.
"""

import sys

from cct_train.tools import demo as _moved

sys.modules[__name__] = _moved
