"""Moved to :mod:`cct_train.common.progress` (issue #16); importable here as the very same module.

``cct_train.progress`` IS ``cct_train.common.progress`` (one module object under two names), so every name, and
every ``monkeypatch`` of one, is the same through either path. New code imports ``cct_train.common.progress``.
"""

import sys

from cct_train.common import progress as _moved

sys.modules[__name__] = _moved
