"""A checkpoint written before an architecture key existed still loads: the key reads as its
default, and only a real difference is refused."""

from pathlib import Path

import pytest
import torch

from invariance_recipes.lightning_modules import InvarianceClassifier
from invariance_recipes.run.checkpoints import check_checkpoint
from invariance_recipes.run.errors import UsageError


def write_checkpoint(path: Path, hparams: dict) -> Path:
    torch.save({"hyper_parameters": hparams, "state_dict": {}}, path)
    return path


def test_a_key_missing_from_an_older_checkpoint_reads_as_its_default(tmp_path: Path) -> None:
    model = InvarianceClassifier(downsample="lps")
    older = {k: v for k, v in model.hparams.items() if k != "lps_hidden_divisor"}
    check_checkpoint(write_checkpoint(tmp_path / "old.ckpt", older), model)
    narrow = {**older, "lps_hidden_divisor": 8}
    with pytest.raises(UsageError, match="lps_hidden_divisor: checkpoint 8 vs this run 1"):
        check_checkpoint(write_checkpoint(tmp_path / "narrow.ckpt", narrow), model)
