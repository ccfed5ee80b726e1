"""Print the theoretical receptive field of every backbone and downsampling method.

    python recipes/receptive_fields.py
    python recipes/receptive_fields.py --image_size 48 --erf docs/receptive_fields/erf.png

One Markdown row per (backbone, downsample): the last feature map's receptive field in
pixels and as a fraction of the image, its jump (total stride) and side. ``--erf PNG``
also draws the effective receptive field (Luo et al. 2016) of an untrained small CNN over
random images, with the theoretical square on it. For a trained checkpoint use
``python recipes/evaluate.py --ckpt PATH --receptive_field``.
"""

import sys

from invariance_recipes.commands import main

if __name__ == "__main__":
    sys.exit(main(["receptive-fields", *sys.argv[1:]]))
