"""make setup: idempotent on the CPU venv; on the notebook, every failed check is one clear line."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SETUP = REPO / "tools" / "setup_env.py"


def test_second_cpu_setup_has_nothing_to_do():
    # CI and the README run `make setup` before `make test`, so the venv is complete here
    res = subprocess.run([sys.executable, str(SETUP), "--platform", "cpu"], capture_output=True, text=True,
                         cwd=str(REPO), timeout=300)
    assert res.returncode == 0, res.stderr
    assert "nothing to do" in res.stdout
    assert "+ " not in res.stdout  # no command was run


def test_ascend_checks_report_each_failure_on_one_line(tmp_path):
    fake_fork = tmp_path / "mindformers_src"
    (fake_fork / "mindformers").mkdir(parents=True)
    (fake_fork / "mindformers" / "__init__.py").write_text("")
    env = {k: v for k, v in os.environ.items() if k not in ("MINDFORMERS_DIR", "PYTHONPATH")}
    # this venv has MindSpore 2.7 (not the contest's 2.3) and imports mindformers from site-packages
    res = subprocess.run([sys.executable, str(SETUP), "--platform", "ascend", "--check-only",
                          "--mindformers-dir", str(fake_fork)], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert lines and all(ln.startswith("setup: FAIL: ") for ln in lines), res.stderr
    assert any("2.3.0rc2" in ln for ln in lines)
    assert any("export PYTHONPATH=%s" % fake_fork in ln for ln in lines)

    res = subprocess.run([sys.executable, str(SETUP), "--platform", "ascend", "--check-only"], capture_output=True,
                         text=True, env=env, timeout=300)
    assert res.returncode == 2
    assert "MINDFORMERS_DIR is not set" in res.stderr


def _script(path, body):
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


def test_find_python39_skips_a_shim_that_does_not_run(tmp_path):
    import setup_env

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # like pyenv's shim when 3.9 is installed but not selected: on PATH, exits 127
    _script(bin_dir / "python3.9", "echo 'pyenv: python3.9: command not found' >&2; exit 127")
    root = tmp_path / "pyenv"
    for version in ("3.9.7", "3.9.18"):
        (root / "versions" / version / "bin").mkdir(parents=True)
        _script(root / "versions" / version / "bin" / "python3.9", "echo 3.9")
    (root / "versions" / "3.11.7" / "bin").mkdir(parents=True)
    found = setup_env.find_python39(path_env=str(bin_dir), pyenv_root=str(root))
    assert found == str(root / "versions" / "3.9.18" / "bin" / "python3.9")  # the newest 3.9.x, not the shim
    _script(bin_dir / "python3.9", "echo 3.9")
    assert setup_env.find_python39(path_env=str(bin_dir), pyenv_root=str(root)) == str(bin_dir / "python3.9")
    assert setup_env.find_python39(path_env=str(tmp_path / "none"), pyenv_root=str(tmp_path / "none")) is None


def test_setup_built_the_python39_venv_when_this_machine_has_a_39():
    import setup_env

    if setup_env.find_python39() is None:
        pytest.skip("no Python 3.9 on this machine: setup builds no .venv39 (make test says so in one line)")
    assert setup_env.python_version(REPO / ".venv39" / "bin" / "python") == "3.9"


def test_visible_npus_from_device_files_and_visible_devices(tmp_path):
    import setup_env

    for name in ("davinci0", "davinci1", "davinci2", "davinci3", "davinci_manager", "davinci12"):
        (tmp_path / name).write_text("")
    assert setup_env.visible_npus(str(tmp_path), env={}) == [0, 1, 2, 3, 12]
    assert setup_env.visible_npus(str(tmp_path), env={"ASCEND_RT_VISIBLE_DEVICES": "2, 3"}) == [2, 3]
    assert setup_env.visible_npus(str(tmp_path / "nothing"), env={}) == []
    assert setup_env.profile_devices("llama3-8b-recipe") == 4 and setup_env.profile_devices("tiny") == 1


def test_ascend_checks_python39_mindpet_and_npus(tmp_path):
    fake = tmp_path / "shadow"
    (fake / "mindpet").mkdir(parents=True)
    (fake / "mindpet" / "__init__.py").write_text("raise ImportError('no mindpet in this image')\n")
    dev = tmp_path / "dev"
    dev.mkdir()
    for i in range(2):
        (dev / ("davinci%d" % i)).write_text("")
    env = {k: v for k, v in os.environ.items() if k not in ("MINDFORMERS_DIR", "ASCEND_RT_VISIBLE_DEVICES")}
    env["PYTHONPATH"] = str(fake)
    res = subprocess.run([sys.executable, str(SETUP), "--platform", "ascend", "--check-only", "--profile",
                          "llama3-8b-recipe", "--dev-dir", str(dev)], capture_output=True, text=True, env=env,
                         timeout=300, cwd=str(REPO))
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert lines and all(ln.startswith("setup: FAIL: ") for ln in lines), res.stderr
    assert any("python module mindpet is missing" in ln for ln in lines)
    assert any("2 Ascend NPU(s) visible" in ln and "llama3-8b-recipe needs 4" in ln for ln in lines)
    on_39 = sys.version_info[:2] == (3, 9)
    assert any("Python %d.%d runs this" % sys.version_info[:2] in ln for ln in lines) != on_39


def test_ascend_install_pins_the_images_numpy(monkeypatch):
    import numpy as np

    import setup_env

    assert "numpy==%s" % np.__version__ in setup_env.pinned_constraints()
    seen = {}

    def fake_run(cmd, **kw):
        cmd = [str(c) for c in cmd]
        seen["cmd"] = cmd
        seen["constraints"] = Path(cmd[cmd.index("-c") + 1]).read_text()
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(setup_env, "_run", fake_run)
    setup_env.install_ascend_requirements()
    assert seen["cmd"][seen["cmd"].index("-r") + 1].endswith("requirements-ascend.txt")
    assert "numpy==%s" % np.__version__ in seen["constraints"].splitlines()
