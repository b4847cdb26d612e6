"""Moved to :mod:`cct_train.models.encoders` (issue #16); importable here as the very same module.

``cct_train.encoders`` IS ``cct_train.models.encoders`` (one module object under two names), so every name, and
every ``monkeypatch`` of one, is the same through either path. New code imports ``cct_train.models.encoders``.
"""

import sys

from cct_train.models import encoders as _moved

sys.modules[__name__] = _moved
