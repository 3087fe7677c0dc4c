"""Train the segmentation network (the release's BiSeNet) as SeAFusion does, on labelled images.

  python train.py --config=configs/segmentation.py --workdir=runs/seg \
      --config.data.manual_dir=/data/MSRS --config.data.data_dir=/data/tfds
  # offline, a few minutes on a CPU: synthetic scenes and their labels
  python train.py --config=configs/segmentation.py:runlocal --workdir=runs/seg_demo

The model of the best held-out mIoU is WORKDIR/best (the latest is WORKDIR/model); give it to
stage FS as --config.segmentation_checkpoint=WORKDIR/best, or to evaluate.py as
--segmentation_checkpoint.

Matched to SeAFusion's train.py `train_seg` (and its loss.py, optimizer.py): OHEM cross-entropy on
the main head + 0.75 x on the auxiliary head (probability threshold 0.7, at least 1/16 of the
batch's pixels, label 255 ignored); SGD with momentum 0.9 and weight decay 5e-4 on convolution
kernels only, heads at 10 x the learning rate, no clipping; learning rate 1e-2 after 1000 warm-up
updates rising exponentially from 1e-5, then polynomial decay (power 0.9) to 0 at the last of
80,000 updates; batch 16. Not matched (training/tasks/segmentation_network.py has the details): the
augmentation is the release's flips, rotations and square crops (480 x 480 of MSRS's 480 x 640;
SeAFusion: colour jitter, flips, random scaling, 640 x 480 crops); the input is the visible image
by default (SeAFusion trains on its fused images); the backbone starts random unless
init_checkpoint names torchvision's resnet18 .pth (SeAFusion loads those ImageNet weights).
Held-out: mIoU on the whole MSRS test images (eval.num_pairs -1 = all).
"""

from __future__ import annotations

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """SeAFusion's segmentation recipe on MSRS; arg 'runlocal': the offline CPU recipe
    (synthetic 48 x 48 crops of 64 x 64 scenes, batch 8, 300 updates with Adam, evaluated on 32
    other scenes)."""
    args = common.parse_arg(arg, runlocal=False)
    config = common.get_base_config()
    config.stage = "segmentation"
    # Which image the network learns to segment: 'vi' (visible RGB), 'ir' (infrared as grey
    # RGB) or 'fused' (the fused RGB image of the frozen SuperFusion model fusion_checkpoint, a
    # checkpoint folder or an official .pth, of variant config.variant).
    config.input_image = "vi"
    config.fusion_checkpoint = ""
    config.num_classes = 9
    config.batch_size = 16
    config.crop_size = 480
    config.misalign.frame_size = -1
    config.num_steps = 80_000
    # SGD (SeAFusion's; 'adam' replaces its momentum by Adam's moments): learning rate,
    # momentum, L2 weight decay on conv kernels, heads' learning-rate factor; clip_norm 0 = no
    # gradient clipping.
    config.optimizer = "sgd"
    config.learning_rate = 1e-2
    config.momentum = 0.9
    config.weight_decay = 5e-4
    config.head_lr_multiplier = 10.0
    config.clip_norm = 0.0
    # Warm-up from warmup_start_lr over warmup_steps updates, then (1 - t)^poly_power decay.
    config.warmup_steps = 1000
    config.warmup_start_lr = 1e-5
    config.poly_power = 0.9
    # OHEM cross-entropy: main + aux_weight x auxiliary head; pixels with a label probability
    # below ohem_threshold, at least ohem_min_kept_fraction of the batch's pixels; ignore_index
    # is not scored.
    config.aux_weight = 0.75
    config.ohem_threshold = 0.7
    config.ohem_min_kept_fraction = 1 / 16
    config.ignore_index = 255
    # init_checkpoint: '' (random), torchvision's resnet18 .pth (backbone only), a BiSeNet .pth
    # (e.g. SeAFusion's model_final.pth) or a folder written by this config.
    config.eval.num_pairs = -1
    config.eval.batch_size = 8
    config.log_every = 50
    config.eval_every = 2000
    config.image_every = 2000
    config.checkpoint_every = 2000
    if args.runlocal:
        _runlocal(config)
    return config


def _runlocal(config: ml_collections.ConfigDict) -> None:
    """`common.use_runlocal` (synthetic scenes with their labels), then the sizes at which this
    network learns something in minutes on a 2-core CPU (tests/training/test_segmentation.py).
    From a random initialisation, SeAFusion's SGD (lr 3e-3 to 3e-2) still predicted background
    everywhere after 300 updates of this size; Adam (lr 2e-3, heads at 1 x) learns cars within
    them, hence the different optimiser."""
    common.use_runlocal(config)
    config.batch_size = 8
    config.crop_size = 48
    config.num_steps = 300
    config.optimizer = "adam"
    config.learning_rate = 2e-3
    config.head_lr_multiplier = 1.0
    config.warmup_steps = 20
    config.warmup_start_lr = 2e-5
    config.data.synthetic_pairs = 256
    config.data.synthetic_size = 64
    config.eval.synthetic_pairs = 32
    config.eval.synthetic_size = 64
    config.eval.num_pairs = 32
    config.eval.batch_size = 32
    config.log_every = 25
    config.eval_every = 100
    config.image_every = 100
    config.checkpoint_every = 100
    config.keep = 1
