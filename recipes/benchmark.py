"""Performance recipe: ratios measured side by side in one process, written as CSV and Markdown.

    python recipes/benchmark.py                  # CPU; writes docs/benchmarks/cpu.{csv,md}
    python recipes/benchmark.py --device cuda    # adds bfloat16 rows; writes cuda.{csv,md}
    python recipes/benchmark.py --quick          # tiny shapes: a smoke test of this script
    python recipes/benchmark.py --only blurpool translate --rounds 21

Every row compares one of ours with a baseline timed in the same rounds (see ``timing.py``):
``ratio`` is ours' time per call over the baseline's, the median over rounds (lower is
faster), ``spread`` the interquartile range of the per-round ratios, and ``target`` the
largest ratio the project aims for on CPU. The baselines:

- blurpool: forward + backward of BlurPool against the layers users would otherwise pick
  (timm ``BlurPool2d``, kornia ``BlurPool2D``/``MaxBlurPool2D``, antialiased-cnns
  ``BlurPool``; rows are skipped with a note when one is not installed) and against the
  memory-bound floor, a stride-2 ``avg_pool2d`` of the same input.
- translate: batched per-sample ``translate`` against ``x.clone()`` (the memory-copy floor)
  and a per-sample Python loop, at batch 256.
- validation: ``trainer.validate`` of the blurpool variant with ``val/consistency`` against
  the same without it (two extra forward passes: floor 3).
- training: ``trainer.fit`` against a plain PyTorch loop on the same network, data, batch size
  and optimizer (Lightning's overhead), and the DataModule's ``heavy`` train loader against
  that training step (is augmentation the bottleneck?).
"""

import sys

from invariance_recipes.benchmarks.suite import main

if __name__ == "__main__":
    sys.exit(main())
