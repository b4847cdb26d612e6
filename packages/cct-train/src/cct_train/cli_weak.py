"""Moved to :mod:`cct_train.cli.weak` (issue #16); importable here as the very same module.

``cct_train.cli_weak`` IS ``cct_train.cli.weak`` (one module object under two names), so every name, and
every ``monkeypatch`` of one, is the same through either path. New code imports ``cct_train.cli.weak``.
"""

import sys

from cct_train.cli import weak as _moved

sys.modules[__name__] = _moved
