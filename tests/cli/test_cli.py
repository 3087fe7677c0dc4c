"""The `superfusion` command, called in-process through `main(argv)`.

Most tests replace `superfusion_jax.inference` by a small numpy stand-in that records its calls,
so that the command's own logic (pairing, batching, errors, outputs, exit codes) is checked in
milliseconds; `test_run_end_to_end_with_untrained_weights` (slow) runs the real model.
"""

import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from superfusion_jax.cli import main
from superfusion_jax.models.variants import CORRECTED, FAITHFUL

RNG = np.random.default_rng(0)


class FakePipeline:
    """Stands in for inference.Pipeline: deterministic numpy outputs, calls recorded."""

    created: list["FakePipeline"] = []

    def __init__(self, variables, variant=FAITHFUL, registration="network", pad_multiple=None):
        self.variables, self.variant, self.calls = variables, variant, []
        self.registration, self.pad_multiple = registration, pad_multiple
        FakePipeline.created.append(self)

    @classmethod
    def from_checkpoint(cls, path, registration=None):
        if not Path(path).is_dir():
            raise FileNotFoundError(f"checkpoint folder {path} does not exist")
        return cls({"params": {}}, FAITHFUL, registration or "network")

    @classmethod
    def untrained(cls, seed=0, variant=FAITHFUL, registration="network"):
        return cls({"params": {}}, variant, registration)

    @classmethod
    def pretrained(cls, name=None, registration=None):
        return cls({"params": {"shipped": name}}, FAITHFUL, registration or "network")

    @classmethod
    def training_free(cls, method="optimize", variant=FAITHFUL):
        return cls(None, variant, method)

    def register(self, ir, vi):
        self.calls.append(("register", ir.shape, vi.shape))
        disp = np.broadcast_to(np.float32([0.01, -0.02]), ir.shape[:3] + (2,))
        return {"ir_reg": 1.0 - ir, "disp": disp}

    def fuse(self, ir, vi):
        self.calls.append(("fuse", ir.shape, vi.shape))
        return {"fused": (ir + vi) / 2}

    def register_and_fuse(self, ir, vi):
        reg = self.register(ir, vi)
        return {**reg, **self.fuse(reg["ir_reg"], vi)}

    def disp_to_pixels(self, disp):
        return disp * np.float32([disp.shape[2], disp.shape[1]])


@pytest.fixture
def fake(monkeypatch):
    """Route the command to FakePipeline; yields the list of pipelines it created."""
    module = types.ModuleType("superfusion_jax.inference")
    module.Pipeline = FakePipeline
    monkeypatch.setitem(sys.modules, "superfusion_jax.inference", module)
    FakePipeline.created = []
    return FakePipeline.created


def _pair(root, name, size, vi_size=None, ir_ext="png", vi_ext="png"):
    """Write random ir/NAME (grey) and vi/NAME (RGB) images under root."""
    (root / "ir").mkdir(parents=True, exist_ok=True)
    (root / "vi").mkdir(parents=True, exist_ok=True)
    ir = RNG.integers(0, 256, size, dtype=np.uint8)
    vi = RNG.integers(0, 256, (vi_size or size) + (3,), dtype=np.uint8)
    Image.fromarray(ir).save(root / "ir" / f"{name}.{ir_ext}")
    Image.fromarray(vi).save(root / "vi" / f"{name}.{vi_ext}")


def _truncate(path):
    path.write_bytes(path.read_bytes()[:200])


def _folder_with_problems(root):
    """3 + 1 good pairs of two sizes, one truncated visible image, one lone infrared, junk."""
    for name in ("a1", "a2", "a3"):
        _pair(root, name, (24, 40))
    _pair(root, "b1", (30, 36), vi_ext="jpg")
    _pair(root, "bad", (24, 40))
    _truncate(root / "vi" / "bad.png")
    Image.fromarray(np.zeros((24, 40), np.uint8)).save(root / "ir" / "lonely.png")
    (root / "vi" / "Thumbs.db").write_bytes(b"junk")


def _output_names(out):
    return sorted(path.name for path in out.iterdir())


