"""Names of the official PyTorch state_dicts (`DM`, `FN`) and where each tensor lives in Flax.

`locate(network, key)` maps one official key to a `Location`: the Flax collection
('params' or 'batch_stats'), the path inside it (under 'dense_matcher' / 'fusion_net'), and how
the tensor is laid out there. The mapping is a list of rules, one per family of layers, so the
reverse direction (export) uses the same table.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

NETWORKS = {"DM": "dense_matcher", "FN": "fusion_net"}
RNN_DIRECTIONS = ("up", "right", "down", "left")  # row order of the Flax (4, C) arrays


@dataclasses.dataclass(frozen=True)
class Location:
    """Where an official tensor lives in the Flax variables.

    layout: 'conv' (torch OIHW <-> Flax HWIO), 'vector' (same array), 'count' (int scalar),
    'rnn' (torch [C, 1, 1, 1] weight or [C] bias <-> row `row` of a Flax (4, C) array).
    """

    collection: str
    path: tuple[str, ...]
    layout: str
    row: int = -1


_CONV = r"\.model\.0\.(weight|bias)$"
_BN = r"\.model\.1\.(running_mean|running_var|num_batches_tracked)$"
_LEAF = {"weight": "kernel", "bias": "bias"}
_BN_LEAF = {
    "running_mean": "mean",
    "running_var": "var",
    "num_batches_tracked": "num_batches_tracked",
}

# (regex on the key without its leaf suffix, Flax module path template) per network.
_RULES = {
    "DM": [
        (r"feature_extractor_unshare1\.layers\.(\d)", "extractor_ir/layer_{0}"),
        (r"feature_extractor_unshare2\.layers\.(\d)", "extractor_vi/layer_{0}"),
        (r"feature_extractor_share(\d)\.(\d)", "share{0}/layer_{1}"),
        (r"(matcher\d|refiner)\.preprocessor(?:\.0)?", "{0}/preprocessor"),
        (r"(matcher\d|refiner)\.featcompressor\.(\d)", "{0}/compressor/layer_{1}"),
        (r"(matcher\d)\.layers\.(\d)", "{0}/head/layer_{1}"),
        (r"(refiner)\.estimator\.(\d)", "{0}/head/layer_{1}"),
    ],
    "FN": [
        (r"(encoder_ir|encoder_vi|decoder)\.(\d)", "{0}_{1}"),
        (r"SAM\.(conv_in|conv2|conv3|conv_out)", "gsam/{0}"),
        (r"SAM\.attention_layer\.model\.(\d)", "gsam/attention_{0}"),
    ],
}
_RNN = re.compile(r"SAM\.(irnn\d)\.(up|right|down|left)_weight\.(weight|bias)$")


def locate(network: str, key: str) -> Location | None:
    """The Flax location of official `key` of network 'DM' or 'FN', or None if unknown."""
    root = NETWORKS[network]
    if network == "FN" and (m := _RNN.fullmatch(key)):
        irnn, direction, leaf = m.groups()
        return Location(
            "params", (root, "gsam", irnn, leaf), "rnn", RNN_DIRECTIONS.index(direction)
        )
    for pattern, template in _RULES[network]:
        if m := re.fullmatch(pattern + _CONV, key):
            *groups, leaf = m.groups()
            layout = "conv" if leaf == "weight" else "vector"
            path = (root, *template.format(*groups).split("/"), "conv", _LEAF[leaf])
            return Location("params", path, layout)
        if m := re.fullmatch(pattern + _BN, key):
            *groups, leaf = m.groups()
            layout = "count" if leaf == "num_batches_tracked" else "vector"
            path = (root, *template.format(*groups).split("/"), "norm", _BN_LEAF[leaf])
            return Location("batch_stats", path, layout)
    return None


def to_flax(tensor: np.ndarray, loc: Location) -> np.ndarray:
    """An official tensor (numpy) in the layout of its Flax location (before row insertion)."""
    if loc.layout == "conv":
        return np.ascontiguousarray(np.transpose(tensor, (2, 3, 1, 0)))
    if loc.layout == "rnn":
        return tensor.reshape(-1)
    if loc.layout == "count":
        return np.asarray(tensor, np.int32)
    return tensor


def expected_flax_shape(torch_shape: tuple[int, ...], loc: Location) -> tuple[int, ...]:
    """Shape the official tensor takes in Flax (for rnn: the row's length)."""
    if loc.layout == "conv" and len(torch_shape) == 4:
        o, i, h, w = torch_shape
        return (h, w, i, o)
    if loc.layout == "rnn":
        return (int(np.prod(torch_shape)),)
    return tuple(torch_shape)
