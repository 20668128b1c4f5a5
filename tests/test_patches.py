"""tools/patch_mindformers.py and mindformers_patches/ on copies of the venv's installed MindFormers.

The pristine content of every patched file is known independently of the tool: pip's RECORD in the
mindformers dist-info holds its sha256, so "reverted" means "byte-identical to the PyPI wheel".
"""

import base64
import hashlib
import importlib.util
import json
import os
import py_compile
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import patch_mindformers
from conftest import REPO, run_tool

SERIES = REPO / "mindformers_patches" / "series"
PATCHES = patch_mindformers.read_series(SERIES)
PATCHED_FILES = sorted({fp.relpath for p in PATCHES for fp in p.files})


def run(*args, cwd=None):
    return run_tool("patch_mindformers", *args, cwd=cwd, timeout=120)


def installed_package():
    spec = importlib.util.find_spec("mindformers")  # locates the package without importing MindSpore
    assert spec is not None and spec.origin, "mindformers is not installed in this interpreter"
    return Path(spec.origin).parent


def wheel_hashes(pkg):
    """{path inside the package: urlsafe-b64 sha256} from the dist-info RECORD pip wrote."""
    records = sorted(pkg.parent.glob("mindformers-*.dist-info/RECORD"))
    assert records, f"no mindformers dist-info RECORD next to {pkg}"
    out = {}
    for line in records[0].read_text(encoding="utf-8").splitlines():
        parts = line.rsplit(",", 2)
        if len(parts) == 3 and parts[0].startswith("mindformers/") and parts[1].startswith("sha256="):
            out[parts[0][len("mindformers/"):]] = parts[1][len("sha256="):]
    return out


def b64sha(path):
    return base64.urlsafe_b64encode(hashlib.sha256(Path(path).read_bytes()).digest()).rstrip(b"=").decode()


def snapshot(pkg):
    return {rel: (pkg / rel).read_bytes() for rel in PATCHED_FILES}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A copy of the installed package, reverted to (and checked against) the wheel's content."""
    src = installed_package()
    root = tmp_path_factory.mktemp("pristine")
    pkg = root / "mindformers"
    shutil.copytree(str(src), str(pkg), ignore=shutil.ignore_patterns("__pycache__"))
    proc = run("revert", "--target", pkg)  # the venv's copy is normally patched already
    assert proc.returncode == 0, proc.stderr
    hashes = wheel_hashes(src)
    for rel in PATCHED_FILES:
        assert b64sha(pkg / rel) == hashes[rel], f"{rel} is not the wheel's content after revert"
    return pkg


@pytest.fixture
def pkg(pristine, tmp_path):
    dst = tmp_path / "site" / "mindformers"
    shutil.copytree(str(pristine), str(dst))
    return dst


def test_series_lists_the_required_patches():
    names = [p.name for p in PATCHES]
    assert names == sorted(names) and len(names) >= 4
    for rel in ("version_control.py", "models/llama/llama_layer.py", "wrapper/wrapper.py",
                "trainer/base_trainer.py"):
        assert rel in PATCHED_FILES
    for p in PATCHES:
        # every patch explains itself before the diff
        assert p.subject and "Why:" in p.header and "What:" in p.header, p.name


def test_apply_check_reapply_revert(pkg):
    original = snapshot(pkg)
    proc = run("check", "--target", pkg)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("would apply") == len(PATCHES)
    proc = run("check", "--applied", "--quiet", "--target", pkg)
    assert (proc.returncode, proc.stdout) == (1, "")

    proc = run("apply", "--target", pkg)
    assert proc.returncode == 0, proc.stderr
    for p in PATCHES:
        assert f"{p.name} applied" in " ".join(proc.stdout.split())
    patched = snapshot(pkg)
    assert all(patched[rel] != original[rel] for rel in PATCHED_FILES)
    assert b'get_context("device_target") != "Ascend"' in patched["version_control.py"]
    assert b"self.cast = P.Cast()" in patched["models/llama/llama_layer.py"]
    assert b"_get_cpu_overflow_status" in patched["wrapper/wrapper.py"]
    assert b"Network Parameters: trainable %d of total %d" in patched["trainer/base_trainer.py"]

    proc = run("check", "--applied", "--quiet", "--target", pkg)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    mtimes = {rel: os.stat(str(pkg / rel)).st_mtime_ns for rel in PATCHED_FILES}
    proc = run("apply", "--target", pkg)  # idempotent: nothing changes, each patch says so
    assert proc.returncode == 0, proc.stderr
    assert all(f"{p.name} already applied" in " ".join(proc.stdout.split()) for p in PATCHES)
    assert "nothing to do" in proc.stdout
    assert snapshot(pkg) == patched
    assert {rel: os.stat(str(pkg / rel)).st_mtime_ns for rel in PATCHED_FILES} == mtimes

    proc = run("revert", "--target", pkg)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("reverted") == len(PATCHES)
    assert snapshot(pkg) == original
    hashes = wheel_hashes(installed_package())
    assert all(b64sha(pkg / rel) == hashes[rel] for rel in PATCHED_FILES)
    proc = run("revert", "--target", pkg)
    assert proc.returncode == 0 and proc.stdout.count("nothing to revert") == len(PATCHES)
    assert not list(pkg.rglob("*.tmp"))


