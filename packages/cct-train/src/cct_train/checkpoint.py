"""Moved to :mod:`cct_train.common.checkpoint` (issue #16); importable here as the very same module.

``cct_train.checkpoint`` IS ``cct_train.common.checkpoint`` (one module object under two names), so every name, and
every ``monkeypatch`` of one, is the same through either path. New code imports ``cct_train.common.checkpoint``.
"""

import sys

from cct_train.common import checkpoint as _moved

sys.modules[__name__] = _moved
