"""Worst-case (N-way) consistency: the share of images whose top-1 survives every shift of a set.

Two shifted copies that agree say little about the shifts that were not drawn. Requiring one top-1
over N copies is the N-way consistency of LPS (Rojas-Gomez et al., NeurIPS 2022); requiring it
over every offset of a grid is the "adversarial" consistency of Alias-Free Convnets (Michaeli et
al., CVPR 2023); with N = 2 it is Zhang's pairwise consistency. Against the labels it is AFC's
robust accuracy: correct on every copy.
"""

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from invariance_recipes.common.checks import check_choice
from invariance_recipes.lightning_modules.functional import top1

AGGREGATIONS = ("over-images", "mean-of-batch-means")


class WorstCaseConsistency(Metric):
    """Share of images whose top-1 class is the same on all N copies (or correct on all).

    Args:
        against_target: count images that are correct on every copy (pass `target`), instead of
            images whose copies agree with each other.
        aggregation: "over-images" (images that pass / images) or "mean-of-batch-means" (the
            mean over `update` calls of each call's share, as the APS and TIPS code average).
        kwargs: forwarded to `torchmetrics.Metric`.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    plot_lower_bound = 0.0
    plot_upper_bound = 1.0

    passed: Tensor
    total: Tensor
    batch_shares: Tensor
    batches: Tensor

    def __init__(
        self, against_target: bool = False, aggregation: str = "over-images", **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        check_choice("aggregation", aggregation, AGGREGATIONS)
        self.against_target = against_target
        self.aggregation = aggregation
        self.add_state("passed", torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("batch_shares", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("batches", torch.tensor(0), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor | None = None) -> None:
        """Count images whose N copies pass: preds [N, B, C] scores or [N, B] class indices."""
        classes = top1(preds, "preds", layout="N, B")
        if self.against_target:
            if target is None or target.shape != classes.shape[1:]:
                raise ValueError(
                    f"target must be labels [B={classes.shape[1]}] when against_target=True, got "
                    f"{None if target is None else tuple(target.shape)}"
                )
            passed = (classes == target).all(dim=0)
        else:
            if len(classes) < 2:
                raise ValueError(f"preds must stack N >= 2 copies [N, B], got {len(classes)}")
            passed = (classes == classes[0]).all(dim=0)
        if passed.numel() == 0:
            return
        self.passed += passed.sum()
        self.total += passed.numel()
        self.batch_shares += passed.double().mean()
        self.batches += 1

    def compute(self) -> Tensor:
        """The share of passing images, aggregated as chosen."""
        if self.aggregation == "mean-of-batch-means":
            return (self.batch_shares / self.batches).float()
        return self.passed / self.total

    def extra_repr(self) -> str:
        return f"against_target={self.against_target}, aggregation={self.aggregation!r}"
