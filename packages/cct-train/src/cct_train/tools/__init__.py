"""Tools built on the rest: `cct bench`, `cct demo`, the dry run."""
