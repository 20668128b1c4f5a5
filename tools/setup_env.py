#!/usr/bin/env python3
"""Prepare the environment the kit runs in.

cpu (default): create .venv (this Python) from requirements-cpu.txt and patch its installed MindFormers;
when a Python 3.9 interpreter is found (python3.9 on PATH that runs, else pyenv's versions/3.9*), also .venv39
the same way, so `make test` runs the suite under the notebook's Python 3.9 too.
ascend: on the contest notebook, check what the image must already have (Python 3.9, MindSpore 2.3.x, the
unzipped contest MindFormers in MINDFORMERS_DIR, mindpet, visible NPUs), install the kit's light dependencies
if missing (never moving the image's numpy, protobuf or MindSpore), and patch MINDFORMERS_DIR.
Idempotent: a second run says "nothing to do".
"""

import argparse
import glob
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV = REPO / ".venv"
VENV39 = REPO / ".venv39"
STAMP_NAME = ".kit-setup"
# What the image brings and an install of requirements-ascend.txt must not move (a newer matplotlib would
# otherwise pull numpy 2.x, which MindSpore 2.3 was not built against).
IMAGE_PINNED = ("numpy", "protobuf", "mindspore", "scipy")


def _digest(paths):
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def _run(cmd, **kw):
    print("+ " + " ".join(str(c) for c in cmd), flush=True)
    return subprocess.run([str(c) for c in cmd], **kw)


