"""Crop shifts: the network sees a window of a larger canvas, and a shift moves the window.

Unlike `translate`, where a shift vacates a border that some rule has to fill (zero, reflect,
circular), moving a window brings real content into view from outside it. This is the shift of
Zhang (ICML 2019): two 224-px crops of a 256-px image. A canvas of side H and a view of side V
leave a margin of H - V pixels per axis; window tops and lefts range over [0, H - V].

The batched cut uses the row-run gather of `translate`: every output row of a window is a
contiguous run of a canvas row, so one `index_select` with one index per output row copies the
whole batch.
"""

from __future__ import annotations

import torch
from torch import Tensor

from invariance_recipes.lightning_modules.offset_pairs import per_sample


def view_margin(canvas_size: tuple[int, int], view_size: int) -> tuple[int, int]:
    """The margin (H - V, W - V) that a view of side `view_size` leaves on the canvas."""
    h, w = canvas_size
    if isinstance(view_size, bool) or not isinstance(view_size, int) or view_size < 1:
        raise ValueError(f"view_size={view_size!r} is invalid: use a positive integer")
    if view_size > min(h, w):
        raise ValueError(
            f"view_size={view_size} does not fit a {h}x{w} canvas: use view_size <= {min(h, w)}"
        )
    return h - view_size, w - view_size


def center_start(canvas_size: tuple[int, int], view_size: int) -> tuple[int, int]:
    """Top-left corner (top, left) of the centre window: the view of validation and test."""
    margin_y, margin_x = view_margin(canvas_size, view_size)
    return margin_y // 2, margin_x // 2


def center_view(x: Tensor, view_size: int) -> Tensor:
    """The centre `view_size` window of every canvas of `x` [B, C, H, W] (`x` itself if it fits)."""
    top, left = center_start((x.shape[-2], x.shape[-1]), view_size)
    return x[..., top : top + view_size, left : left + view_size]


def crop_windows(x: Tensor, starts: Tensor | tuple[int, int], view_size: int) -> Tensor:
    """Cut a `view_size` window from every canvas of `x` [B, C, H, W] at its own corner.

    Args:
        x: canvases [B, C, H, W], any dtype.
        starts: int64 [B, 2] window corners (top, left), or one corner for the batch; every
            corner must lie in [0, H - V] x [0, W - V]. CPU corners are checked.
        view_size: the window side V.

    Returns:
        [B, C, V, V], a new tensor.
    """
    if x.ndim != 4:
        raise ValueError(f"x must be a batch of images [B, C, H, W], got shape {tuple(x.shape)}")
    b, c, h, w = x.shape
    margin_y, margin_x = view_margin((h, w), view_size)
    starts = torch.as_tensor(starts)
    if starts.is_floating_point() or starts.is_complex() or starts.dtype == torch.bool:
        raise ValueError(f"crop starts must be integer pixels, got dtype {starts.dtype}")
    starts = per_sample(starts, b, "crop starts", "(top, left)").long()
    if starts.device.type == "cpu" and b:
        low, high = starts.aminmax(dim=0)
        if low.min() < 0 or high[0] > margin_y or high[1] > margin_x:
            raise ValueError(
                f"crop offsets up to (top, left)={tuple(high.tolist())} (lowest "
                f"{tuple(low.tolist())}) leave the margin [0, {margin_y}] x [0, {margin_x}] that "
                f"a {view_size}-px view leaves on a {h}x{w} canvas: use a smaller crop range or a "
                "smaller view_size"
            )
    if x.numel() == 0:
        return x.new_empty(b, c, view_size, view_size)
    starts = starts.to(x.device, non_blocking=True)
    flat = x.contiguous().view(-1)
    rows = starts[:, :1] + torch.arange(view_size, device=x.device)  # canvas row per output row
    planes = torch.arange(b * c, device=x.device).view(b, c, 1) * (h * w)
    first = planes + (rows * w + starts[:, 1:])[:, None, :]  # [B, C, V] start of each run
    runs = flat.as_strided((flat.numel() - view_size + 1, view_size), (1, 1))
    return runs.index_select(0, first.view(-1)).view(b, c, view_size, view_size)
