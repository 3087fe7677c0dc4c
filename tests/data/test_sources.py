"""data.sources.make_source with synthetic_infrared: exactly aligned stand-in infrared images."""

import numpy as np

from configs import common
from superfusion_jax.data.sources import SyntheticInfrared, make_source
from superfusion_jax.data.stress import synthetic_infrared


def _config(synthetic_infrared: bool):
    config = common.get_base_config()
    config.data.source = "synthetic"
    config.data.synthetic_pairs = 3
    config.data.synthetic_size = 40
    config.data.synthetic_infrared = synthetic_infrared
    return config


def test_infrared_replaced_by_the_visible_images_stand_in():
    plain = make_source(_config(False).data)
    source = make_source(_config(True).data)
    assert isinstance(source, SyntheticInfrared) and len(source) == len(plain) == 3
    for index in (0, 2):
        record, original = source[index], plain[index]
        np.testing.assert_array_equal(record["ir"], synthetic_infrared(original["vi"], seed=index))
        assert not np.array_equal(record["ir"], original["ir"])
        for key in ("vi", "label", "name"):
            np.testing.assert_array_equal(record[key], original[key])


def test_off_by_default_and_the_held_out_set_follows_the_training_set():
    config = common.get_base_config()
    assert not config.data.synthetic_infrared and not config.eval.synthetic_infrared
    config.data.synthetic_infrared = True
    assert config.eval.synthetic_infrared
