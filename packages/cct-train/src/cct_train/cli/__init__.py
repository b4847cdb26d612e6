"""The `cct` command line (Typer): :mod:`.main` holds the app and its commands, :mod:`.common` what every
command module shares, :mod:`.study`, :mod:`.weak` and :mod:`.weights` their command groups.

The console script is ``cct = "cct_train.cli:app"``; heavy imports stay inside the commands, so that
``cct --help`` does not pay for torch.
"""

from cct_train.cli.main import (
    DomainOpt,
    app,
    bench,
    data_app,
    data_check,
    data_prepare,
    demo,
    encoders,
    eval_,
    export,
    main,
    predict,
    print_scores,
    splits,
    train,
)

__all__ = [
    "DomainOpt",
    "app",
    "bench",
    "data_app",
    "data_check",
    "data_prepare",
    "demo",
    "encoders",
    "eval_",
    "export",
    "main",
    "predict",
    "print_scores",
    "splits",
    "train",
]
