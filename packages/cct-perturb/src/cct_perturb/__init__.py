"""cct_perturb: batched, device-side feature perturbations of Cross-Consistency Training (CCT).

Seven perturbations of encoder features ``z`` of shape ``(B, D, h, w)``, as pure functions and as
``nn.Module`` wrappers: F-Noise, F-Drop, DropOut, Obj-Msk, Con-Msk, G-Cutout and I-VAT
(Ouali, Hudelot, Tami, CVPR 2020). Depends on torch only.
"""

from cct_perturb._base import Perturbation, PerturbationInputs
from cct_perturb._utils import class_map, l2_normalize_per_sample, nearest_resize, object_mask_from_prediction
from cct_perturb.cutout import GuidedCutout, guided_cutout, guided_cutout_mask, label_regions
from cct_perturb.drop import FeatureDrop, SpatialDropout, feature_drop, spatial_dropout
from cct_perturb.masks import ContextMask, ObjectMask, context_mask, object_mask
from cct_perturb.noise import FeatureNoise, feature_noise
from cct_perturb.registry import ALIASES, PAPER_DECODERS, PERTURBATIONS, create_perturbation
from cct_perturb.vat import VAT, vat, vat_direction

__version__ = "0.4.0"

__all__ = [
    "ALIASES",
    "PAPER_DECODERS",
    "PERTURBATIONS",
    "VAT",
    "ContextMask",
    "FeatureDrop",
    "FeatureNoise",
    "GuidedCutout",
    "ObjectMask",
    "Perturbation",
    "PerturbationInputs",
    "SpatialDropout",
    "__version__",
    "class_map",
    "context_mask",
    "create_perturbation",
    "feature_drop",
    "feature_noise",
    "guided_cutout",
    "guided_cutout_mask",
    "l2_normalize_per_sample",
    "label_regions",
    "nearest_resize",
    "object_mask",
    "object_mask_from_prediction",
    "spatial_dropout",
    "vat",
    "vat_direction",
]
