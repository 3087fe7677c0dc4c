"""huge_pages: when the command-line programs restart on transparent huge pages, and that the
restart keeps the command, its arguments and the process, adding only the glibc tunable."""

import os
import subprocess
import sys

import pytest

from superfusion_jax import huge_pages

GLIBC = (2, 36)


@pytest.mark.parametrize(
    ("environ", "glibc", "mode", "expected"),
    [
        ({}, GLIBC, "madvise", True),
        ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, GLIBC, "madvise", True),
        ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}, GLIBC, "madvise", False),  # restarted
        ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, GLIBC, "madvise", False),  # opted out
        ({}, GLIBC, "always", False),  # the kernel does it for every map already
        ({}, GLIBC, "never", False),
        ({}, GLIBC, None, False),  # no THP (or not Linux)
        ({}, (2, 34), "madvise", False),  # glibc without the tunable
        ({}, None, "madvise", False),  # another C library (musl)
    ],
)
def test_should_restart(environ, glibc, mode, expected):
    assert huge_pages.should_restart(environ, glibc, mode) is expected


@pytest.mark.parametrize(
    ("text", "mode"),
    [("always [madvise] never\n", "madvise"), ("[always] madvise never", "always"), ("", None)],
)
def test_thp_mode_reads_the_bracketed_word(tmp_path, text, mode):
    path = tmp_path / "enabled"
    path.write_text(text)
    assert huge_pages.thp_mode(path) == mode


def test_thp_mode_of_a_missing_file(tmp_path):
    assert huge_pages.thp_mode(tmp_path / "missing") is None


def test_restart_keeps_the_process_and_arguments():
    script = (
        "import os, sys\n"
        "from superfusion_jax import huge_pages\n"
        "huge_pages.restart_with_huge_pages()\n"
        "print(os.getpid(), sys.argv[1:], os.environ.get('GLIBC_TUNABLES', ''))\n"
    )
    env = {**os.environ, "GLIBC_TUNABLES": "glibc.malloc.arena_max=4"}
    process = subprocess.Popen(
        [sys.executable, "-c", script, "a b", "--flag=1"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 0
    restarts = huge_pages.should_restart(env, huge_pages.glibc_version(), huge_pages.thp_mode())
    tunables = "glibc.malloc.arena_max=4" + (":glibc.malloc.hugetlb=1" if restarts else "")
    # One line: the program ran once to the end. The same process id (exec, not a child: a
    # launcher's signals still reach it), the same arguments, the tunable after the user's own.
    assert out == f"{process.pid} ['a b', '--flag=1'] {tunables}\n"


def test_the_superfusion_command_restarts_before_it_runs(monkeypatch):
    from importlib.metadata import entry_points

    from superfusion_jax import cli

    (script,) = entry_points(group="console_scripts", name="superfusion")
    assert script.value == "superfusion_jax.cli:run"
    calls = []
    monkeypatch.setattr(huge_pages, "restart_with_huge_pages", lambda: calls.append("restart"))
    monkeypatch.setattr(cli, "main", lambda: calls.append("main") or 3)
    with pytest.raises(SystemExit) as exit_request:
        cli.run()
    assert calls == ["restart", "main"]
    assert exit_request.value.code == 3
