"""Build the comparison dashboard, a saved W&B workspace view, as code.

    python recipes/dashboard.py --entity ME --project invariance-recipes
    python recipes/dashboard.py --entity ME --experiment small-shift --dataset digits
    python recipes/dashboard.py --experiment small-shift --dry-run --spec view.json   # offline

Runs are grouped by variant with mean ± std over seeds, filtered to one comparison (its W&B
group) and dataset, in sections: consistency per protocol, accuracy vs offset, accuracy vs
consistency, training curves and a run comparer. With a W&B login it saves the view and
prints its URL; ``--dry-run`` summarizes the view without a network (``--spec FILE`` writes
its JSON). Needs the ``dashboard`` extra (``pip install "invariance-recipes[dashboard]"``).
"""

import sys

from invariance_recipes.commands import main

if __name__ == "__main__":
    sys.exit(main(["dashboard", *sys.argv[1:]]))
