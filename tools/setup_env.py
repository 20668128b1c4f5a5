#!/usr/bin/env python3
"""Prepare the environment the kit runs in.

cpu (default): create .venv from requirements-cpu.txt and patch its installed MindFormers.
ascend: on the contest notebook, check what the image must already have (MindSpore 2.3.x,
the unzipped contest MindFormers in MINDFORMERS_DIR, tiktoken), install the kit's light
dependencies if missing, and patch MINDFORMERS_DIR. Idempotent: a second run says
"nothing to do".
"""

import argparse
import hashlib
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV = REPO / ".venv"
STAMP = VENV / ".kit-setup"


def _digest(paths):
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def _run(cmd, **kw):
    print("+ " + " ".join(str(c) for c in cmd), flush=True)
    return subprocess.run([str(c) for c in cmd], **kw)


def setup_cpu(args):
    req = REPO / "requirements-cpu.txt"
    want = _digest([req])
    py = VENV / "bin" / "python"
    did = []
    if not py.exists():
        _run([sys.executable, "-m", "venv", VENV], check=True)
        did.append("created .venv")
    have = STAMP.read_text().strip() if STAMP.exists() else ""
    if have != want:
        _run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", req], check=True)
        did.append("installed requirements-cpu.txt")
    # find_spec locates the package without importing it (importing MindSpore takes seconds)
    mf_dir = subprocess.run([str(py), "-c", "import importlib.util as u, os; "
                             "print(os.path.dirname(u.find_spec('mindformers').origin))"],
                            capture_output=True, text=True)
    if mf_dir.returncode != 0:
        print("setup: error: mindformers does not import in .venv: %s" % mf_dir.stderr.strip().splitlines()[-1:],
              file=sys.stderr)
        return 2
    rc = _patch(py, mf_dir.stdout.strip(), did)
    if rc:
        return rc
    STAMP.write_text(want + "\n")
    print("setup: " + ("; ".join(did) if did else "nothing to do (venv, requirements and patches up to date)"))
    return 0


def _patch(py, target, did):
    """Apply the series; `check --applied` first so an up-to-date tree reports nothing to do."""
    tool = REPO / "tools" / "patch_mindformers.py"
    status = subprocess.run([str(py), str(tool), "check", "--applied", "--quiet", "--target", target])
    if status.returncode == 0:
        return 0
    res = _run([py, tool, "apply", "--target", target])
    if res.returncode != 0:
        print("setup: error: MindFormers patches did not apply to %s (see above)" % target, file=sys.stderr)
        return 2
    did.append("patched %s" % target)
    return 0


def setup_ascend(args):
    failures = []
    try:
        import mindspore  # noqa: F401

        if not mindspore.__version__.startswith("2.3"):
            failures.append("MindSpore %s found, the contest image has 2.3.0rc2 (pip install the contest wheel)"
                            % mindspore.__version__)
    except ImportError:
        failures.append("MindSpore is not importable: install mindspore-2.3.0rc2-cp39-cp39-linux_aarch64.whl")
    mf_dir = args.mindformers_dir or os.environ.get("MINDFORMERS_DIR", "")
    if not mf_dir:
        failures.append("MINDFORMERS_DIR is not set: point it at the unzipped contest mindformers/ folder")
    elif not (Path(mf_dir) / "mindformers" / "__init__.py").exists():
        failures.append("MINDFORMERS_DIR=%s does not hold mindformers/__init__.py (unzip mindformers.zip there)"
                        % mf_dir)
    else:
        # build.sh also installs a copy into site-packages: the patches only act on the tree Python imports
        import importlib.util

        spec = importlib.util.find_spec("mindformers")
        imported = Path(spec.origin).resolve().parent.parent if spec and spec.origin else None
        if imported != Path(mf_dir).resolve():
            failures.append("Python imports mindformers from %s, not MINDFORMERS_DIR: export PYTHONPATH=%s:$PYTHONPATH"
                            % (imported.parent if imported else "nowhere", mf_dir))
    missing = []
    for mod in ("tiktoken", "yaml", "jsonschema", "jieba", "tqdm", "matplotlib"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    if missing and not args.check_only:
        _run([sys.executable, "-m", "pip", "install", "-q", "-r", REPO / "requirements-ascend.txt"])
        missing = [m for m in missing if subprocess.run([sys.executable, "-c", "import " + m]).returncode]
    for mod in missing:
        failures.append("python module %s is missing: pip install -r requirements-ascend.txt" % mod)
    for line in failures:
        print("setup: FAIL: " + line, file=sys.stderr)
    if failures:
        return 2
    did = []
    rc = _patch(Path(sys.executable), mf_dir, did)
    if rc:
        return rc
    print("setup: ascend checks passed; " + ("; ".join(did) if did else "patches already applied, nothing to do"))
    print("setup: remember: export PYTHONPATH=%s:$PYTHONPATH" % mf_dir)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--platform", choices=("cpu", "ascend"), default="cpu")
    ap.add_argument("--mindformers-dir", help="contest MindFormers source root (default: $MINDFORMERS_DIR)")
    ap.add_argument("--check-only", action="store_true", help="ascend: report, install nothing")
    args = ap.parse_args()
    return setup_cpu(args) if args.platform == "cpu" else setup_ascend(args)


if __name__ == "__main__":
    sys.exit(main())
