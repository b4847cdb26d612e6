"""Moved to :mod:`cct_train.models.weights` (issue #16); importable here as the very same module.

``cct_train.weights`` IS ``cct_train.models.weights`` (one module object under two names), so every name, and
every ``monkeypatch`` of one, is the same through either path. New code imports ``cct_train.models.weights``.
"""

import sys

from cct_train.models import weights as _moved

sys.modules[__name__] = _moved
