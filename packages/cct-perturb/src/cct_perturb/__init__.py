"""cct_perturb: batched, device-side feature perturbations of Cross-Consistency Training (CCT).

Seven perturbations of encoder features ``z`` of shape ``(B, D, h, w)``, as pure functions and as
``nn.Module`` wrappers: F-Noise, F-Drop, DropOut, Obj-Msk, Con-Msk, G-Cutout and I-VAT
(Ouali, Hudelot, Tami, CVPR 2020). Depends on torch only.

Image-level perturbations for cross-view CCT (``photometric``, ``cutmix``, ...) live in
:mod:`cct_perturb.image` and need kornia, an optional extra (``pip install 'cct-perturb[image]'``): they
resolve here lazily (``cct_perturb.photometric``), so ``import cct_perturb`` never imports kornia.
"""

from typing import TYPE_CHECKING, Any

from cct_perturb._base import Perturbation, PerturbationInputs
from cct_perturb._utils import class_map, l2_normalize_per_sample, nearest_resize, object_mask_from_prediction
from cct_perturb.cutout import GuidedCutout, guided_cutout, guided_cutout_mask, label_regions
from cct_perturb.drop import FeatureDrop, SpatialDropout, feature_drop, spatial_dropout
from cct_perturb.masks import ContextMask, ObjectMask, context_mask, object_mask
from cct_perturb.noise import FeatureNoise, feature_noise
from cct_perturb.registry import ALIASES, PAPER_DECODERS, PERTURBATIONS, create_perturbation
from cct_perturb.vat import VAT, vat, vat_direction

__version__ = "0.4.0"

if TYPE_CHECKING:  # for type checkers only: at run time they load lazily through __getattr__ (kornia)
    from cct_perturb.image import IMAGE_PERTURBATIONS as IMAGE_PERTURBATIONS
    from cct_perturb.image import CutMix as CutMix
    from cct_perturb.image import CutMixResult as CutMixResult
    from cct_perturb.image import Photometric as Photometric
    from cct_perturb.image import PhotometricParams as PhotometricParams
    from cct_perturb.image import apply_cutmix as apply_cutmix
    from cct_perturb.image import apply_photometric as apply_photometric
    from cct_perturb.image import create_image_perturbation as create_image_perturbation
    from cct_perturb.image import cutmix as cutmix
    from cct_perturb.image import cutmix_masks as cutmix_masks
    from cct_perturb.image import photometric as photometric
    from cct_perturb.image import photometric_params as photometric_params
    from cct_perturb.image import shift_hue as shift_hue

#: Names of :mod:`cct_perturb.image` reachable from the package (loaded on first access; they need kornia).
#: Not in ``__all__``, so ``from cct_perturb import *`` works with torch alone.
IMAGE_NAMES = (
    "IMAGE_PERTURBATIONS",
    "CutMix",
    "CutMixResult",
    "Photometric",
    "PhotometricParams",
    "apply_cutmix",
    "apply_photometric",
    "create_image_perturbation",
    "cutmix",
    "cutmix_masks",
    "photometric",
    "photometric_params",
    "shift_hue",
)


def __getattr__(name: str) -> Any:
    if name in IMAGE_NAMES:
        from cct_perturb import image  # without kornia: ImportError naming `pip install 'cct-perturb[image]'`

        return getattr(image, name)
    raise AttributeError(f"module 'cct_perturb' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *IMAGE_NAMES})


__all__ = [
    "ALIASES",
    "PAPER_DECODERS",
    "PERTURBATIONS",
    "VAT",
    "ContextMask",
    "FeatureDrop",
    "FeatureNoise",
    "IMAGE_NAMES",
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
