"""Train one variant on the embedded digits (or any dataset), then test its accuracy and
shift robustness.

    python recipes/train.py --variant blurpool
    python recipes/train.py --variant blurpool --head gap --max_epochs 20
    python recipes/train.py --accelerator cpu --devices 2 --strategy ddp
    python recipes/train.py --variant blurpool --resume      # continue a stopped run
    python recipes/train.py --help                           # every option and variant

Exit codes: 0 finished, 1 failed (diverged), 2 bad input, 130 Ctrl-C, 143 SIGTERM.
"""

from __future__ import annotations

import sys

from lightning.pytorch.utilities.rank_zero import rank_zero_only

from invariance_recipes.run.cli import format_metrics, run_cli
from invariance_recipes.run.training import train


def main() -> int:
    result = run_cli(train, sys.argv[1:])
    if isinstance(result, int):
        return result
    run_dir, metrics = result
    if rank_zero_only.rank == 0:
        print(format_metrics(metrics))
        print(f"run folder: {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
