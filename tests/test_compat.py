"""The super-image model card's snippet works after `from mdsr import MdsrModel, ImageLoader`."""

from __future__ import annotations

from conftest import crop, super_image_folder, tiny
from PIL import Image


def test_the_model_card_snippet_runs_unchanged(tmp_path, coffee):
    from mdsr import ImageLoader, MdsrModel

    folder = super_image_folder(tmp_path / "eugenesiow" / "mdsr-bam", tiny(scales=(2,)), 2)
    image = crop(coffee, (60, 40))

    model = MdsrModel.from_pretrained(str(folder), scale=2)
    inputs = ImageLoader.load_image(image)
    preds = model(inputs)
    ImageLoader.save_image(preds, str(tmp_path / "scaled_2x.png"))
    ImageLoader.save_compare(inputs, preds, str(tmp_path / "scaled_2x_compare.png"))

    assert Image.open(tmp_path / "scaled_2x.png").size == (120, 80)
    assert Image.open(tmp_path / "scaled_2x_compare.png").size == (240, 80)
