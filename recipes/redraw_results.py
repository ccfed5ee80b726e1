"""Redraw comparisons' results.md from their results.csv and per-image outcomes with the
statistics of this checkout, without training.

python recipes/redraw_results.py docs/results/small-shift [more folders]
"""

import sys

from invariance_recipes.publish.redraw import redraw_command

if __name__ == "__main__":
    sys.exit(redraw_command(sys.argv[1:]))
