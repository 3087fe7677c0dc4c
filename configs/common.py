"""Defaults shared by the training configs (`get_base_config`); see docs/training.md.

Every field can be overridden on the command line, e.g. `--config.batch_size=8`.
Sizes are in pixels, steps count optimiser updates, batch sizes are global (all hosts).

A recipe also takes an argument after its file name, `--config=configs/X.py:ARG`, a
comma-separated list of `name=value` and bare `name` (true) that `parse_arg` reads:
- `runlocal`: the recipe on built-in synthetic scenes at a few minutes' size on a CPU
  (`use_runlocal`), to try a recipe or a change before a real run; needs no data;
- `data=DIR` (the recipes that train on folders: roadscene, residual, fusion): the folder that
  holds `roadscene_train/` and `msrs_test/` (the project's `../shared/data`). Configs name no
  path outside the repository; without it their folder fields stay empty and train.py says so.
"""

from __future__ import annotations

import dataclasses

import ml_collections

from superfusion_jax.losses.registration import RFWeights


def get_base_config() -> ml_collections.ConfigDict:
    """The release's stage-RF recipe on MSRS (train.py / options.py of the official code)."""
    config = ml_collections.ConfigDict()
    # 'RF' (registration + fusion, both networks) or 'FS' (fusion only, aligned pairs).
    config.stage = "RF"
    # 'faithful' (the release's quirks) or 'corrected' (see models/variants.py).
    config.variant = "faithful"
    config.seed = 0
    # Global batch size: split evenly over the hosts, then over the devices of each host.
    config.batch_size = 16
    # Side of the square crops the network is trained on.
    config.crop_size = 256
    # Optimiser updates; -1 trains for n_ep epochs (n_ep * steps_per_epoch updates).
    config.num_steps = -1

    # One Adam per network (DenseMatcher, FusionNet) as the release: learning rate, L2 weight
    # decay added to the gradient, gradient clipping to a global norm per network.
    config.learning_rate = 1e-3
    config.weight_decay = 1e-5
    config.clip_norm = 5.0
    # Learning rate constant for n_ep_decay epochs, then decaying linearly toward 0 at n_ep
    # (the release's 'lambda' policy; n_ep_decay = -1: no decay).
    config.n_ep = 2000
    config.n_ep_decay = 1600
    # Updates per epoch; -1: number of training pairs // batch_size (at least 1).
    config.steps_per_epoch = -1

    # Stage RF's synthetic misalignment (the release's RegData: randflow(angle 10, translation
    # 0.1, elastic ratio 1)), drawn on a frame_size x frame_size crop, which is then cropped to
    # crop_size at a random position so that the warp's black borders mostly fall outside.
    # frame_size -1 means crop_size (no second crop). The release warps the whole image; our
    # batches need one size, hence the fixed frame.
    config.misalign = ml_collections.ConfigDict(
        {"angle": 10.0, "translation": 0.1, "ratio": 1.0, "frame_size": 320}
    )
    # Stage RF's term weights in its total (losses.registration.RFWeights; the release's). With
    # fus and ncc at 0, FusionNet is not trained and the DenseMatcher alone is.
    config.rf_weights = ml_collections.ConfigDict(dataclasses.asdict(RFWeights()))

    # Training pairs. source: 'tfds' (a prepared TFDS builder: tfds_name 'msrs' or 'roadscene',
    # split, data_dir, manual_dir = a local copy to prepare from; '' downloads it), 'folder'
    # (aligned pairs in ir_dir / vi_dir, optional label_dir) or 'synthetic' (procedural scenes:
    # synthetic_pairs scenes of synthetic_size x synthetic_size, synthetic_seed).
    config.data = ml_collections.ConfigDict(
        {
            "source": "tfds",
            "tfds_name": "msrs",
            "split": "train",
            "data_dir": "~/tensorflow_datasets",
            "manual_dir": "",
            "ir_dir": "",
            "vi_dir": "",
            "label_dir": "",
            "synthetic_pairs": 1000,
            "synthetic_size": 320,
            "synthetic_seed": 0,
            # grain: worker processes (0 = in this process) and reading threads.
            "worker_count": 0,
            "read_threads": 4,
            # Night-darkening augmentation (ours, data.pipeline.Darken): with this probability
            # each image of a pair gets x ** gamma, gamma uniform in [1, darken_max_gamma].
            "darken_probability": 0.0,
            "darken_max_gamma": 3.0,
            # True: each infrared image is replaced by data.stress.synthetic_infrared of its
            # visible image (exactly aligned pairs; data.sources.SyntheticInfrared).
            "synthetic_infrared": False,
        }
    )

    # Held-out evaluation (registration EPE and the image log): the first num_pairs pairs of
    # the source below, misaligned once with fixed seeds (see training/held_out.py). Same
    # fields as `data`; tfds_name, data_dir and manual_dir follow `data` unless overridden.
    # RoadScene has no test split: use source 'folder' (other pairs) or 'synthetic' with it.
    config.eval = ml_collections.ConfigDict(
        {
            "source": "tfds",
            "tfds_name": config.data.get_ref("tfds_name"),
            "split": "test",
            "data_dir": config.data.get_ref("data_dir"),
            "manual_dir": config.data.get_ref("manual_dir"),
            "ir_dir": "",
            "vi_dir": "",
            "label_dir": "",
            "synthetic_pairs": 16,
            "synthetic_size": 320,
            "synthetic_seed": 1_000_003,
            "synthetic_infrared": config.data.get_ref("synthetic_infrared"),
            "num_pairs": 16,
            "batch_size": 4,
            "seed": 0,
        }
    )

    # Periods, in optimiser updates (0 = never; the last step always logs, evaluates, saves).
    config.log_every = 50
    config.image_every = 1000
    config.eval_every = 1000
    config.checkpoint_every = 1000
    # Checkpoints kept in workdir/checkpoints.
    config.keep = 3
    # Start from these weights instead of a random initialisation (ignored when resuming):
    # a superfusion-jax checkpoint folder (`superfusion convert` output, or a training run's
    # WORKDIR/model), a single-file .npz checkpoint (`io.model_files.save_flat`) or an official
    # .pth file.
    config.init_checkpoint = ""
    # TensorBoard files: 'auto' (when TensorFlow is installed), 'yes' or 'no'.
    config.tensorboard = "auto"
    return config


