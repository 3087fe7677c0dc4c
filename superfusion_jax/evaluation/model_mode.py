"""--mode=model: our model on a data set in the MSRS test layout (DATA/ir_warp, DATA/vi, DATA/ir,
DATA/flow, and DATA/label for segmentation).

Per pair: registration of ir_warp onto vi scored against the flow/ ground truth for two fields,
the model's and the identity (no registration); fusion metrics of register_and_fuse(ir_warp, vi)
and of fuse(ir, vi) against the aligned ir and vi; with a segmentation network, the confusion
matrices of vi, ir and both fused images.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import jax.numpy as jnp
import numpy as np

from superfusion_jax import weights
from superfusion_jax.command_line import UsageError, load_pipeline, require_weights
from superfusion_jax.evaluation import plots
from superfusion_jax.evaluation import registration_metrics as rm
from superfusion_jax.evaluation.job import (
    Job,
    PairResult,
    SkipPair,
    folder,
    fusion_scores,
    images_by_name,
    one_image,
    pairs_of,
    read_same_size,
    say,
)
from superfusion_jax.evaluation.options import EvaluationOptions, fusion_metric_names
from superfusion_jax.evaluation.segmenter import Segmenter, make_segmenter
from superfusion_jax.io.ground_truth import GroundTruthReadError, read_flow_mat
from superfusion_jax.ops.displacement import base_grid_pixels
from superfusion_jax.visualization import flow_to_color

if TYPE_CHECKING:
    from superfusion_jax.inference import Pipeline

# The methods of the registration and fusion sections.
MODEL, IDENTITY = "model", "identity"
REGISTERED_FUSED, ALIGNED_FUSED = "register_and_fuse", "fuse_aligned"

_CASE_LABELS = ["ir_warp", "ir registered", "ir (aligned)", "vi", "fused", "field", "EPE 0-10px"]


def model_job(options: EvaluationOptions) -> Job:
    """The Job of `options.data`: checks the options (UsageError), lists the pairs of ir_warp/
    and vi/, loads the segmentation network and the Pipeline (in that order)."""
    data = folder(options.data, "data", options.mode)
    for sub in ("ir_warp", "vi", "ir", "flow"):
        if not (data / sub).is_dir():
            raise UsageError(f"--data={data} has no {sub}/ folder (MSRS test layout expected)")
    require_weights(
        options.checkpoint,
        options.allow_untrained,
        "--mode=model needs --checkpoint=FOLDER: this installation ships no model (or "
        "--allow_untrained for random weights, whose results are meaningless)",
    )
    if options.rank_by is not None and options.rank_by not in rm.METRIC_NAMES:
        raise UsageError(f"--rank_by in --mode=model is one of {', '.join(rm.METRIC_NAMES)}")
    fusion_metric_names(options)
    skipped: list[tuple[str, str]] = []
    pairs = {
        name: {"ir_warp": paths["ir"], "vi": paths["vi"]}
        for name, paths in pairs_of(data / "ir_warp", data / "vi", skipped).items()
    }
    aligned = images_by_name(data / "ir")
    segmenter = make_segmenter(
        options.segmentation_checkpoint, data / "label", "model mode reads DIR/label"
    )
    pipeline = _pipeline(options)
    score = ModelPairScorer(data, aligned, pipeline, segmenter, options)
    meta = {
        "data": str(data),
        "checkpoint": str(options.checkpoint or f"shipped model '{weights.DEFAULT}'"),
        "variant": pipeline.variant.name,
        "registration": pipeline.registration,
        "methods": {
            "registration": {
                MODEL: f"the ir2vis field of registration '{pipeline.registration}'",
                IDENTITY: "no registration (ir_warp as it is)",
            },
            "fusion": {
                REGISTERED_FUSED: "register_and_fuse(ir_warp, vi), scored against ir and vi",
                ALIGNED_FUSED: "fuse(ir, vi) of the aligned pair",
            },
        },
        **(segmenter.meta() if segmenter is not None else {}),
    }
    rank = ("registration", MODEL, options.rank_by or "epe_mean_px")
    return Job(pairs, score, rank, meta, skipped, segmenter)


def _pipeline(options: EvaluationOptions) -> Pipeline:
    """The Pipeline of `options.checkpoint`: random weights when there is none and
    `allow_untrained`, else the shipped model; the registration `options.registration`."""
    untrained = options.checkpoint is None and options.allow_untrained
    if untrained:
        say("WARNING: untrained model (random weights)")
    elif options.checkpoint is None:
        say(f"using the shipped model '{weights.DEFAULT}'")
    try:
        return load_pipeline(
            options.checkpoint, untrained=untrained, registration=options.registration
        )
    except UsageError as error:
        if untrained:
            raise
        source = "--checkpoint" if options.checkpoint is not None else "the shipped model"
        raise UsageError(f"{source}: {error}") from error


@dataclasses.dataclass(frozen=True, eq=False)
class ModelPairScorer:
    """Scores one pair of `data` (a callable of `Job.score`): `aligned` holds the images of
    data/ir by name; the ground truth is flow/NAME.png.mat (NAME.png the ir_warp file, as in
    the release) or flow/NAME.mat."""

    data: Path
    aligned: dict[str, list[Path]]
    pipeline: Pipeline
    segmenter: Segmenter | None
    options: EvaluationOptions

    def __call__(self, name: str, paths: dict[str, Path]) -> PairResult:
        images, source_px = self._read(name, paths)
        label = None if self.segmenter is None else self.segmenter.label(name)
        out, fused_aligned = self._run_model(name, images)
        batch = {k: v[None] for k, v in images.items()}
        h, w = source_px.shape[:2]
        grid_quirk = self.pipeline.variant.align_corners_base_grid
        positions = rm.sampling_positions(jnp.asarray(out["disp"]), grid_quirk)
        identity = base_grid_pixels(h, w)[None]
        src = jnp.asarray(source_px)[None]
        registration = {
            MODEL: rm.score_registration(positions, src, out["ir_reg"], batch["ir"]),
            IDENTITY: rm.score_registration(identity, src, batch["ir_warp"], batch["ir"]),
        }
        fusion = fusion_scores(
            images["ir"], images["vi"], [out["fused"][0], fused_aligned[0]], self.options
        )
        confusions = {}
        if self.segmenter is not None:
            segmented = {
                "vi": images["vi"],
                "ir": images["ir"],
                REGISTERED_FUSED: out["fused"][0],
                ALIGNED_FUSED: fused_aligned[0],
            }
            confusions = self.segmenter.confusions(label, segmented)
        return PairResult(
            metrics={
                "registration": {
                    m: {k: float(v[0]) for k, v in s.items()} for m, s in registration.items()
                },
                "fusion": {REGISTERED_FUSED: fusion[0], ALIGNED_FUSED: fusion[1]},
            },
            images=_case_pictures(images, out, positions, identity[0], source_px),
            labels=list(_CASE_LABELS),
            confusions=confusions,
        )

    def _read(self, name: str, paths: dict[str, Path]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The pair's ir_warp, vi and aligned ir ((H, W, 3) in [0, 1]) and its ground truth
        (H, W, 2), the source position of each pixel of ir_warp in ir, pixels x then y.
        SkipPair for a missing or unreadable file or sizes that differ."""
        flow = self.data / "flow" / f"{paths['ir_warp'].name}.mat"
        if not flow.exists() and (self.data / "flow" / f"{name}.mat").exists():
            flow = self.data / "flow" / f"{name}.mat"
        ir_path = one_image(self.aligned, name, self.data / "ir")
        images = read_same_size({"ir_warp": paths["ir_warp"], "vi": paths["vi"], "ir": ir_path})
        try:
            source_px = read_flow_mat(flow)
        except GroundTruthReadError as error:
            raise SkipPair(str(error)) from error
        if source_px.shape[:2] != images["ir"].shape[:2]:
            raise SkipPair(
                f"{flow} is {source_px.shape[0]}x{source_px.shape[1]} but the images are "
                f"{images['ir'].shape[0]}x{images['ir'].shape[1]}"
            )
        return images, source_px

    def _run_model(
        self, name: str, images: dict[str, np.ndarray]
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """(register_and_fuse(ir_warp, vi), fuse(ir, vi)['fused'] (1, H, W, 3)) of one pair;
        SkipPair when the model fails; a warning when the registration found no alignment or is
        uncertain."""
        try:
            out = self.pipeline.register_and_fuse(images["ir_warp"][None], images["vi"][None])
            fused_aligned = self.pipeline.fuse(images["ir"][None], images["vi"][None])["fused"]
        except (ValueError, RuntimeError, MemoryError) as error:
            raise SkipPair(f"model failed: {str(error).strip().splitlines()[0]}") from error
        if "registration_ok" in out and not bool(out["registration_ok"][0]):
            say(
                f"WARNING: {name}: registration '{self.pipeline.registration}' found no "
                "alignment; scored as returned (the identity)"
            )
        elif "registration_confident" in out and not bool(out["registration_confident"][0]):
            say(
                f"WARNING: {name}: registration '{self.pipeline.registration}' is uncertain (its "
                "best match hardly stood out from other alignments); scored as returned"
            )
        return out, fused_aligned


def _case_pictures(
    images: dict[str, np.ndarray],
    out: dict[str, np.ndarray],
    positions: jnp.ndarray,
    identity: jnp.ndarray,
    source_px: np.ndarray,
) -> list[np.ndarray]:
    """The pair's row of cases.png, (H, W, 3) in [0, 1] each (captions `_CASE_LABELS`): the
    images, the model's field in colours scaled to the ground truth's longest displacement,
    and its end-point error map (0-10 px). positions (1, H, W, 2), identity (H, W, 2) and
    source_px (H, W, 2) are pixel positions, x then y."""
    src = jnp.asarray(source_px)[None]
    epe = np.asarray(rm.composition_error(positions, src)[0])
    disp_px = np.asarray(positions[0] - identity)
    truth_px = np.linalg.norm(source_px - np.asarray(identity), axis=-1).max()
    return [
        images["ir_warp"],
        out["ir_reg"][0],
        images["ir"],
        images["vi"],
        out["fused"][0],
        flow_to_color(disp_px, float(truth_px)) / 255.0,
        plots.error_map(epe, max_value=10.0),
    ]
