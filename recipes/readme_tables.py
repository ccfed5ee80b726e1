"""Rewrite the README's result tables from docs/results/*/results.md (or check them).

python recipes/readme_tables.py           # rewrite every <!-- results:NAME --> block
python recipes/readme_tables.py --check   # exit 1 if a block differs from its results.md
"""

import sys

from invariance_recipes.commands import main

if __name__ == "__main__":
    sys.exit(main(["readme-tables", *sys.argv[1:]]))