def parse_arg(arg: str | None, **defaults: bool | str) -> ml_collections.ConfigDict:
    """A recipe's argument (`configs/X.py:ARG`) as typed fields (big_vision's `parse_arg`).

    arg: comma-separated `name=value` and bare `name` (= true), or None / ''. defaults: every
    name the recipe accepts with its default, whose type (bool or str) the value takes.
    Raises ValueError naming an unknown name or a value a bool cannot take.
    """
    args = ml_collections.ConfigDict(defaults)
    for item in filter(None, (arg or "").split(",")):
        name, _, value = item.partition("=")
        name = name.strip()
        if name not in defaults:
            raise ValueError(f"unknown argument {name!r}; this recipe takes {sorted(defaults)}")
        if isinstance(defaults[name], bool):
            if value.lower() not in ("", "true", "1", "false", "0"):
                raise ValueError(f"config argument {name} is true or false, got {value!r}")
            args[name] = value.lower() in ("", "true", "1")
        else:
            args[name] = value
    return args


def use_runlocal(config: ml_collections.ConfigDict) -> None:
    """Shrink `config` to a run of minutes on a CPU, offline: 150 updates of batch 2 on 64 x 64
    crops (stage RF: of 80 x 80 misalignment frames) of 64 synthetic 96 x 96 scenes, held out on
    8 others; logs, pictures, evaluations and checkpoints often. The recipe's objectives and
    stage stay as they are."""
    config.batch_size = 2
    config.crop_size = 64
    if config.misalign.frame_size > 0:
        config.misalign.frame_size = 80
    config.num_steps = 150
    config.steps_per_epoch = -1
    config.n_ep = 5
    config.n_ep_decay = 3
    for spec, pairs, seed in ((config.data, 64, 0), (config.eval, 8, 1_000_003)):
        spec.source = "synthetic"
        spec.synthetic_pairs = pairs
        spec.synthetic_size = 96
        spec.synthetic_seed = seed
    config.eval.num_pairs = 8
    config.eval.batch_size = 4
    config.log_every = 10
    config.image_every = 50
    config.eval_every = 50
    config.checkpoint_every = 50
    config.keep = 2


def use_roadscene_folders(config: ml_collections.ConfigDict, data: str) -> None:
    """Train on the aligned RoadScene pairs of DATA/roadscene_train (folder source) and hold
    out the aligned MSRS test pairs of DATA/msrs_test, as the CPU-sized recipes do
    (roadscene.py, residual.py, fusion.py). data '': the folder fields stay empty (train.py
    then asks for them)."""
    config.data.source = "folder"
    config.eval.source = "folder"
    if data:
        config.data.ir_dir = f"{data}/roadscene_train/ir"
        config.data.vi_dir = f"{data}/roadscene_train/vi"
        config.eval.ir_dir = f"{data}/msrs_test/ir"
        config.eval.vi_dir = f"{data}/msrs_test/vi"


def use_cpu_periods(config: ml_collections.ConfigDict) -> None:
    """Held-out set and periods of the stage-RF recipes sized for a 2-core CPU (roadscene.py,
    residual.py): 8 held-out pairs evaluated 4 at a time, a log line every 10 updates, a
    checkpoint every 25 updates (the last 2 kept: updates take seconds, runs are stopped)."""
    config.eval.num_pairs = 8
    config.eval.batch_size = 4
    config.log_every = 10
    config.checkpoint_every = 25
    config.keep = 2
