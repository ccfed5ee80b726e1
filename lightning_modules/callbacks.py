"""Show the shift failure, not just a number: the accuracy-vs-offset curve and example
inputs at several offsets with their predictions, as files and (when W&B logs) as a
``wandb.Table`` line plot and an image panel."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger
from torch import Tensor

from invariance_recipes.lightning_modules.metrics import AccuracyVsShift
from invariance_recipes.lightning_modules.shifts import translate

if TYPE_CHECKING:
    from invariance_recipes.lightning_modules.classifier import InvarianceClassifier

#: The file in the run folder that records which checkpoint the test used and what it measured.
TESTED = "tested.json"
#: The run's learning curve: one row per epoch (see `LearningCurve`).
CURVE_CSV = "curve.csv"
CURVE_COLUMNS = ("step", "epoch", "val_acc", "train_loss")
EXAMPLE_COLUMNS = 7  # offsets shown per example row
EXAMPLE_ROWS = 6


class ShiftReportLogger(L.Callback):
    """After ``trainer.test``: write ``shift_curve.csv``/``.png`` and ``shift_examples.png``
    to ``out_dir`` and log them to W&B when the trainer's logger is a ``WandbLogger``.

    Reads the curve that the model's test report took at the end of the test epoch
    (``test_report.last_curve``) and the first test batch for the example panel.
    """

    def __init__(self, out_dir: str | Path) -> None:
        self.out_dir = Path(out_dir)
        self._examples: tuple[Tensor, Tensor] | None = None

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._examples = None

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: InvarianceClassifier,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._examples is None and trainer.is_global_zero:
            images = pl_module.protocol_report.view(batch[0][:64]).detach()
            self._examples = (images, batch[1][:64].detach())

    @torch.no_grad()
    def on_test_end(self, trainer: L.Trainer, pl_module: InvarianceClassifier) -> None:
        report = pl_module.test_report
        if not trainer.is_global_zero or report.last_curve is None:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        record_test(trainer, self.out_dir)
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        self.out_dir.mkdir(parents=True, exist_ok=True)
        offsets, accuracy = report.last_curve
        rows = [(int(dy), int(dx), float(a)) for (dy, dx), a in zip(offsets, accuracy, strict=True)]
        write_curve(rows, self.out_dir)
        examples_fig = None
        if self._examples is not None:
            examples_fig = plot_examples(pl_module, *self._examples, offsets)
            examples_fig.savefig(self.out_dir / "shift_examples.png", dpi=100)
        logger = trainer.logger
        if isinstance(logger, WandbLogger):
            import wandb

            table = wandb.Table(columns=["dy", "dx", "accuracy"], data=[list(r) for r in rows])
            logger.experiment.log(
                {
                    "test/acc_vs_shift": wandb.plot.line(
                        table, "dx", "accuracy", title="test accuracy vs diagonal offset"
                    ),
                    "test/acc_vs_shift_table": table,
                    **({"test/shift_examples": wandb.Image(examples_fig)} if examples_fig else {}),
                }
            )
        plt.close("all")


class LearningCurve(L.Callback):
    """Write ``curve.csv`` in ``out_dir``: per training epoch the optimizer step reached, the
    epoch, the validation accuracy and the epoch's mean training loss, as Lightning reduced and
    logged them (``val/acc``, ``train/loss_epoch``), whatever logger the run uses.

    This is what the comparisons' plateau rule reads. A resumed run keeps the rows up to the
    step its checkpoint holds and continues after them, so the file is the curve of one
    uninterrupted run.
    """

    def __init__(self, out_dir: str | Path) -> None:
        self.path = Path(out_dir) / CURVE_CSV
        self._validated_epoch: int | None = None

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:  # a budget in steps may end an epoch unvalidated
            self._validated_epoch = trainer.current_epoch

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        # the restored step (current_epoch is not restored yet when this hook runs)
        kept = [r for r in read_curve(self.path) if r["step"] <= trainer.global_step]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "w", newline="") as f:
            writer = csv.DictWriter(f, CURVE_COLUMNS)
            writer.writeheader()
            writer.writerows(kept)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = trainer.callback_metrics
        validated = self._validated_epoch == trainer.current_epoch and "val/acc" in metrics
        if not trainer.is_global_zero or not validated:
            return
        loss = metrics.get("train/loss_epoch")
        row = {
            "step": trainer.global_step,
            "epoch": trainer.current_epoch,
            "val_acc": float(metrics["val/acc"]),
            "train_loss": "" if loss is None else float(loss),
        }
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, CURVE_COLUMNS).writerow(row)


def read_curve(path: Path) -> list[dict[str, Any]]:
    """The rows of a ``curve.csv`` (numbers parsed; none if the file is missing)."""
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [
            {
                "step": int(r["step"]),
                "epoch": int(r["epoch"]),
                "val_acc": float(r["val_acc"]),
                "train_loss": float(r["train_loss"]) if r["train_loss"] else float("nan"),
            }
            for r in csv.DictReader(f)
        ]


def record_test(trainer: L.Trainer, out_dir: Path) -> None:
    """Write ``TESTED``: the tested checkpoint (relative to ``out_dir`` when inside it) and every
    test metric, so later measurements reuse that checkpoint instead of guessing it."""
    ckpt = trainer.ckpt_path
    if ckpt:
        path = Path(ckpt).resolve()
        root = out_dir.resolve()
        ckpt = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
    metrics = {
        key: float(value) for key, value in trainer.callback_metrics.items() if value.numel() == 1
    }
    record = {"checkpoint": ckpt, "metrics": metrics}
    (out_dir / TESTED).write_text(json.dumps(record, indent=2, sort_keys=True))


def write_curve(rows: list[tuple[int, int, float]], out_dir: Path) -> None:
    """``shift_curve.csv`` and ``shift_curve.png``: accuracy per (dy, dx) offset, drawn by the
    one curve plotter, :meth:`AccuracyVsShift.plot`."""
    import matplotlib.pyplot as plt

    with open(out_dir / "shift_curve.csv", "w", newline="") as f:
        csv.writer(f).writerows([("dy", "dx", "accuracy"), *rows])
    curve = AccuracyVsShift([(dy, dx) for dy, dx, _ in rows])
    fig, ax = plt.subplots(figsize=(5, 3.2), layout="constrained")
    curve.plot(torch.tensor([accuracy for _, _, accuracy in rows]), ax=ax)
    ax.set(ylabel="test accuracy")
    ax.grid(alpha=0.3)
    fig.savefig(out_dir / "shift_curve.png", dpi=100)
    plt.close(fig)


@dataclass(frozen=True)
class ExampleGrid:
    """What the examples panel shows, computed apart from the drawing so that it can be tested.

    ``rows`` index the images given, ``offsets`` [C, 2] always include (0, 0),
    ``preds`` [C, R] are the predictions per offset and row, ``unshifted`` [R] the prediction on
    the unshifted image (the reference a change is marked against), ``labels`` [R] the true
    labels, and ``shifted`` [C, R, ...] the images drawn.
    """

    rows: Tensor
    offsets: Tensor
    preds: Tensor
    unshifted: Tensor
    labels: Tensor
    shifted: Tensor

    @property
    def changed(self) -> Tensor:
        """[C, R]: the prediction differs from the unshifted image's prediction."""
        return self.preds != self.unshifted

    @property
    def correct(self) -> Tensor:
        """[C, R]: the prediction is the true label."""
        return self.preds == self.labels


