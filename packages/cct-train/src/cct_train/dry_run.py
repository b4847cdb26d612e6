"""Moved to :mod:`cct_train.tools.dry_run` (issue #16); importable here as the very same module.

``cct_train.dry_run`` IS ``cct_train.tools.dry_run`` (one module object under two names), so every name, and
every ``monkeypatch`` of one, is the same through either path. New code imports ``cct_train.tools.dry_run``.
"""

import sys

from cct_train.tools import dry_run as _moved

sys.modules[__name__] = _moved
