"""params.yaml is the rendering of the built-in defaults, every key described."""

from pathlib import Path

import pytest
import yaml

from bacl.params import Params, load_params, render_params

ROOT = Path(__file__).resolve().parents[2]


def test_params_yaml_is_the_rendered_defaults():
    assert (ROOT / "params.yaml").read_text() == render_params(load_params(None), preset="synthetic")


@pytest.mark.parametrize("config", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_preset_renders_to_a_file_that_loads_back(config, tmp_path):
    params = load_params(config)
    text = render_params(params, preset=config.stem)
    path = tmp_path / "params.yaml"
    path.write_text(text)
    assert load_params(path) == params


def test_every_key_has_its_description_beside_it():
    lines = [line for line in render_params(Params()).splitlines() if line and not line.startswith("#")]
    assert lines and all("  # " in line for line in lines), [line for line in lines if "  # " not in line]
    assert yaml.safe_load(render_params(Params()))["evaluate"]["detections_per_img"] == 15