def example_offsets(offsets: Tensor, columns: int = EXAMPLE_COLUMNS) -> Tensor:
    """Up to `columns` offsets spread over the sweep, one of them (0, 0): the reference."""
    offsets = torch.as_tensor(offsets).long().reshape(-1, 2)
    pick = torch.linspace(0, len(offsets) - 1, columns).round().long().unique()
    chosen = offsets[pick]
    if not (chosen == 0).all(1).any():  # replace the offset nearest (0, 0) by (0, 0)
        chosen[chosen.abs().sum(1).argmin()] = 0
    return chosen


@torch.no_grad()
def example_grid(
    model: Callable[[Tensor], Tensor],
    images: Tensor,
    labels: Tensor,
    offsets: Tensor,
    fill: float = 0.0,
    rows: int = EXAMPLE_ROWS,
) -> ExampleGrid:
    """Predict `images` at each of `example_offsets(offsets)` and pick `rows` images.

    Rows prefer images whose prediction changes under some shift (what the metrics count), then
    images misclassified unshifted; ties keep the batch order.
    """
    offsets = example_offsets(offsets)
    shifted = torch.stack([translate(images, tuple(o.tolist()), "zero", fill) for o in offsets])
    preds = model(shifted.flatten(0, 1)).argmax(-1).view(len(offsets), -1).cpu()
    unshifted = preds[(offsets == 0).all(1).nonzero()[0, 0]]
    labels = labels.cpu()
    changes = (preds != unshifted).any(0).int() * 2 + (unshifted != labels).int()
    order = torch.argsort(changes, descending=True, stable=True)[:rows]
    return ExampleGrid(
        rows=order,
        offsets=offsets,
        preds=preds[:, order],
        unshifted=unshifted[order],
        labels=labels[order],
        shifted=shifted[:, order].cpu(),
    )


def plot_examples(
    pl_module: L.LightningModule, images: Tensor, labels: Tensor, offsets: Tensor
) -> Any:
    """A grid: rows are test images (true label on the left), columns offsets, titles the
    predictions. Red: the prediction differs from the unshifted one; a cross marks a wrong
    prediction, a tick a right one."""
    import matplotlib.pyplot as plt

    was_training = pl_module.training
    pl_module.eval()
    fill = getattr(pl_module, "fill", 0.0)
    grid = example_grid(pl_module, images.to(pl_module.device), labels, offsets, fill)
    pl_module.train(was_training)
    n_cols, n_rows = grid.preds.shape
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(1.3 * n_cols, 1.4 * n_rows + 0.3), squeeze=False
    )
    for r in range(n_rows):
        for c, offset in enumerate(grid.offsets.tolist()):
            image = grid.shifted[c, r].float()
            image = (image - image.min()) / (image.max() - image.min()).clamp_min(1e-8)
            ax = axes[r, c]
            ax.imshow(image.permute(1, 2, 0).squeeze(-1), cmap="gray")
            mark = "\u2713" if grid.correct[c, r] else "\u2717"
            ax.set_title(
                f"{tuple(offset)}: {int(grid.preds[c, r])} {mark}",
                fontsize=7,
                color="red" if grid.changed[c, r] else "black",
                fontweight="bold" if offset == [0, 0] else "normal",
            )
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(f"label {int(grid.labels[r])}", fontsize=7)
    fig.suptitle(
        "predictions under shifts (offset: prediction; red: differs from the unshifted (0, 0) "
        "prediction; \u2713/\u2717: right/wrong)",
        fontsize=8,
    )
    fig.tight_layout()
    return fig
