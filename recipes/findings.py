"""Write the findings table (each published claim, our number with its 95% interval, and whether
it holds here) to docs/results/findings/results.md from the comparisons in docs/results/.

python recipes/findings.py
"""

import sys

from invariance_recipes.commands import main

if __name__ == "__main__":
    sys.exit(main(["findings", *sys.argv[1:]]))
