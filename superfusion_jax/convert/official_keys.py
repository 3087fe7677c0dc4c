"""Names of the official PyTorch state_dicts (`DM`, `FN`) and where each tensor lives in Flax.

`locate(network, key)` maps one official key to a `Location`: the Flax collection
('params' or 'batch_stats'), the path inside it (under 'dense_matcher' / 'fusion_net'), and how
the tensor is laid out there. The mapping is a list of rules, one per family of layers, used in
both directions: `to_flax` for the import, `to_official` for the export, which writes the keys
in the order of `official_keys` (the release's `state_dict()` order; its parameters in that
order are what `parameters()` yields, so they index `torch.optim.Adam`'s state).
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

NETWORKS = {"DM": "dense_matcher", "FN": "fusion_net"}
RNN_DIRECTIONS = ("up", "right", "down", "left")  # row order of the Flax (4, C) arrays
# Order in which the release's `Spacial_IRNN` declares its four depthwise 1x1 convs.
_RNN_DECLARATION_ORDER = ("left", "right", "up", "down")


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


def official_keys(network: str) -> list[str]:
    """Every key of the release's `state_dict()` of network 'DM' or 'FN', in its order.

    The order follows the release's module declarations (DM: 62 keys, FN: 54 keys, BatchNorm
    `num_batches_tracked` included). Keys whose `locate(...).collection` is 'params' are the
    module's parameters, in `parameters()` order.
    """
    if network == "DM":
        return _dense_matcher_keys()
    if network == "FN":
        return _fusion_net_keys()
    raise ValueError(f"unknown network {network!r}; expected one of {tuple(NETWORKS)}")


def _dm_block(prefix: str, batch_norm: bool = False) -> list[str]:
    """Keys of one DenseMatcher `Conv2d` block (conv without bias, optional BatchNorm)."""
    keys = [f"{prefix}.model.0.weight"]
    if batch_norm:
        keys += [f"{prefix}.model.1.{leaf}" for leaf in _BN_LEAF]
    return keys


def _flow_estimator(prefix: str, stack: str) -> list[str]:
    """A displacement estimator: preprocessor, feature compressor, 3 BatchNorm blocks + head."""
    preprocessor = f"{prefix}.preprocessor" + (".0" if stack == "estimator" else "")
    keys = _dm_block(preprocessor)
    keys += [k for i in range(2) for k in _dm_block(f"{prefix}.featcompressor.{i}")]
    keys += [k for i in range(3) for k in _dm_block(f"{prefix}.{stack}.{i}", batch_norm=True)]
    return keys + _dm_block(f"{prefix}.{stack}.3")


def _dense_matcher_keys() -> list[str]:
    keys = [
        k
        for extractor in ("feature_extractor_unshare1", "feature_extractor_unshare2")
        for i in range(4)
        for k in _dm_block(f"{extractor}.layers.{i}")
    ]
    keys += [
        k for s in (1, 2, 3) for i in range(2) for k in _dm_block(f"feature_extractor_share{s}.{i}")
    ]
    keys += _flow_estimator("matcher1", "layers") + _flow_estimator("matcher2", "layers")
    return keys + _flow_estimator("refiner", "estimator")


def _fusion_net_keys() -> list[str]:
    def conv(prefix: str) -> list[str]:
        return [f"{prefix}.model.0.weight", f"{prefix}.model.0.bias"]

    keys = [
        k
        for seq in ("encoder_ir", "encoder_vi", "decoder")
        for i in range(4)
        for k in conv(f"{seq}.{i}")
    ]
    keys += [
        f"SAM.{irnn}.{direction}_weight.{leaf}"
        for irnn in ("irnn1", "irnn2")
        for direction in _RNN_DECLARATION_ORDER
        for leaf in ("weight", "bias")
    ]
    keys += [k for name in ("conv_in", "conv2", "conv3") for k in conv(f"SAM.{name}")]
    keys += [k for i in range(3) for k in conv(f"SAM.attention_layer.model.{i}")]
    return keys + conv("SAM.conv_out")


def to_official(value: np.ndarray, loc: Location) -> np.ndarray:
    """A Flax variable (numpy) -> the official tensor at `loc` (the inverse of `to_flax`).

    conv: HWIO -> OIHW float32; rnn: row `loc.row` of the (4, C) array -> (C, 1, 1, 1) weight or
    (C,) bias; count: int64 scalar (torch's `num_batches_tracked`); vector: float32 as is.
    Always a new writable array (torch.from_numpy shares its memory).
    """
    if loc.layout == "conv":
        return np.array(np.transpose(value, (3, 2, 0, 1)), np.float32, order="C")
    if loc.layout == "rnn":
        row = np.array(value[loc.row], np.float32)
        return row.reshape(-1, 1, 1, 1) if loc.path[-1] == "weight" else row
    if loc.layout == "count":
        return np.array(value, np.int64)
    return np.array(value, np.float32)
