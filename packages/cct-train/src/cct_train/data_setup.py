"""Moved to :mod:`cct_train.data.setup` (issue #16); importable here as the very same module.

``cct_train.data_setup`` IS ``cct_train.data.setup`` (one module object under two names), so every name, and
every ``monkeypatch`` of one, is the same through either path. New code imports ``cct_train.data.setup``.
"""

import sys

from cct_train.data import setup as _moved

sys.modules[__name__] = _moved
