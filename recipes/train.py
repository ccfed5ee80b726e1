"""Train one variant on the embedded digits (or any dataset), then test its accuracy and
shift robustness.

    python recipes/train.py --variant blurpool
    python recipes/train.py --variant blurpool --head gap --max_epochs 20
    python recipes/train.py --accelerator cpu --devices 2 --strategy ddp
    python recipes/train.py --variant blurpool --resume      # continue a stopped run
    python recipes/train.py --help                           # every option and variant

Exit codes: 0 finished, 1 failed (diverged), 2 bad input, 130 Ctrl-C, 143 SIGTERM.
"""

import sys

from invariance_recipes.commands import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
