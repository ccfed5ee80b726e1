"""The data side: objects on a canvas with controlled placement and translation augmentation.

Importable on its own (it does not need ``lightning_modules``).
"""

from datamodules.augment import BORDER_MODES, POLICIES, CanvasTransform, Translation
from datamodules.placement import PLACEMENTS
from datamodules.sources import DATASETS, DatasetInfo, load_splits
from datamodules.translation import TranslationDataModule

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
