"""Every shipped recipe in configs/ builds and passes the training loop's config check, so an
edit to a recipe (sizes, frames, stages) cannot leave a config that train.py refuses; its
`runlocal` form is a small offline run; no recipe names a data path outside the repository."""

import importlib

import pytest

from configs import common
from superfusion_jax.training import loop
from tests.conftest import REPO

RECIPES = sorted(
    p.stem for p in (REPO / "configs").glob("*.py") if p.stem not in ("__init__", "common")
)
# Fields a recipe leaves to the user's command line (its docstring says so).
USER_FIELDS = {"semantic": {"segmentation_checkpoint": "model_final.pth"}}
# Recipes that train on folders, whose data folder is their argument.
FOLDER_RECIPES = {"roadscene", "residual", "fusion"}


def _config(name, arg=None):
    module = importlib.import_module(f"configs.{name}")
    return module.get_config() if arg is None else module.get_config(arg)


def test_every_recipe_is_listed():
    assert {"demo", "joint", "roadscene", "semantic", "segmentation"} | FOLDER_RECIPES <= set(
        RECIPES
    )


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_passes_the_config_check(name):
    config = _config(name, "data=/data/shared" if name in FOLDER_RECIPES else None)
    user_fields = USER_FIELDS.get(name, {})
    for field in user_fields:
        with pytest.raises(ValueError, match=field):
            loop.check_config(config)
    config.update(user_fields)
    loop.check_config(config)
    if name in FOLDER_RECIPES:
        assert config.data.ir_dir == "/data/shared/roadscene_train/ir"
        assert config.eval.vi_dir == "/data/shared/msrs_test/vi"


@pytest.mark.parametrize("name", sorted(FOLDER_RECIPES))
def test_folder_recipe_without_data_names_what_to_give(name):
    config = _config(name)
    assert config.data.ir_dir == config.data.vi_dir == config.eval.ir_dir == ""
    with pytest.raises(ValueError, match=r"config.data.ir_dir .*configs/fusion.py:data="):
        loop.check_config(config)


@pytest.mark.parametrize("name", [n for n in RECIPES if n != "demo"])
def test_runlocal_is_a_small_offline_run(name):
    config = _config(name, "runlocal")
    config.update(USER_FIELDS.get(name, {}))
    loop.check_config(config)
    assert config.data.source == config.eval.source == "synthetic"
    assert config.num_steps <= 300 and config.crop_size <= 64
    assert config.stage == _config(name, "data=x" if name in FOLDER_RECIPES else None).stage


def test_demo_is_joint_runlocal():
    assert _config("demo").to_dict() == _config("joint", "runlocal").to_dict()


def test_parse_arg():
    args = common.parse_arg("runlocal,data=/a/b", runlocal=False, data="")
    assert args.runlocal is True and args.data == "/a/b"
    assert common.parse_arg("runlocal=false", runlocal=True).runlocal is False
    assert common.parse_arg(None, runlocal=False).runlocal is False
    with pytest.raises(ValueError, match="unknown argument 'dta'.*'data'"):
        common.parse_arg("dta=/a", runlocal=False, data="")
    with pytest.raises(ValueError, match="runlocal is true or false"):
        common.parse_arg("runlocal=maybe", runlocal=False)
