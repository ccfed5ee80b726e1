"""The data side: objects on a canvas with controlled placement and translation augmentation.

Importable on its own (it does not need ``lightning_modules``).
"""

from invariance_recipes.common.extras import require_extra

require_extra("data")  # one line naming the pip install when the extra is missing

from invariance_recipes.datamodules.augment import (
    BORDER_MODES,
    POLICIES,
    CanvasTransform,
    Translation,
)
from invariance_recipes.datamodules.placement import PLACEMENTS
from invariance_recipes.datamodules.sources import DATASETS, DatasetInfo, load_splits
from invariance_recipes.datamodules.translation import TranslationDataModule

__all__ = [
    "BORDER_MODES",
    "DATASETS",
    "PLACEMENTS",
    "POLICIES",
    "CanvasTransform",
    "DatasetInfo",
    "Translation",
    "TranslationDataModule",
    "load_splits",
]
