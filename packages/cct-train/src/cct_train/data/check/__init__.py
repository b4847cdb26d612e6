"""Data checks: every problem of a config's data sets, reported at once (``cct data check``, trainer preflight).

:func:`check_data` builds the data sets of a :class:`~cct_train.config.Config` the way training does
(the train split divided into labeled / unlabeled parts by ``data.split``, ``data.unlabeled_root``, the
val split) and collects a :class:`Problem` for each of:

* ``missing``: a listed image or mask file does not exist (every one, not the first only);
* ``outside-root``: a split-list path that leaves the data root (``../``, an absolute path elsewhere, a link
  whose target lies elsewhere): refused and never opened;
* ``unknown-name``: a name in a split list (``train.txt``, ``data.split.labeled_list``...) matches no sample;
* ``unreadable`` / ``truncated``: an image or mask that does not decode completely (deep mode);
* ``too-large``: an image or mask over ``MAX_IMAGE_PIXELS`` (64 MP), refused before decoding (deep);
* ``size-mismatch``: a mask whose size differs from its image (deep);
* ``mixed-size``: an image whose size differs from the most common one of its split, where batches
  need one size (deep; legal with ``data.resize`` or batches of one image);
* ``mask-values``: mask values outside ``0 .. num_classes - 1`` that are neither ignore nor void (deep);
* ``palette``: RGB mask colours that are not in the configured palette (deep);
* ``empty``: no labeled sample; no unlabeled one in CCT mode; an empty val split;
* ``duplicate``: a name listed twice, one image file under two names, a name both labeled and unlabeled;
* ``dataset`` / ``split`` / ``config``: a data set or split that cannot be built at all.

Quick mode (``deep=False``) does only the list-level checks (files exist and are not empty, duplicates,
empty sets): a stat per file. Deep mode decodes every file, in parallel (a torch DataLoader), with a
progress bar.

By concept: :mod:`.problems` (``Problem``, ``DataReport``, the kinds), :mod:`.running` (``check_data``,
``preflight``), :mod:`.decoding` (the deep check's workers), :mod:`.reporting` (``print_report``).

For the trainer: :func:`preflight` raises :class:`DataCheckError` on fatal problems, or, with
``skip_bad_samples=True``, warns with a count and leaves the bad samples to :func:`samples_to_skip`,
:func:`skipping_config` and :func:`drop_samples`.
"""

from cct_train.data.build import drop_samples
from cct_train.data.check.problems import (
    SAMPLE_KINDS,
    SPLITS,
    TRAIN,
    UNLABELED_ROOT,
    VAL,
    DataCheckError,
    DataReport,
    DataWarning,
    Problem,
)
from cct_train.data.check.reporting import print_report
from cct_train.data.check.running import (
    check_data,
    default_workers,
    preflight,
    samples_to_skip,
    skipping_config,
)

__all__ = [
    "SAMPLE_KINDS",
    "SPLITS",
    "TRAIN",
    "UNLABELED_ROOT",
    "VAL",
    "DataCheckError",
    "DataReport",
    "DataWarning",
    "Problem",
    "check_data",
    "default_workers",
    "drop_samples",
    "preflight",
    "print_report",
    "samples_to_skip",
    "skipping_config",
]
