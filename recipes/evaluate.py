"""Rebuild a trained model from its checkpoint and report its shift robustness in full.

    python recipes/evaluate.py --ckpt runs/blurpool-seed0/checkpoints/last.ckpt
    python recipes/evaluate.py --ckpt PATH --max_shifts 1 2 4 8 --test_placement top-left

Prints accuracy, shift consistency per mode and max shift, flip rate, MAC and the
accuracy-vs-offset curve; writes ``report.json``, ``shift_curve.csv`` and
``shift_curve.png`` next to the run (or to ``--out``) and logs them like training does.
"""

import sys

from invariance_recipes.commands import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
