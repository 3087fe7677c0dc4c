"""evaluate.py, the command line around superfusion_jax.evaluation.runner, as a subprocess: flag
parsing, usage errors as one line and exit status 2, and the exit status and closing line of a
run (1 when pairs were skipped or none could be evaluated). What the runner computes and writes
is tested in-process in test_runner.py."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.evaluation.conftest import CHEAP, NAMES, damage


def _evaluate(*args, timeout=600):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run(
        [sys.executable, str(REPO / "evaluate.py"), *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def _folders_args(root, out):
    return [
        "--mode=folders",
        f"--fused={root / 'seafusion'}",
        f"--fused={root / 'ir_fused'}",
        "--names=SeAFusion,infrared",
        f"--ir={root / 'ir'}",
        f"--vi={root / 'vi'}",
        f"--out={out}",
        f"--metrics={','.join(CHEAP)}",
    ]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--fused=."], "flag --mode=None: Flag --mode must have a value other than None."),
        (["--mode=both"], "flag --mode=both: value should be one of <model|folders>"),
        (["--mode=model", "extra"], "unexpected arguments: extra"),
        (["--mode=folders", "--fused=.", "--data=.", "--names=a"], "--data does not apply"),
        (["--mode=model", "--fused=.", "--names=a"], "--fused, --names do not apply"),
        (["--mode=folders", "--ir=.", "--vi=."], "--mode=folders needs at least one --fused"),
        (["--mode=folders", "--fused=.", "--ir=.", "--vi=.", "--metrics="], "names no metric"),
        (["--mode=model", "--data=/nonexistent"], "--data: /nonexistent is not a folder"),
    ],
)
def test_usage_errors_are_one_clear_message(args, message):
    run = _evaluate(*args)
    assert run.returncode == 2
    lines = run.stderr.splitlines()
    assert len(lines) == 2, run.stderr
    assert lines[0].startswith("evaluate.py: error: ") and message in lines[0]
    assert lines[1] == "Run `python evaluate.py --help` for the flags."


def test_a_run_with_skipped_pairs_exits_1_and_says_where_the_results_are(folders):
    corrupt = damage(folders)
    out = folders / "out"
    run = _evaluate(*_folders_args(folders, out))
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    assert f"evaluate.py: skipped 00055D: {corrupt}" in run.stderr
    assert run.stdout == f"evaluate.py: evaluated 1 pairs, skipped 3; results in {out}\n"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == ["00004N"] and len(summary["skipped"]) == 3


def test_no_pair_evaluated_exits_1_with_nothing_written(folders):
    for method in ("seafusion", "ir_fused"):
        shutil.rmtree(folders / method)
        (folders / method).mkdir()
    out = folders / "out"
    run = _evaluate(*_folders_args(folders, out))
    assert run.returncode == 1
    assert run.stderr.endswith("evaluate.py: no pair could be evaluated; nothing written\n")
    assert run.stderr.count("skipped") == len(NAMES) and run.stdout == ""
    assert list(out.iterdir()) == []
