"""The Hugging Face Space configuration: Space.yaml and the README's front matter agree."""

from __future__ import annotations

import re

import yaml
from conftest import ROOT


def front_matter() -> dict:
    text = (ROOT / "README.md").read_text()
    match = re.match(r"---\n(.*?)\n---\n", text, re.DOTALL)
    assert match, "README.md must start with a YAML front matter block"
    return yaml.safe_load(match.group(1))


def test_readme_front_matter_equals_space_yaml():
    assert front_matter() == yaml.safe_load((ROOT / "Space.yaml").read_text())


def test_the_app_file_exists_and_the_sdk_version_is_the_pinned_gradio():
    space = yaml.safe_load((ROOT / "Space.yaml").read_text())
    assert (ROOT / space["app_file"]).is_file()
    pinned = re.search(r"^gradio==(\S+)$", (ROOT / "requirements.txt").read_text(), re.MULTILINE).group(1)
    assert space["sdk"] == "gradio" and str(space["sdk_version"]) == pinned
    assert space["python_version"] == "3.11" and len(space["short_description"]) <= 60


def test_the_space_downloads_the_published_weights_of_every_scale_at_build_time():
    space = yaml.safe_load((ROOT / "Space.yaml").read_text())
    repo, files = space["preload_from_hub"][0].split(" ")
    assert repo in space["models"] and files.split(",") == [
        "config.json",
        "pytorch_model_2x.pt",
        "pytorch_model_3x.pt",
        "pytorch_model_4x.pt",
    ]
    assert space["suggested_hardware"] == "cpu-basic" and "super-resolution" in space["tags"]
