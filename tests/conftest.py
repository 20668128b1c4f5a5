"""Shared test setup: the repo path, one way to run a tool, and the fixtures that are expensive to build, built once
per session. Heavy MindSpore work runs in subprocesses (the MindSpore context is per process).

Session fixtures are shared by every test module: never modify them in place; copy them first (as `sub` does).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TOOLS = REPO / "tools"

os.environ.setdefault("GLOG_v", "3")  # keep MindSpore's C++ logging out of test output


def run_tool(tool, *args, cwd=None, timeout=900, env=None):
    """Run `python tools/<tool>.py args...` with this interpreter (cwd: the repo); return the CompletedProcess."""
    cmd = [sys.executable, str(TOOLS / (tool + ".py"))] + [str(a) for a in args]
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run(cmd, capture_output=True, text=True, cwd=str(cwd or REPO), timeout=timeout, env=full_env)


@pytest.fixture
def tool():
    return run_tool


# ---------------------------------------------------------------- a run folder and its packaged submission

@pytest.fixture(scope="session")
def fixture_run(tmp_path_factory):
    """A real run folder (submission_fixtures.build_run: adapter, configs, reports, predictions), built once."""
    import submission_fixtures

    return submission_fixtures.build_run(tmp_path_factory.mktemp("fixture"))


@pytest.fixture(scope="session")
def built(fixture_run, tmp_path_factory):
    """The submission package.py makes of fixture_run: <root>/fx/ and fx.zip, built once (test_verify, test_hostile,
    test_package)."""
    import package

    out = tmp_path_factory.mktemp("submission")
    assert package.main(["--team", "fx", "--run", str(fixture_run), "--out-dir", str(out)]) == 0
    return out


@pytest.fixture
def sub(built, tmp_path):
    """A private copy of the submission folder, free to tamper with."""
    import shutil

    dst = tmp_path / "fx"
    shutil.copytree(str(built / "fx"), str(dst))
    return dst
