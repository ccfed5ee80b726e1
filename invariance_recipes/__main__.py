"""``python -m invariance_recipes COMMAND [OPTIONS]``: the same as ``invariance-recipes``."""

import sys

from invariance_recipes.commands import main

if __name__ == "__main__":
    sys.exit(main())
