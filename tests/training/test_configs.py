"""Every shipped recipe in configs/ builds and passes the training loop's config check, so an
edit to a recipe (sizes, frames, stages) cannot leave a config that train.py refuses."""

import importlib

import pytest

from superfusion_jax.training import loop
from tests.conftest import REPO

RECIPES = sorted(
    p.stem for p in (REPO / "configs").glob("*.py") if p.stem not in ("__init__", "common")
)
# Fields a recipe leaves to the user's command line (its docstring says so).
USER_FIELDS = {"semantic": {"segmentation_checkpoint": "model_final.pth"}}


def test_every_recipe_is_listed():
    assert {"demo", "joint", "roadscene", "semantic", "segmentation"} <= set(RECIPES)


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_passes_the_config_check(name):
    config = importlib.import_module(f"configs.{name}").get_config()
    user_fields = USER_FIELDS.get(name, {})
    for field in user_fields:
        with pytest.raises(ValueError, match=field):
            loop.check_config(config)
    config.update(user_fields)
    loop.check_config(config)
