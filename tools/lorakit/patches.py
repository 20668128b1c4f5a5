"""The MindFormers patch series file (mindformers_patches/series), read by one rule everywhere: patch_mindformers
applies it, finetune records it in run.json, package copies it into a submission, verify checks the copy.

One patch file name per line, in the order they apply; `#` starts a comment anywhere on a line (so
`0001-x.patch  # why` names 0001-x.patch); blank lines are skipped.
"""

from pathlib import Path

from .io import KitError, sha256_file, unreadable
from .paths import PATCHES_DIR

SERIES_NAME = "series"


def parse_series(text):
    """[(line number, patch name)] of the text of a series file."""
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        name = line.split("#", 1)[0].strip()
        if name:
            out.append((lineno, name))
    return out


def read_series(series, limit=None, name=None):
    """parse_series of a series file (at most `limit` bytes when given; a larger file is a KitError naming the
    file as `name`, default its path)."""
    series = Path(series)
    name = name or str(series)
    try:
        with open(str(series), "rb") as fh:
            raw = fh.read(limit + 1) if limit is not None else fh.read()
    except OSError as exc:
        raise unreadable(name, exc) from None
    if limit is not None and len(raw) > limit:
        raise KitError("%s: over the %d-byte limit" % (name, limit))
    return parse_series(raw.decode("utf-8", "replace"))


def kit_series(patches_dir=None):
    """(series file, [(name, path)]) of the kit's patches (mindformers_patches/), in series order; an empty list
    when the kit has no series file. Listed files may be missing: callers say so."""
    pdir = Path(patches_dir) if patches_dir is not None else PATCHES_DIR
    series = pdir / SERIES_NAME
    if not series.is_file():
        return series, []
    return series, [(name, pdir / name) for _, name in read_series(series)]


def fingerprints(patch_files):
    """[{name, sha256}] of [(name, path)] (sha256 None for a missing file: reported, never hidden)."""
    return [{"name": n, "sha256": sha256_file(p) if Path(p).is_file() else None} for n, p in patch_files]
