"""One vocabulary for what lies beyond an image's border: shifts, padding and networks speak it.

- ``zero``: the background (fill) value; for padding, zero;
- ``reflect``: the image mirrored without repeating the edge (``dcb|abcd|cba``);
- ``replicate``: the edge pixel repeated (``aaa|abcd|ddd``);
- ``circular``: what leaves one side enters the other (``torch.roll``).

``torch.nn.Conv2d`` spells zero padding ``zeros``; every option that takes a border reads that
spelling as ``zero`` (older checkpoints and commands store it), and :func:`torch_padding_mode`
turns a border back into torch's name where a torch layer takes it.
"""

from __future__ import annotations

from collections.abc import Sequence

from invariance_recipes.common.checks import check_choice

BORDERS = ("zero", "reflect", "replicate", "circular")
#: The integer shift modes, shared by the metrics (``translate``) and the translation
#: augmentation, which must move pixels the same way for a number to mean the same.
SHIFT_MODES = ("zero", "reflect", "circular")
_SPELLINGS = {"zeros": "zero"}  # torch's name -> ours


def check_border(option: str, value: str, allowed: Sequence[str] = BORDERS) -> str:
    """``value`` as a border name (``zeros`` read as ``zero``); a one-line ``ValueError``
    naming ``option`` unless it is one of ``allowed``."""
    value = _SPELLINGS.get(value, value) if isinstance(value, str) else value
    check_choice(option, value, allowed)
    return value


def torch_padding_mode(border: str) -> str:
    """The ``padding_mode`` of a torch convolution that pads with ``border``."""
    return "zeros" if border == "zero" else border