def test_run_batches_by_size_writes_outputs_and_reports_failures(tmp_path, fake, capsys):
    _folder_with_problems(tmp_path)
    out = tmp_path / "out"
    argv = ["run", "--ir", str(tmp_path / "ir"), "--vi", str(tmp_path / "vi"), "--out", str(out)]
    argv += ["--untrained", "--batch-size", "2", "--save-disp", "--save-flow-png"]
    assert main(argv) == 1
    captured = capsys.readouterr()

    (pipeline,) = fake
    shapes = [ir_shape for method, ir_shape, _ in pipeline.calls if method == "register"]
    assert shapes == [(2, 24, 40, 3), (2, 24, 40, 3), (1, 30, 36, 3)]  # one shape per size
    expected = [f"{n}_{kind}" for n in ("a1", "a2", "a3", "b1") for kind in
                ("disp.npy", "flow.png", "fused.png", "ir_reg.png")]  # fmt: skip
    assert _output_names(out) == sorted(expected)

    disp = np.load(out / "b1_disp.npy")
    assert disp.dtype == np.float32 and disp.shape == (30, 36, 2)
    np.testing.assert_allclose(disp[0, 0], [0.36, -0.6], rtol=1e-6)
    flow = np.asarray(Image.open(out / "b1_flow.png"))
    assert flow.shape == (30, 36, 3) and (flow != 255).any()
    reg = np.asarray(Image.open(out / "a1_ir_reg.png"))
    written_ir = np.asarray(Image.open(tmp_path / "ir" / "a1.png"))
    np.testing.assert_array_equal(reg[..., 0], 255 - written_ir)  # the fake's ir_reg = 1 - ir

    assert "4 of 5 pairs written" in captured.out and "1 failed" in captured.out
    assert "failed bad:" in captured.out and str(tmp_path / "vi" / "bad.png") in captured.out
    assert "truncated" in captured.out
    assert "Thumbs.db" in captured.err and "lonely.png" in captured.err
    assert "untrained" in captured.err and "meaningless" in captured.err


def test_fuse_and_register_write_only_their_outputs(tmp_path, fake):
    _pair(tmp_path, "p", (24, 40), vi_ext="jpg")
    files = ["--ir", str(tmp_path / "ir" / "p.png"), "--vi", str(tmp_path / "vi" / "p.jpg")]
    assert main(["fuse", *files, "--out", str(tmp_path / "f"), "--untrained"]) == 0
    assert main(["register", *files, "--out", str(tmp_path / "r"), "--untrained"]) == 0
    assert _output_names(tmp_path / "f") == ["p_fused.png"]
    assert _output_names(tmp_path / "r") == ["p_ir_reg.png"]
    assert [call[0] for call in fake[0].calls] == ["fuse"]
    assert [call[0] for call in fake[1].calls] == ["register"]


def test_size_mismatch_names_both_files_and_shapes(tmp_path, fake, capsys):
    _pair(tmp_path, "ok", (24, 40))
    _pair(tmp_path, "odd", (24, 40), vi_size=(30, 36))
    argv = ["run", "--ir", str(tmp_path / "ir"), "--vi", str(tmp_path / "vi")]
    assert main([*argv, "--out", str(tmp_path / "out"), "--untrained"]) == 1
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if "failed odd" in line)
    assert str(tmp_path / "ir" / "odd.png") in line and str(tmp_path / "vi" / "odd.png") in line
    assert "24x40" in line and "30x36" in line
    assert "1 of 2 pairs written" in out


def test_model_and_write_failures_are_reported_and_the_rest_processed(tmp_path, fake, capsys):
    _pair(tmp_path, "ok", (24, 40))
    _pair(tmp_path, "boom", (30, 36))
    _pair(tmp_path, "blocked", (20, 20))
    out = tmp_path / "out"
    (out / "blocked_fused.png").mkdir(parents=True)  # a folder where the output file should go

    def fuse(self, ir, vi):
        if ir.shape[1] == 30:
            raise RuntimeError("RESOURCE_EXHAUSTED: out of memory\nlong XLA details")
        return FakePipeline.fuse(self, ir, vi)

    FakeOOM = type("FakeOOM", (FakePipeline,), {"fuse": fuse})
    sys.modules["superfusion_jax.inference"].Pipeline = FakeOOM
    argv = ["fuse", "--ir", str(tmp_path / "ir"), "--vi", str(tmp_path / "vi"), "--out", str(out)]
    assert main([*argv, "--untrained"]) == 1
    summary = capsys.readouterr().out
    assert "1 of 3 pairs written" in summary and (out / "ok_fused.png").is_file()
    assert "failed boom: model failed: RESOURCE_EXHAUSTED: out of memory\n" in summary
    assert "failed blocked: cannot write outputs" in summary


