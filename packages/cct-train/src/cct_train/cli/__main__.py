"""`python -m cct_train.cli ...`: the `cct` command (what `cct_train/cli.py` ran before it became a package)."""

from cct_train.cli.main import app

app()
