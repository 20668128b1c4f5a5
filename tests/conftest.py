"""Shared test setup. Heavy MindSpore work runs in subprocesses (the MindSpore context is per process)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TOOLS = REPO / "tools"

os.environ.setdefault("GLOG_v", "3")  # keep MindSpore's C++ logging out of test output


def run_tool(tool, *args, cwd=None, timeout=900, env=None):
    """Run `python tools/<tool>.py args...` with this interpreter; return the CompletedProcess."""
    cmd = [sys.executable, str(TOOLS / (tool + ".py"))] + [str(a) for a in args]
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run(cmd, capture_output=True, text=True, cwd=str(cwd or REPO), timeout=timeout, env=full_env)


@pytest.fixture
def tool():
    return run_tool


# ---------------------------------------------------------------- a packaged submission (test_verify, test_hostile)

@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A real submission (fixture run + package.py): <root>/sub/fx/ and fx.zip, built once per test module."""
    import submission_fixtures

    return submission_fixtures.build_submission(tmp_path_factory.mktemp("submission"))


@pytest.fixture
def sub(built, tmp_path):
    """A private copy of the submission folder, free to tamper with."""
    import shutil

    dst = tmp_path / "fx"
    shutil.copytree(str(built / "fx"), str(dst))
    return dst