def test_without_a_shipped_model_a_checkpoint_is_required(tmp_path, fake, capsys, monkeypatch):
    monkeypatch.setattr("superfusion_jax.weights.available", lambda: [])
    _pair(tmp_path, "p", (24, 40))
    out = tmp_path / "out"
    argv = ["run", "--ir", str(tmp_path / "ir"), "--vi", str(tmp_path / "vi"), "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--checkpoint" in err and "--untrained" in err and "Traceback" not in err
    assert fake == [] and not out.exists()


def test_the_shipped_model_is_the_default(tmp_path, fake, capsys, monkeypatch):
    monkeypatch.setattr("superfusion_jax.weights.available", lambda: ["roadscene"])
    _pair(tmp_path, "p", (24, 40))
    argv = ["fuse", "--ir", str(tmp_path / "ir"), "--vi", str(tmp_path / "vi")]
    assert main([*argv, "--out", str(tmp_path / "o")]) == 0
    assert fake[0].variables == {"params": {"shipped": None}}
    assert "shipped model" in capsys.readouterr().err
    assert main([*argv, "--out", str(tmp_path / "o2"), "--untrained", "--checkpoint", "x"]) == 2
    assert "not allowed with" in capsys.readouterr().err


def test_register_without_weights_uses_the_training_free_method(tmp_path, fake, monkeypatch):
    monkeypatch.setattr("superfusion_jax.weights.available", lambda: [])
    _pair(tmp_path, "p", (24, 40))
    argv = ["register", "--ir", str(tmp_path / "ir"), "--vi", str(tmp_path / "vi")]
    assert main([*argv, "--out", str(tmp_path / "o")]) == 0
    assert fake[0].variables is None and fake[0].registration == "optimize"
    assert main([*argv, "--out", str(tmp_path / "o2"), "--registration", "global"]) == 0
    assert fake[1].registration == "global"


def test_network_registration_needs_weights(tmp_path, fake, capsys):
    _pair(tmp_path, "p", (24, 40))
    argv = ["register", "--ir", str(tmp_path / "ir"), "--vi", str(tmp_path / "vi")]
    assert main([*argv, "--out", str(tmp_path / "o"), "--registration", "network"]) == 2
    assert "--checkpoint" in capsys.readouterr().err and fake == []
    assert main([*argv, "--out", str(tmp_path / "o"), "--untrained"]) == 0
    assert fake[0].registration == "network"


def _register_flagged(**flags: bool):
    """A FakePipeline.register whose training-free flags ('registration_ok',
    'registration_confident') have the given value for every pair; the identity field."""

    def register(self, ir, vi):
        n = ir.shape[0]
        outputs = {"ir_reg": ir, "disp": np.zeros(ir.shape[:3] + (2,), np.float32)}
        return {**outputs, **{name: np.full(n, value) for name, value in flags.items()}}

    return register


def test_a_pair_left_unregistered_is_flagged_and_exits_1(tmp_path, fake, capsys, monkeypatch):
    monkeypatch.setattr(FakePipeline, "register", _register_flagged(registration_ok=False))
    _pair(tmp_path, "p", (24, 40))
    argv = ["register", "--ir", str(tmp_path / "ir"), "--vi", str(tmp_path / "vi")]
    assert main([*argv, "--out", str(tmp_path / "o")]) == 1
    summary = capsys.readouterr().out
    assert "1 of 1 pairs written" in summary
    assert "not registered p: 'optimize' found no alignment" in summary


def test_an_uncertain_registration_is_written_and_listed(tmp_path, fake, capsys, monkeypatch):
    flagged = _register_flagged(registration_ok=True, registration_confident=False)
    monkeypatch.setattr(FakePipeline, "register", flagged)
    _pair(tmp_path, "p", (24, 40))
    argv = ["register", "--ir", str(tmp_path / "ir"), "--vi", str(tmp_path / "vi")]
    assert main([*argv, "--out", str(tmp_path / "o")]) == 0
    summary = capsys.readouterr().out
    assert "1 of 1 pairs written" in summary
    assert "uncertain p: the 'optimize' search's best match hardly stood out" in summary
    assert _output_names(tmp_path / "o") == ["p_ir_reg.png"]


def test_unwritable_output_folder_fails_before_any_work(tmp_path, fake, capsys):
    _pair(tmp_path, "p", (24, 40))
    (tmp_path / "a_file").write_text("not a folder")
    out = tmp_path / "a_file" / "out"
    argv = ["run", "--ir", str(tmp_path / "ir"), "--vi", str(tmp_path / "vi"), "--out", str(out)]
    assert main([*argv, "--untrained"]) == 2
    assert "cannot write to the output folder" in capsys.readouterr().err
    assert fake == []


def test_outputs_that_would_overwrite_inputs_are_refused_before_any_work(tmp_path, fake, capsys):
    """--out the infrared folder, which holds 'a' and 'a_fused': a's fused image would replace
    the infrared input of pair a_fused (and be read as it)."""
    _pair(tmp_path, "a", (24, 40))
    _pair(tmp_path, "a_fused", (24, 40))
    before = (tmp_path / "ir" / "a_fused.png").read_bytes()
    argv = ["run", "--ir", str(tmp_path / "ir"), "--vi", str(tmp_path / "vi"), "--untrained"]
    assert main([*argv, "--out", str(tmp_path / "ir")]) == 2
    err = capsys.readouterr().err
    assert f"writing the output {tmp_path / 'ir' / 'a_fused.png'} would overwrite" in err
    assert "Traceback" not in err and fake == []
    assert (tmp_path / "ir" / "a_fused.png").read_bytes() == before
    assert _output_names(tmp_path / "ir") == ["a.png", "a_fused.png"]
    # outputs beside inputs that they do not replace are fine
    assert main(["register", *argv[1:], "--out", str(tmp_path / "ir")]) == 0
    assert "a_ir_reg.png" in _output_names(tmp_path / "ir")


def test_output_folder_keeps_no_probe_file(tmp_path, fake):
    _pair(tmp_path, "p", (24, 40))
    argv = ["fuse", "--ir", str(tmp_path / "ir"), "--vi", str(tmp_path / "vi")]
    assert main([*argv, "--out", str(tmp_path / "o"), "--untrained"]) == 0
    assert _output_names(tmp_path / "o") == ["p_fused.png"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--ir", "{tmp}/absent", "--vi", "{tmp}/vi"], "does not exist"),
        (["--ir", "{tmp}/ir", "--vi", "{tmp}/vi/p.png"], "both be folders"),
        (["--ir", "{tmp}/ir", "--vi", "{tmp}/empty"], "no infrared-visible pairs"),
        (["--ir", "{tmp}/ir", "--vi", "{tmp}/vi", "--checkpoint", "{tmp}/nockpt"], "nockpt"),
        (["--ir", "{tmp}/ir", "--vi", "{tmp}/vi", "--batch-size", "0"], "at least 1"),
    ],
)
def test_usage_errors_exit_2_with_a_message(tmp_path, fake, capsys, arguments, message):
    _pair(tmp_path, "p", (24, 40))
    (tmp_path / "empty").mkdir()
    argv = ["run", *(a.format(tmp=tmp_path) for a in arguments), "--out", str(tmp_path / "out")]
    if "--checkpoint" not in arguments:
        argv.append("--untrained")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_variant_mismatch_with_a_checkpoint(tmp_path, fake, capsys):
    _pair(tmp_path, "p", (24, 40))
    (tmp_path / "ckpt").mkdir()
    argv = ["fuse", "--ir", str(tmp_path / "ir"), "--vi", str(tmp_path / "vi")]
    argv += ["--out", str(tmp_path / "out"), "--checkpoint", str(tmp_path / "ckpt")]
    assert main([*argv, "--variant", "corrected"]) == 2
    assert "--allow-variant-mismatch" in capsys.readouterr().err
    assert main([*argv, "--variant", "faithful"]) == 0
    assert main([*argv, "--variant", "corrected", "--allow-variant-mismatch"]) == 0
    assert fake[-1].variant == CORRECTED and fake[-1].calls
    assert "WARNING" in capsys.readouterr().err


