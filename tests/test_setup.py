"""make setup: idempotent on the CPU venv; on the notebook, every failed check is one clear line."""

import os
import subprocess
import sys
from pathlib import Path

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