def test_source_root_and_package_folder_targets(pkg, tmp_path):
    root = pkg.parent  # holds mindformers/__init__.py like an unzipped MindFormers checkout
    assert run("apply", "--target", root).returncode == 0
    assert run("check", "--applied", "--quiet", "--target", pkg).returncode == 0
    proc = run("check", "--target", tmp_path / "nowhere")
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    (tmp_path / "empty").mkdir()
    proc = run("check", "--target", tmp_path / "empty")
    assert proc.returncode == 2 and "neither a MindFormers source root" in proc.stderr


def test_corrupted_target_fails_naming_patch_and_file(pkg):
    wrapper = pkg / "wrapper" / "wrapper.py"
    text = wrapper.read_text(encoding="utf-8")
    anchor = "self.learning_rate = deepcopy(self.optimizer.learning_rate)"
    assert 0 < text.find(anchor) < text.find("class MFPipelineWithLossScaleCell")  # first one: MFTrainOneStepCell
    wrapper.write_text(text.replace(anchor, "self.learning_rate = self.optimizer.learning_rate", 1), encoding="utf-8")
    before = snapshot(pkg)
    wrapper_patch = next(p.name for p in PATCHES if any(f.relpath == "wrapper/wrapper.py" for f in p.files))

    proc = run("check", "--target", pkg)
    assert proc.returncode == 2
    assert wrapper_patch in proc.stderr and str(Path("wrapper") / "wrapper.py") in proc.stderr
    assert "does not apply" in proc.stderr
    proc = run("check", "--applied", "--quiet", "--target", pkg)
    assert proc.returncode == 2 and wrapper_patch in proc.stderr

    proc = run("apply", "--target", pkg)  # all or nothing: the other files stay untouched
    assert proc.returncode == 2 and "nothing was changed" in proc.stderr
    assert snapshot(pkg) == before

    proc = run("check", "--json", "--target", pkg)
    report = json.loads(proc.stdout)
    assert proc.returncode == 2 and report["ok"] is False and report["exit_code"] == 2
    bad = [p for p in report["patches"] if p["status"] == "does not apply"]
    assert [p["name"] for p in bad] == [wrapper_patch]
    assert bad[0]["files"][0]["path"] == "wrapper/wrapper.py"
    assert re.search(r"hunk \d+ of \d+", bad[0]["files"][0]["error"])


def test_partially_applied_series_is_completed(pkg, tmp_path):
    one = PATCHES[2]
    series = tmp_path / "series_one"
    shutil.copy(str(one.path), str(tmp_path / one.name))
    series.write_text(f"# only one\n{one.name}\n", encoding="utf-8")
    assert run("apply", "--series", series, "--target", pkg).returncode == 0

    proc = run("check", "--json", "--target", pkg)
    status = {p["name"]: p["status"] for p in json.loads(proc.stdout)["patches"]}
    assert proc.returncode == 0
    assert status == {p.name: ("already applied" if p.name == one.name else "not applied") for p in PATCHES}
    proc = run("apply", "--json", "--target", pkg)
    report = json.loads(proc.stdout)
    assert proc.returncode == 0 and report["ok"]
    assert len(report["changed_files"]) == len(PATCHED_FILES) - len(one.files)
    assert run("check", "--applied", "--target", pkg).returncode == 0


def _fake_package(root):
    pkg = root / "mindformers"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_bytes(b"")
    (pkg / "version_control.py").write_bytes(b"")
    (pkg / "a.py").write_bytes(b"x = 1\r\ny = 2\r\nz = 3\r\n")  # CRLF file
    (pkg / "b.py").write_bytes(b"p = 1\nq = 2")  # no newline at the end
    return pkg


FAKE_PATCH = b"""Subject: two files, one CRLF, one without final newline

What: test. Why: test.

--- a/mindformers/a.py
+++ b/mindformers/a.py
@@ -1,3 +1,3 @@
 x = 1
-y = 2
+y = 20
 z = 3
--- a/mindformers/b.py
+++ b/mindformers/b.py
@@ -1,2 +1,2 @@
 p = 1
-q = 2
\\ No newline at end of file
+q = 22
\\ No newline at end of file
"""


