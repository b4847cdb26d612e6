"""Moved to :mod:`cct_train.tools.bench` (issue #16); importable here as the very same module.

``cct_train.bench`` IS ``cct_train.tools.bench`` (one module object under two names), so every name, and
every ``monkeypatch`` of one, is the same through either path. New code imports ``cct_train.tools.bench``.
"""

import sys

from cct_train.tools import bench as _moved

sys.modules[__name__] = _moved
