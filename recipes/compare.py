"""Compare variants under one experiment: same data, seeds and budget; one table and plots.

    python recipes/compare.py --experiment small-shift
    python recipes/compare.py --experiment unseen-position --seeds 3
    python recipes/compare.py --experiment augmentation-sweep --variants baseline blurpool
    python recipes/compare.py --experiment small-shift --quick --logger csv
    python recipes/compare.py --experiment small-shift --dataset cifar10 --backbone resnet18 \\
        -- --trainer.accelerator gpu --data.download true --trainer.max_epochs 60

Every run is a ``train.py`` run (options after ``--`` go to each of them), grouped in W&B
under the experiment. Results go to ``results/EXPERIMENT/`` (``-DATASET`` and ``-quick``
appended when used): ``results.csv`` (one row per run, written after each run),
``results.md`` (mean ± std per variant) and PNG plots. A rerun skips finished runs and
resumes interrupted ones, so a failed or stopped comparison continues where it ended.
"""

import sys

from invariance_recipes.commands import main

if __name__ == "__main__":
    sys.exit(main(["compare", *sys.argv[1:]]))
