"""The run's writers: JSON lines, PNGs, the console, TensorBoard only with TensorFlow."""

import json

import numpy as np
import pytest

from superfusion_jax.training import writers


def test_jsonl_and_images_are_written(tmp_path, capsys):
    writer = writers.make_writer(tmp_path, tensorboard=None, process_index=0)
    writer.write_scalars(10, {"train/loss": 0.5, "eval/epe_px": float("nan")})
    writer.write_scalars(20, {"train/loss": np.float32(0.25)})
    image = np.zeros((8, 12, 3), np.uint8)
    image[:, :6] = 255
    writer.write_images(20, {"registration": image})
    writer.close()

    lines = (tmp_path / writers.METRICS_FILE).read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"step": 10, "train/loss": 0.5, "eval/epe_px": "nan"},
        {"step": 20, "train/loss": 0.25},
    ]
    from PIL import Image

    saved = np.asarray(Image.open(tmp_path / "images" / "registration_0000020.png"))
    np.testing.assert_array_equal(saved, image)
    assert "step 20: train/loss=0.25" in capsys.readouterr().out


def test_resumed_run_appends(tmp_path):
    for step in (1, 2):
        writer = writers.make_writer(tmp_path, tensorboard=False, console=False, process_index=0)
        writer.write_scalars(step, {"x": float(step)})
        writer.close()
    lines = (tmp_path / writers.METRICS_FILE).read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2]


def test_resume_keeps_one_record_per_step(tmp_path):
    """A run logged steps 0-6 (checkpoint at 4) and was killed; the resumed run starts from 4
    and logs 5-6 again: the file keeps steps 0-4 of the first run, then the second run's."""
    path = tmp_path / writers.METRICS_FILE

    def run(start_step, steps, value):
        writer = writers.make_writer(
            tmp_path, tensorboard=False, console=False, process_index=0, start_step=start_step
        )
        for step in steps:
            writer.write_scalars(step, {"x": value})
        writer.close()

    run(0, range(7), 1.0)
    with path.open("a") as file:
        file.write('{"step": 7, "x"')  # a line cut short by the kill
    run(4, (5, 6), 2.0)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["step"], r["x"]) for r in records] == [(s, 1.0) for s in range(5)] + [
        (5, 2.0),
        (6, 2.0),
    ]
    run(0, (0,), 3.0)  # a run from step 0 again (killed before its first checkpoint)
    assert [json.loads(line) for line in path.read_text().splitlines()] == [{"step": 0, "x": 3.0}]


def test_tensorboard_skipped_or_required_without_tensorflow(tmp_path):
    if writers.tensorflow_available():
        pytest.skip("TensorFlow is installed here")
    writer = writers.make_writer(tmp_path, tensorboard=None, console=False, process_index=0)
    assert not any(isinstance(w, writers.TensorBoardWriter) for w in writer.writers)
    writer.close()
    assert not (tmp_path / writers.TENSORBOARD_DIR).exists()
    with pytest.raises(ImportError):
        writers.make_writer(tmp_path, tensorboard=True, process_index=0)


def test_other_processes_write_nothing(tmp_path):
    writer = writers.make_writer(tmp_path / "run", process_index=1)
    writer.write_scalars(1, {"x": 1.0})
    writer.write_images(1, {"a": np.zeros((4, 4, 3), np.uint8)})
    writer.close()
    assert not (tmp_path / "run").exists()


def test_bad_image_is_refused(tmp_path):
    writer = writers.make_writer(tmp_path, tensorboard=False, console=False, process_index=0)
    with pytest.raises(ValueError, match="uint8"):
        writer.write_images(1, {"a": np.zeros((4, 4, 3), np.float32)})


def test_metric_averager_means_between_resets():
    averager = writers.MetricAverager()
    assert averager.compute() == {}
    averager.update({"loss": 1.0, "grad": np.float32(2.0), "nonfinite": np.bool_(False)})
    averager.update({"loss": 3.0, "grad": np.float32(4.0), "nonfinite": np.bool_(False)})
    assert averager.compute() == {"loss": 2.0, "grad": 3.0}
    averager.reset()
    averager.update({"loss": 5.0, "grad": 1.0})
    assert averager.compute() == {"loss": 5.0, "grad": 1.0}
