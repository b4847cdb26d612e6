"""Moved to :mod:`cct_train.cli.study` (issue #16); importable here as the very same module.

``cct_train.cli_study`` IS ``cct_train.cli.study`` (one module object under two names), so every name, and
every ``monkeypatch`` of one, is the same through either path. New code imports ``cct_train.cli.study``.
"""

import sys

from cct_train.cli import study as _moved

sys.modules[__name__] = _moved
