"""Redraw comparisons' results.md from their results.csv and per-image outcomes with the
statistics of this checkout, without training.

python recipes/redraw_results.py docs/results/small-shift [more folders]
"""

import sys

from invariance_recipes.commands import main

if __name__ == "__main__":
    sys.exit(main(["redraw", *sys.argv[1:]]))