def python_version(exe):
    """"3.9"-style version of an interpreter that actually runs, else None (e.g. a pyenv shim of a version
    that is installed but not selected exits 127)."""
    try:
        res = subprocess.run([str(exe), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return res.stdout.strip() if res.returncode == 0 else None


def find_python39(path_env=None, pyenv_root=None):
    """A Python 3.9 interpreter that runs: python3.9 on PATH, else pyenv's versions/3.9*/bin/python3.9
    (newest first). None when there is none."""
    candidates = []
    on_path = shutil.which("python3.9", path=path_env)
    if on_path:
        candidates.append(on_path)
    root = pyenv_root or os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    found = glob.glob(os.path.join(root, "versions", "3.9*", "bin", "python3.9"))
    candidates += sorted(found, key=lambda p: [int(x) if x.isdigit() else 0 for x in
                                                Path(p).parents[1].name.split(".")], reverse=True)
    for exe in candidates:
        if python_version(exe) == "3.9":
            return exe
    return None


def build_venv(venv, python, did):
    """Create `venv` with `python` when missing, install requirements-cpu.txt (its environment markers pick the
    pins of that Python) when they changed, patch its MindFormers. 0 or an exit status."""
    req = REPO / "requirements-cpu.txt"
    want = _digest([req])
    py = venv / "bin" / "python"
    stamp = venv / STAMP_NAME
    if not py.exists():
        _run([python, "-m", "venv", venv], check=True)
        did.append("created %s" % venv.name)
    have = stamp.read_text().strip() if stamp.exists() else ""
    if have != want:
        _run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", req], check=True)
        did.append("installed requirements-cpu.txt into %s" % venv.name)
    # find_spec locates the package without importing it (importing MindSpore takes seconds)
    mf_dir = subprocess.run([str(py), "-c", "import importlib.util as u, os; "
                             "print(os.path.dirname(u.find_spec('mindformers').origin))"],
                            capture_output=True, text=True)
    if mf_dir.returncode != 0:
        print("setup: error: mindformers does not import in %s: %s" % (venv.name, mf_dir.stderr.strip().splitlines()[-1:]),
              file=sys.stderr)
        return 2
    rc = _patch(py, mf_dir.stdout.strip(), did)
    if rc:
        return rc
    stamp.write_text(want + "\n")
    return 0


def setup_cpu(args):
    did = []
    rc = build_venv(VENV, sys.executable, did)
    if rc:
        return rc
    main_version = python_version(VENV / "bin" / "python")
    note = None
    if main_version == "3.9":
        note = ".venv is already Python 3.9: no second venv"
    else:
        choice = args.python39 or "auto"
        py39 = None if choice == "none" else find_python39() if choice == "auto" else choice
        if py39 and python_version(py39) != "3.9":
            print("setup: error: --python39 %s is not a Python 3.9 that runs" % py39, file=sys.stderr)
            return 2
        if py39:
            rc = build_venv(VENV39, py39, did)
            if rc:
                return rc
        else:
            note = "%s: make test runs the suite under %s only" % (
                "--python39 none" if choice == "none" else
                "no Python 3.9 found (python3.9 on PATH that runs, pyenv versions/3.9*)", main_version)
    print("setup: " + ("; ".join(did) if did else "nothing to do (venvs, requirements and patches up to date)"))
    if note:
        print("setup: " + note)
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


def visible_npus(dev_dir="/dev", env=None):
    """Ascend devices this process may use: /dev/davinci<N> files, narrowed by ASCEND_RT_VISIBLE_DEVICES when
    set (a comma list of device ids). Returns the sorted device ids."""
    env = os.environ if env is None else env
    ids = sorted(int(Path(p).name[len("davinci"):]) for p in glob.glob(os.path.join(dev_dir, "davinci[0-9]*"))
                 if Path(p).name[len("davinci"):].isdigit())
    wanted = env.get("ASCEND_RT_VISIBLE_DEVICES", "").strip()
    if wanted:
        keep = {int(x) for x in wanted.split(",") if x.strip().isdigit()}
        ids = [i for i in ids if i in keep]
    return ids


def profile_devices(profile):
    """NPUs a profile trains on: data_parallel x model_parallel x pipeline_stage when use_parallel, else 1."""
    sys.path.insert(0, str(REPO / "tools"))
    from lorakit.config import device_count, load_config

    return device_count(load_config(profile))


def pinned_constraints(names=IMAGE_PINNED):
    """`name==version` lines for the installed distributions among `names` (a pip constraints file)."""
    from importlib import metadata

    lines = []
    for name in names:
        try:
            lines.append("%s==%s" % (name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            continue
    return lines


def install_ascend_requirements():
    """pip install requirements-ascend.txt with the image's own numpy/protobuf/MindSpore versions as constraints,
    so the install adds what is missing and never moves those."""
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix="-constraints.txt", delete=False) as fh:
        fh.write("\n".join(pinned_constraints()) + "\n")
        constraints = fh.name
    try:
        return _run([sys.executable, "-m", "pip", "install", "-q", "-r", REPO / "requirements-ascend.txt",
                     "-c", constraints])
    finally:
        os.unlink(constraints)


def setup_ascend(args):
    failures = []
    if sys.version_info[:2] != (3, 9):
        failures.append("Python %d.%d runs this, the contest image's MindSpore 2.3.0rc2 is cp39: run make with the "
                        "image's python3 (Python 3.9)" % sys.version_info[:2])
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
    # mindpet: MindFormers' LoRA cells (mindformers.pet) are built from it
    for mod in ("tiktoken", "yaml", "jsonschema", "jieba", "tqdm", "matplotlib", "mindpet"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    if missing and not args.check_only:
        install_ascend_requirements()
        missing = [m for m in missing if subprocess.run([sys.executable, "-c", "import " + m]).returncode]
    for mod in missing:
        failures.append("python module %s is missing: pip install -r requirements-ascend.txt" % mod)
    npus = visible_npus(args.dev_dir)
    try:
        need = profile_devices(args.profile) if args.profile else 1
    except ImportError:  # pyyaml missing: reported above
        need = 1
    if len(npus) < need:
        failures.append("%d Ascend NPU(s) visible (%s/davinci*, ASCEND_RT_VISIBLE_DEVICES=%s), %s needs %d: pick a "
                        "notebook flavour with %d NPUs" % (len(npus), args.dev_dir,
                                                          os.environ.get("ASCEND_RT_VISIBLE_DEVICES", "unset"),
                                                          "profile " + args.profile if args.profile else "the kit",
                                                          need, need))
    for line in failures:
        print("setup: FAIL: " + line, file=sys.stderr)
    if failures:
        return 2
    did = []
    rc = _patch(Path(sys.executable), mf_dir, did)
    if rc:
        return rc
    print("setup: ascend checks passed (Python 3.9, %d NPU(s) visible: %s); %s"
          % (len(npus), ",".join(map(str, npus)), "; ".join(did) if did else "patches already applied, nothing to do"))
    print("setup: remember: export PYTHONPATH=%s:$PYTHONPATH" % mf_dir)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--platform", choices=("cpu", "ascend"), default="cpu")
    ap.add_argument("--python39", default="auto", metavar="PATH|auto|none",
                    help="cpu: the Python 3.9 for .venv39 (default auto: python3.9 on PATH, else pyenv's 3.9.x; "
                         "none: no second venv)")
    ap.add_argument("--mindformers-dir", help="contest MindFormers source root (default: $MINDFORMERS_DIR)")
    ap.add_argument("--profile", help="ascend: also check that the NPUs this profile trains on are visible")
    ap.add_argument("--dev-dir", default="/dev", help=argparse.SUPPRESS)  # tests point it at fake device files
    ap.add_argument("--check-only", action="store_true", help="ascend: report, install nothing")
    args = ap.parse_args()
    return setup_cpu(args) if args.platform == "cpu" else setup_ascend(args)


if __name__ == "__main__":
    sys.exit(main())