def test_multi_file_patch_crlf_and_no_final_newline(tmp_path):
    pkg = _fake_package(tmp_path / "src")
    patches = tmp_path / "patches"
    patches.mkdir()
    (patches / "0001-fake.patch").write_bytes(FAKE_PATCH)
    (patches / "series").write_text("0001-fake.patch\n", encoding="utf-8")
    series = patches / "series"
    a0, b0 = (pkg / "a.py").read_bytes(), (pkg / "b.py").read_bytes()

    (pkg / "b.py").write_bytes(b"p = 1\nq = 22")  # b.py already patched by hand: a half-applied patch
    proc = run("check", "--series", series, "--target", pkg.parent)
    assert proc.returncode == 0 and "partially applied" in proc.stdout
    proc = run("apply", "--series", series, "--target", pkg.parent)
    assert proc.returncode == 0 and "was partially applied" in proc.stdout
    assert (pkg / "a.py").read_bytes() == b"x = 1\r\ny = 20\r\nz = 3\r\n"
    assert (pkg / "b.py").read_bytes() == b"p = 1\nq = 22"
    assert run("check", "--applied", "--series", series, "--target", pkg).returncode == 0

    assert run("revert", "--series", series, "--target", pkg).returncode == 0
    assert (pkg / "a.py").read_bytes() == a0 and (pkg / "b.py").read_bytes() == b0

    (patches / "0001-fake.patch").write_bytes(FAKE_PATCH.replace(b"a/mindformers/a.py", b"a/../a.py"))
    proc = run("check", "--series", series, "--target", pkg)
    assert proc.returncode == 2 and "0001-fake.patch" in proc.stderr and "not under mindformers/" in proc.stderr
    (patches / "series").write_text("0002-missing.patch\n", encoding="utf-8")
    proc = run("check", "--series", series, "--target", pkg)
    assert proc.returncode == 2 and "series:1: patch file" in proc.stderr


def test_stale_bytecode_of_changed_files_is_removed(pkg):
    pyc = Path(py_compile.compile(str(pkg / "version_control.py"), doraise=True))
    other = Path(py_compile.compile(str(pkg / "tools" / "utils.py"), doraise=True))
    assert run("apply", "--target", pkg).returncode == 0
    assert not pyc.exists() and other.exists()


@pytest.mark.slow
def test_network_parameters_line_is_exact_for_tiny_lora(pkg, tmp_path):
    """After patching, BaseTrainer.count_parameters() logs exact integers for the tiny LoRA model."""
    from lorakit.config import dump_config, load_config, model_config, pet_config

    assert run("apply", "--target", pkg).returncode == 0
    cfg = load_config("tiny")
    yml = tmp_path / "tiny.yaml"
    dump_config(cfg, yml)
    mc, pet = model_config(cfg), pet_config(cfg)
    h, layers, vocab, ffn = mc["hidden_size"], mc["num_layers"], mc["vocab_size"], mc["intermediate_size"]
    kv = h // mc["num_heads"] * mc["n_kv_heads"]
    r = pet["lora_rank"]
    assert pet["target_modules"] == ".*wq|.*wv"
    lora = layers * (r * (h + h) + r * (h + kv))
    base = 2 * vocab * h + layers * (2 * h * h + 2 * h * kv + 3 * h * ffn + 2 * h) + h
    script = (
        "import sys, mindformers\n"
        "assert mindformers.__file__.startswith(sys.argv[2]), mindformers.__file__\n"
        "from mindformers import MindFormerConfig\n"
        "from mindformers.models.build_model import build_network\n"
        "from mindformers.trainer.base_trainer import BaseTrainer\n"
        "trainer = BaseTrainer.__new__(BaseTrainer)\n"
        "trainer.network = build_network(MindFormerConfig(sys.argv[1]).model)\n"
        "trainer.count_parameters()\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(pkg.parent), str(REPO / "tools")]), GLOG_v="3")
    proc = subprocess.run([sys.executable, "-c", script, str(yml), str(pkg)], capture_output=True, text=True,
                          cwd=str(tmp_path), env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    want = f"Network Parameters: trainable {lora} of total {base + lora} (ratio {lora / (base + lora):.6g})"
    assert want in proc.stdout + proc.stderr


def test_help():
    proc = run("--help")
    assert proc.returncode == 0 and "--target" in proc.stdout and "check" in proc.stdout


def test_series_rule_comments_anywhere():
    """One rule for every reader of a series file (lorakit.patches): `#` starts a comment anywhere on a line."""
    from lorakit.patches import parse_series

    text = "# header\n0001-a.patch  # why\n\n   0002-b.patch\n#0003-off.patch\n"
    assert parse_series(text) == [(2, "0001-a.patch"), (4, "0002-b.patch")]
