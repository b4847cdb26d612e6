"""Moved to :mod:`cct_train.models.cct` (issue #16); importable here as the very same module.

``cct_train.model`` IS ``cct_train.models.cct`` (one module object under two names), so every name, and
every ``monkeypatch`` of one, is the same through either path. New code imports ``cct_train.models.cct``.
"""

import sys

from cct_train.models import cct as _moved

sys.modules[__name__] = _moved