def test_pad_multiple_reaches_the_pipeline(tmp_path, fake, capsys):
    _pair(tmp_path, "p", (24, 40))
    argv = ["run", "--ir", str(tmp_path / "ir"), "--vi", str(tmp_path / "vi"), "--untrained"]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 0
    assert fake[-1].pad_multiple is None and fake[-1].calls
    assert main([*argv, "--out", str(tmp_path / "b"), "--pad-multiple", "8"]) == 0
    assert fake[-1].pad_multiple == 8 and fake[-1].calls
    assert main([*argv, "--out", str(tmp_path / "c"), "--pad-multiple", "0"]) == 2
    assert "--pad-multiple" in capsys.readouterr().err


def test_registration_options_are_refused_by_fuse(tmp_path, capsys):
    argv = ["fuse", "--ir", "a", "--vi", "b", "--out", str(tmp_path), "--save-disp"]
    assert main(argv) == 2
    assert "--save-disp" in capsys.readouterr().err


@pytest.mark.parametrize("command", [[], ["register"], ["fuse"], ["run"], ["convert"]])
def test_help_explains_each_command(command, capsys):
    assert main([*command, "--help"]) == 0
    text = capsys.readouterr().out
    assert "example" in text
    if command in (["register"], ["run"]):
        assert "PIXELS, dx then dy" in text and "min-max" in text and "NAME_flow.png" in text
    if command == ["fuse"]:
        assert "NAME_fused.png" in text and "NAME_disp.npy" not in text


