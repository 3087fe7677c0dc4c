"""The variant table (models/variants.py): the switches of each variant, names, hashing."""

import dataclasses

import jax
import jax.numpy as jnp
import pytest

from superfusion_jax.inference import Pipeline
from superfusion_jax.models.superfusion import SuperFusion
from superfusion_jax.models.variants import (
    BY_NAME,
    CORRECTED,
    FAITHFUL,
    VARIANTS,
    Variant,
    variant_named,
)

QUIRKS = [f.name for f in dataclasses.fields(Variant) if f.type in (bool, "bool")]


def test_the_quirks_are_the_three_of_the_table():
    assert QUIRKS == ["sigmoid_typo", "discarded_direction_attention", "align_corners_base_grid"]


def test_faithful_reproduces_every_quirk_corrected_none():
    assert all(getattr(FAITHFUL, quirk) for quirk in QUIRKS)
    assert not any(getattr(CORRECTED, quirk) for quirk in QUIRKS)


def test_pad_multiples():
    assert (FAITHFUL.pad_multiple, CORRECTED.pad_multiple) == (1, 8)


def test_names():
    assert VARIANTS == ("faithful", "corrected")
    assert BY_NAME == {"faithful": FAITHFUL, "corrected": CORRECTED}
    for name in VARIANTS:
        assert variant_named(name) is BY_NAME[name] and variant_named(name).name == name


@pytest.mark.parametrize("name", ["Faithful", "", None, ["faithful"]])
def test_an_unknown_name_is_refused_listing_the_names(name):
    with pytest.raises(ValueError, match="unknown variant") as error:
        variant_named(name)
    assert all(repr(n) in str(error.value) for n in VARIANTS)


def test_variants_are_frozen_and_hashable():
    with pytest.raises(dataclasses.FrozenInstanceError):
        FAITHFUL.sigmoid_typo = False
    assert len({FAITHFUL, CORRECTED, variant_named("faithful")}) == 2
    assert hash(SuperFusion(FAITHFUL)) == hash(SuperFusion(variant_named("faithful")))


def test_a_variant_is_a_jit_static_argument():
    traces = []

    def scale(x, variant):
        traces.append(variant)
        return x * variant.pad_multiple

    padded = jax.jit(scale, static_argnames="variant")
    x = jnp.ones(())
    assert float(padded(x, variant=FAITHFUL)) == 1.0
    assert float(padded(x, variant=variant_named("faithful"))) == 1.0
    assert float(padded(x, variant=CORRECTED)) == 8.0
    assert traces == [FAITHFUL, CORRECTED]  # an equal variant reuses the compiled function


def test_a_name_where_a_variant_belongs_is_refused():
    with pytest.raises(TypeError, match="variant_named"):
        Pipeline(None, "faithful", "global")
    x = jnp.zeros((1, 16, 16, 3))
    with pytest.raises(TypeError, match="variant_named"):
        SuperFusion("faithful").init(jax.random.key(0), x, x)
