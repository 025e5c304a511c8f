"""Regenerate the example images from scikit-image's bundled photographs (see LICENSE.md here).

Each HR photo is saved as is; its LR version is made with this project's MATLAB-exact bicubic
(``mdsr downscale``'s rule: crop to a multiple of the scale, then imresize 1/scale), so the demo's
ground-truth mode can show real PSNR on them.

    python examples/make_examples.py
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image
from skimage import data

from mdsr.imaging import bicubic_downscale

HERE = Path(__file__).parent
EXAMPLES = {"astronaut": (data.astronaut, 4), "coffee": (data.coffee, 3), "chelsea": (data.chelsea, 2)}


def main() -> None:
    for name, (load, scale) in EXAMPLES.items():
        hr = load()
        Image.fromarray(hr).save(HERE / f"{name}.png", optimize=True)
        Image.fromarray(bicubic_downscale(hr, scale)).save(HERE / f"{name}_lr_x{scale}.png", optimize=True)


if __name__ == "__main__":
    main()