def test_convert_turns_errors_into_exit_code_2(tmp_path, monkeypatch, capsys):
    from superfusion_jax.convert import commands

    received = []

    def import_pth(src, dst):
        received.append((src, dst))
        if src.endswith("bad.pth"):
            raise ValueError(f"{src} does not match the SuperFusion architecture:\n  details")
        return "SuperFusion (variant faithful)"

    monkeypatch.setattr(commands, "import_pth", import_pth)
    assert main(["convert", "--from", "bad.pth", "--to", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("superfusion convert: error: bad.pth does not match")
    assert "Traceback" not in err
    assert main(["convert", "--from", "good.pth", "--to", str(tmp_path / "c")]) == 0
    assert received[-1] == ("good.pth", str(tmp_path / "c"))
    assert "checkpoint folder of SuperFusion (variant faithful)" in capsys.readouterr().out


def test_a_pth_checkpoint_is_refused_with_how_to_convert_it(tmp_path, capsys):
    """The real Pipeline.from_checkpoint (no fake): the file is refused before any model."""
    _pair(tmp_path, "p", (24, 40))
    (tmp_path / "model.pth").write_bytes(b"torch")
    argv = ["run", "--ir", str(tmp_path / "ir"), "--vi", str(tmp_path / "vi")]
    argv += ["--out", str(tmp_path / "out"), "--checkpoint", str(tmp_path / "model.pth")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "model.pth is a PyTorch .pth file" in err and "does not exist" not in err
    assert f"superfusion convert --from {tmp_path / 'model.pth'} --to DIR" in err
    assert "--checkpoint DIR" in err and "Traceback" not in err


def test_convert_missing_file(tmp_path, capsys):
    argv = ["convert", "--from", str(tmp_path / "absent.pth"), "--to", str(tmp_path / "c")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "absent.pth" in err and "Traceback" not in err


@pytest.mark.slow  # Pipeline.untrained alone took 150-165 s on the shared 2-core machine
def test_run_end_to_end_with_untrained_weights(tmp_path, capsys):
    """The real model on 2 pairs of 24×40 and 1 of 30×36, a truncated file, a lone image."""
    _pair(tmp_path, "a1", (24, 40))
    _pair(tmp_path, "a2", (24, 40), vi_ext="jpg")
    _pair(tmp_path, "b1", (30, 36))
    _pair(tmp_path, "cut", (30, 36))
    _truncate(tmp_path / "ir" / "cut.png")
    Image.fromarray(np.zeros((24, 40, 3), np.uint8)).save(tmp_path / "vi" / "alone.png")
    out = tmp_path / "out"
    argv = ["run", "--ir", str(tmp_path / "ir"), "--vi", str(tmp_path / "vi"), "--out", str(out)]
    assert main([*argv, "--untrained", "--batch-size", "2", "--save-disp"]) == 1
    captured = capsys.readouterr()
    assert "3 of 4 pairs written" in captured.out and "failed cut" in captured.out
    assert "alone.png" in captured.err and "meaningless" in captured.err
    kinds = ("disp.npy", "fused.png", "ir_reg.png")
    names = [f"{n}_{k}" for n in ("a1", "a2", "b1") for k in kinds]
    assert _output_names(out) == sorted(names)
    for name, size in (("a2", (24, 40)), ("b1", (30, 36))):
        disp = np.load(out / f"{name}_disp.npy")
        assert disp.shape == size + (2,) and disp.dtype == np.float32 and np.isfinite(disp).all()
        fused = np.asarray(Image.open(out / f"{name}_fused.png"))
        assert fused.shape == size + (3,) and fused.dtype == np.uint8


def test_register_without_a_checkpoint_end_to_end_on_real_crops(tmp_path, capsys):
    """The real training-free registration through the command on two crops of MSRS pairs:
    exit 0, the outputs, and a field that beats no registration against the ground truth
    (288 x 384 crops of the 480 x 640 pairs)."""
    import jax.numpy as jnp

    from superfusion_jax.evaluation.registration_metrics import composition_error
    from superfusion_jax.io.ground_truth import read_flow_mat
    from superfusion_jax.ops.displacement import base_grid_pixels
    from tests.conftest import MSRS, require

    top, left, h, w = 96, 128, 288, 384
    for folder in ("ir", "vi"):
        (tmp_path / folder).mkdir()
    names = ("00085D", "00107D")
    for name in names:
        for folder, source in (("ir", "ir_warp"), ("vi", "vi")):
            image = Image.open(require(MSRS / source / f"{name}.png"))
            image.crop((left, top, left + w, top + h)).save(tmp_path / folder / f"{name}.png")
    out = tmp_path / "out"
    argv = ["register", "--ir", str(tmp_path / "ir"), "--vi", str(tmp_path / "vi")]
    assert main([*argv, "--out", str(out), "--save-disp"]) == 0
    assert "2 of 2 pairs written" in capsys.readouterr().out
    for name in names:
        assert (out / f"{name}_ir_reg.png").is_file()
        disp = np.load(out / f"{name}_disp.npy")
        source = jnp.asarray(read_flow_mat(MSRS / "flow" / f"{name}.png.mat"))[None]
        identity = base_grid_pixels(h, w) + jnp.float32([left, top])
        found = composition_error((identity + disp)[None], source, (left, top))
        none = composition_error(identity[None], source, (left, top))
        # measured: 3.98 vs 8.85 px (00085D), 6.34 vs 8.15 px (00107D); crops hold less
        # structure than the whole image (4.2 px on all of 00107D)
        assert float(found.mean()) < 0.85 * float(none.mean()), (found.mean(), none.mean())


def test_non_finite_outputs_are_never_written(tmp_path, fake, capsys):
    """A pair whose outputs hold NaN fails alone (no PNG, no flow picture); the rest is written."""
    _pair(tmp_path, "nan", (24, 40))
    _pair(tmp_path, "ok", (30, 36))

    def register(self, ir, vi):
        out = FakePipeline.register(self, ir, vi)
        if ir.shape[1] == 24:
            out["disp"] = np.full(ir.shape[:3] + (2,), np.nan, np.float32)
        return out

    sys.modules["superfusion_jax.inference"].Pipeline = type(
        "FakeNaN", (FakePipeline,), {"register": register}
    )
    out = tmp_path / "out"
    argv = ["run", "--ir", str(tmp_path / "ir"), "--vi", str(tmp_path / "vi"), "--out", str(out)]
    assert main([*argv, "--untrained", "--save-flow-png", "--save-disp"]) == 1
    summary = capsys.readouterr().out
    assert "failed nan: the model's output is not finite; nothing written" in summary
    assert "1 of 2 pairs written" in summary
    assert _output_names(out) == [f"ok_{k}" for k in ("disp.npy", "flow.png", "fused.png",
                                                      "ir_reg.png")]  # fmt: skip


def test_an_interrupted_folder_run_prints_what_was_done(tmp_path, fake, capsys):
    for name, size in (("a", (24, 40)), ("b", (30, 36)), ("c", (20, 20))):
        _pair(tmp_path, name, size)

    def fuse(self, ir, vi):
        if ir.shape[1] == 30:
            raise KeyboardInterrupt
        return FakePipeline.fuse(self, ir, vi)

    sys.modules["superfusion_jax.inference"].Pipeline = type(
        "FakeCtrlC", (FakePipeline,), {"fuse": fuse}
    )
    out = tmp_path / "out"
    argv = ["fuse", "--ir", str(tmp_path / "ir"), "--vi", str(tmp_path / "vi"), "--out", str(out)]
    assert main([*argv, "--untrained"]) == 130
    summary = capsys.readouterr().out
    assert "INTERRUPTED; 1 of 3 pairs written" in summary
    assert "not processed: 2 pairs" in summary
    assert _output_names(out) == ["a_fused.png"]
