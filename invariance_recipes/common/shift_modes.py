"""The names of the integer shift modes, shared by the metrics (``translate``) and the
translation augmentation, which must move pixels the same way for a number to mean the same.

- ``zero``: pixels a shift vacates get the background (fill) value;
- ``reflect``: they mirror the image without repeating the edge (``dcb|abcd|cba``);
- ``circular``: what leaves one side enters the other (``torch.roll``).
"""

from __future__ import annotations

SHIFT_MODES = ("zero", "reflect", "circular")
