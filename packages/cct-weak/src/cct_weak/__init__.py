"""cct_weak: weak (image-level) labels for Cross-Consistency Training (Ouali et al., CVPR 2020, section 3.3).

Train a :class:`CAMClassifier` (encoder + global average pooling + linear) with :func:`multilabel_loss`,
compute multi-scale CAMs with :func:`compute_cams`, threshold them into pseudo-labels with
:func:`cams_to_pseudo_labels` and optionally refine them with a dense CRF (:func:`crf_refine`,
:func:`refine_pseudo_labels`, :func:`refine_many`; needs the ``crf`` extra). Depends on torch and numpy
only.
"""

from cct_weak.cams import CAMModel, compute_cams, normalize_cams
from cct_weak.classifier import (
    CAMClassifier,
    class_activation_maps,
    image_labels_from_masks,
    last_feature_map,
    multilabel_loss,
)
from cct_weak.crf import CRF_INSTALL_HINT, crf_refine, is_crf_available, refine_many, refine_pseudo_labels
from cct_weak.pseudo_labels import cams_to_pseudo_labels

__version__ = "0.1.0"

__all__ = [
    "CAMClassifier",
    "CAMModel",
    "CRF_INSTALL_HINT",
    "__version__",
    "cams_to_pseudo_labels",
    "class_activation_maps",
    "compute_cams",
    "crf_refine",
    "image_labels_from_masks",
    "is_crf_available",
    "last_feature_map",
    "multilabel_loss",
    "normalize_cams",
    "refine_many",
    "refine_pseudo_labels",
]
