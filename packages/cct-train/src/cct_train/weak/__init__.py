"""Weak labels to pseudo-labels (paper 3.3) over cct-train's encoders and data sets.

1. :mod:`.labels`: image-level labels from a CSV / text file (:func:`read_image_labels`) or the masks.
2. :mod:`.cam`: :func:`train_cam_classifier`, an encoder plus :class:`cct_weak.CAMClassifier` (global
   average pooling + linear) trained with multi-label BCE; :func:`load_cam_classifier` reads it back.
3. :mod:`.generate`: :func:`generate_pseudo_labels`, batched multi-scale CAMs thresholded into pseudo-labels,
   refined by a dense CRF in worker processes, written as index PNGs ``<name>.png`` (255 = ignored) with a
   ``report.json``.
4. :mod:`.from_config`: the same steps driven by a training config's data and model sections
   (:func:`train_cam_from_config`, :func:`pseudo_label_inputs`), as ``cct cam train`` and ``cct pseudo-labels``
   run them.

The method itself (CAMs, thresholds, CRF) is :mod:`cct_weak`; reading the pseudo-labels back as the unlabeled
samples' masks is :mod:`cct_train.data.pseudo_label_files` (the data layer, below this one).

Training with ``data.pseudo_labels`` pointing at that folder adds ``w_w * Lw`` on the auxiliary decoders.
"""

from cct_train.weak.cam import CAMCheckpoint, CAMTrainResult, load_cam_classifier, train_cam_classifier
from cct_train.weak.from_config import (
    PseudoLabelInputs,
    config_classes,
    config_images,
    pseudo_label_inputs,
    train_cam_from_config,
)
from cct_train.weak.generate import generate_pseudo_labels
from cct_train.weak.labels import (
    CAM_CHECKPOINT_KIND,
    ImageLabels,
    labels_tensor,
    parse_background_index,
    read_image_labels,
    require_crf,
)

__all__ = [
    "CAM_CHECKPOINT_KIND",
    "CAMCheckpoint",
    "CAMTrainResult",
    "ImageLabels",
    "PseudoLabelInputs",
    "config_classes",
    "config_images",
    "generate_pseudo_labels",
    "labels_tensor",
    "load_cam_classifier",
    "parse_background_index",
    "pseudo_label_inputs",
    "read_image_labels",
    "require_crf",
    "train_cam_classifier",
    "train_cam_from_config",
]
