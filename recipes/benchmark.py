"""Performance recipe: ours against the peers and floors, side by side in one process, at the
default torch thread count and at 1 thread; writes docs/benchmarks/DEVICE.{csv,md}.

    python recipes/benchmark.py                  # CPU; writes docs/benchmarks/cpu.{csv,md}
    python recipes/benchmark.py --threads 2 1    # the thread counts to run at
    python recipes/benchmark.py --device cuda    # adds bfloat16 rows; writes cuda.{csv,md}
    python recipes/benchmark.py --quick          # tiny shapes: a smoke test of this script
    python recipes/benchmark.py --only layers translate --rounds 21

Sections (``--only``): layers (BlurPool2d and MaxBlurPool2d against timm, kornia and
antialiased-cnns with the same padding, forward + backward), translate (every shift mode
against ``x.clone()``), validation (``val/consistency``'s cost), training (Lightning against a
plain loop; the augmenting loader against the step), layout (channels-last training steps)
and imports (``import invariance_recipes.lightning_modules.layers`` against ``import torch``).
"""

import sys

from invariance_recipes.commands import main

if __name__ == "__main__":
    sys.exit(main(["benchmark", *sys.argv[1:]]))
