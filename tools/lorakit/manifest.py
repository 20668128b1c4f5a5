"""Submission manifests: file lists with hashes, schema validation, absolute-path scan, safe zips.

Used by tools/package.py (the producer) and tools/verify.py (the judge's checker). Everything here
treats a submission as hostile input: names are checked before anything touches the disk, zip members
are streamed with size caps, symlinks and special files are refused, and nothing from a submission is
ever imported, unpickled or executed.
"""

import json
import os
import re
import stat
import zipfile
from pathlib import Path, PurePosixPath

from .io import KitError, atomic_path, sha256_file
from .params import LLAMA3_8B_TOTAL, score_ratio  # noqa: F401 - the score rule lives with the counts
from .paths import SCHEMA_DIR

MANIFEST_NAME = "manifest.json"
SCHEMA_NAME = "manifest.schema.json"
ADAPTER_SCHEMA_NAME = "adapter_config.schema.json"
SCHEMA_VERSION = 1

# Limits for a submission taken from anyone (overridable on the verify command line).
DEFAULT_MAX_MEMBERS = 2000
DEFAULT_MAX_MEMBER_BYTES = 4 << 30  # one file (an 8B r64 q,k,v,o fp32 adapter is ~220 MB)
DEFAULT_MAX_TOTAL_BYTES = 16 << 30
DEFAULT_MAX_JSON_BYTES = 256 << 20  # any JSON/JSONL/YAML file verify parses

TEXT_SUFFIXES = (".json", ".jsonl", ".md", ".yaml", ".yml", ".txt", ".log", ".patch", ".diff", ".csv", ".tsv")
TEXT_NAMES = ("series",)

# Absolute paths: POSIX paths under a usual root, a Windows drive or UNC path, or file:// URLs.
# A bare root-level word is not flagged ("/ 2"), nor is /dev/null (unified diffs of new files use it).
_POSIX_ROOTS = ("home", "root", "work", "tmp", "usr", "opt", "var", "etc", "mnt", "data", "srv", "media",
                "Users", "private", "nfs", "cache", "scratch", "ssd", "disk", "cloud", "run", "proc", "sys",
                "lib", "lib64", "bin", "sbin", "snap", "workspace", "app", "code", "dev")
_ABS_RE = re.compile(
    r"(?:(?<![\w.:/\\~-])/(?:%s)(?:/[^\s'\"`<>|;,)\]]*)?(?![\w.-]))"
    r"|(?:(?<![\w])[A-Za-z]:[\\/][^\s'\"`<>|;,)\]]+)"
    r"|(?:(?<![\w\\])\\\\[\w.-]+\\[^\s'\"`<>|;,)\]]+)"
    r"|(?:file://[^\s'\"`<>|;,)\]]+)" % "|".join(_POSIX_ROOTS))
_ALLOWED_ABS = ("/dev/null",)


class Limits:
    """Size and count caps for a submission (folder or zip)."""

    def __init__(self, max_members=DEFAULT_MAX_MEMBERS, max_member_bytes=DEFAULT_MAX_MEMBER_BYTES,
                 max_total_bytes=DEFAULT_MAX_TOTAL_BYTES, max_json_bytes=DEFAULT_MAX_JSON_BYTES):
        self.max_members = int(max_members)
        self.max_member_bytes = int(max_member_bytes)
        self.max_total_bytes = int(max_total_bytes)
        self.max_json_bytes = int(max_json_bytes)


# ---------------------------------------------------------------- names

def relpath_problem(name):
    """Why `name` is not an acceptable relative member path of a submission, or None if it is."""
    if not isinstance(name, str) or not name:
        return "empty name"
    if "\x00" in name:
        return "NUL byte in name"
    if "\\" in name:
        return "backslash in name (absolute or Windows path)"
    if name.startswith("/"):
        return "absolute path"
    if re.match(r"^[A-Za-z]:", name):
        return "drive-letter path"
    parts = name.split("/")
    if any(p == ".." for p in parts):
        return "parent-directory component '..' (zip-slip)"
    if any(p in ("", ".") for p in parts):
        return "empty or '.' path component"
    if any(ord(c) < 32 for c in name):
        return "control character in name"
    return None


def is_text_name(path):
    p = PurePosixPath(str(path))
    return p.suffix.lower() in TEXT_SUFFIXES or p.name in TEXT_NAMES


# ---------------------------------------------------------------- folders

def walk_folder(root, limits=None):
    """Every entry below `root` -> (files, problems).

    files: sorted relative POSIX paths of regular files. problems: symlinks, special files,
    bad names, too many files, files or totals over the limits, each one line.
    """
    limits = limits or Limits()
    root = Path(root)
    files, problems = [], []
    total = 0
    for dirpath, dirnames, filenames in os.walk(str(root), followlinks=False):
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            rel = Path(full).relative_to(root).as_posix()
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                problems.append("%s: symbolic link (not allowed in a submission)" % rel)
                continue
            if stat.S_ISDIR(st.st_mode):
                continue
            if not stat.S_ISREG(st.st_mode):
                problems.append("%s: not a regular file" % rel)
                continue
            why = relpath_problem(rel)
            if why:
                problems.append("%s: %s" % (rel, why))
                continue
            if st.st_size > limits.max_member_bytes:
                problems.append("%s: %d bytes, over the per-file limit of %d" % (rel, st.st_size,
                                                                                limits.max_member_bytes))
            total += st.st_size
            files.append(rel)
        # never descend into symlinked directories (os.walk does not with followlinks=False)
    if len(files) > limits.max_members:
        problems.append("%d files, over the limit of %d" % (len(files), limits.max_members))
    if total > limits.max_total_bytes:
        problems.append("%d bytes in total, over the limit of %d" % (total, limits.max_total_bytes))
    return sorted(files), problems


def file_entries(root, exclude=(MANIFEST_NAME,), progress=None):
    """[{path, bytes, sha256}] for every regular file below root (sorted), except `exclude`."""
    files, problems = walk_folder(root)
    if problems:
        raise KitError("%s: %s" % (root, "; ".join(problems)))
    out = []
    for rel in files:
        if rel in exclude:
            continue
        full = Path(root) / rel
        out.append({"path": rel, "bytes": full.stat().st_size, "sha256": sha256_file(full)})
        if progress is not None:
            progress.update(1)
    return out


# ---------------------------------------------------------------- zips

def _zip_member_problem(info, limits):
    name = info.filename
    is_dir = name.endswith("/")
    why = relpath_problem(name.rstrip("/") if is_dir else name)
    if why:
        return why
    mode = (info.external_attr >> 16) & 0xFFFF
    if info.create_system == 3 and mode:  # unix attributes present (no type bits: a plain file)
        fmt = stat.S_IFMT(mode)
        if fmt == stat.S_IFLNK:
            return "symbolic link member"
        if fmt not in (0, stat.S_IFREG, stat.S_IFDIR):
            return "special file member (mode %o)" % mode
    if info.flag_bits & 0x1:
        return "encrypted member"
    if info.file_size > limits.max_member_bytes:
        return "%d bytes, over the per-file limit of %d" % (info.file_size, limits.max_member_bytes)
    return None


def scan_zip(zip_path, limits=None):
    """Check every member of a zip without extracting -> (member infos, problems)."""
    limits = limits or Limits()
    problems = []
    try:
        zf = zipfile.ZipFile(str(zip_path))
    except (OSError, zipfile.BadZipFile) as exc:
        return [], ["%s: not a readable zip: %s" % (zip_path, exc)]
    with zf:
        infos = zf.infolist()
    if len(infos) > limits.max_members:
        return infos, ["%d members, over the limit of %d" % (len(infos), limits.max_members)]
    seen = set()
    total = 0
    for info in infos:
        why = _zip_member_problem(info, limits)
        if why:
            problems.append("%s: %s" % (info.filename, why))
        key = info.filename.rstrip("/")
        if key in seen:
            problems.append("%s: duplicate member" % info.filename)
        seen.add(key)
        total += info.file_size
    if total > limits.max_total_bytes:
        problems.append("%d bytes uncompressed, over the limit of %d" % (total, limits.max_total_bytes))
    return infos, problems


def extract_zip(zip_path, dest, limits=None):
    """Extract a checked zip below `dest` (which must exist and be empty) -> list of problems.

    Members are written one by one with at most their declared size read (a lying header cannot
    grow a file past the cap); nothing is extracted when the scan finds a problem.
    """
    limits = limits or Limits()
    infos, problems = scan_zip(zip_path, limits)
    if problems:
        return problems
    dest = Path(dest).resolve()
    with zipfile.ZipFile(str(zip_path)) as zf:
        for info in infos:
            target = (dest / info.filename).resolve()
            if target != dest and dest not in target.parents:
                return ["%s: resolves outside the extraction folder" % info.filename]
            if info.filename.endswith("/"):
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            written = 0
            try:
                with zf.open(info) as src, open(str(target), "xb") as out:
                    while True:
                        block = src.read(1 << 20)
                        if not block:
                            break
                        written += len(block)
                        if written > info.file_size or written > limits.max_member_bytes:
                            return ["%s: more data than its declared %d bytes" % (info.filename, info.file_size)]
                        out.write(block)
            except FileExistsError:
                return ["%s: written twice" % info.filename]
            except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError) as exc:
                return ["%s: cannot extract: %s" % (info.filename, exc)]
    return []


def build_zip(folder, zip_path, arcroot):
    """Zip `folder` as `arcroot/...` (sorted members, fixed timestamps: same inputs, same bytes)."""
    files, problems = walk_folder(folder)
    if problems:
        raise KitError("%s: %s" % (folder, "; ".join(problems)))
    with atomic_path(zip_path) as tmp:
        with zipfile.ZipFile(str(tmp), "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
            for rel in files:
                info = zipfile.ZipInfo("%s/%s" % (arcroot, rel), date_time=(2024, 1, 1, 0, 0, 0))
                info.external_attr = (stat.S_IFREG | 0o644) << 16
                info.create_system = 3
                info.compress_type = zipfile.ZIP_STORED if rel.endswith(".ckpt") else zipfile.ZIP_DEFLATED
                with open(str(Path(folder) / rel), "rb") as src, zf.open(info, "w", force_zip64=True) as dst:
                    while True:
                        block = src.read(1 << 20)
                        if not block:
                            break
                        dst.write(block)
    return zip_path


# ---------------------------------------------------------------- absolute paths

def find_absolute_paths(text):
    """Absolute filesystem paths in `text` (list of the matched strings)."""
    out = []
    for m in _ABS_RE.finditer(text):
        s = m.group(0)
        if s in _ALLOWED_ABS or any(s.startswith(a + "/") for a in _ALLOWED_ABS):
            continue
        out.append(s)
    return out


def scan_absolute_paths(root, files, max_bytes=DEFAULT_MAX_JSON_BYTES):
    """'file:line: path' for each absolute path in the text files among `files` below root."""
    hits = []
    for rel in files:
        full = Path(root) / rel
        if not is_text_name(rel) or full.stat().st_size > max_bytes:
            continue
        with open(str(full), "rb") as fh:
            for lineno, raw in enumerate(fh, 1):
                for s in find_absolute_paths(raw.decode("utf-8", "replace")):
                    hits.append("%s:%d: %s" % (rel, lineno, s))
    return hits


OUTSIDE = "[outside]/"


def scrub_text(text, replacements):
    """Replace each (absolute prefix, relative stand-in) in text, longest prefix first; any absolute path
    left after that (a file outside the kit and the run) becomes `[outside]/<its base name>`."""
    for prefix, repl in sorted(replacements, key=lambda x: -len(x[0])):
        if prefix:
            text = text.replace(prefix, repl)

    def outside(m):
        s = m.group(0)
        if s in _ALLOWED_ABS or any(s.startswith(a + "/") for a in _ALLOWED_ABS):
            return s
        name = PurePosixPath(s.replace("\\", "/").rstrip("/")).name
        return OUTSIDE + name if name else OUTSIDE.rstrip("/")

    return _ABS_RE.sub(outside, text)


# ---------------------------------------------------------------- schema

def load_schema(path=None):
    path = Path(path) if path else SCHEMA_DIR / SCHEMA_NAME
    try:
        with open(str(path), encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError) as exc:
        raise KitError("%s: cannot load schema: %s" % (path, exc)) from None


def _json_pointer(path):
    return "$" + "".join("[%d]" % p if isinstance(p, int) else ".%s" % p for p in path)


def schema_errors(obj, schema=None):
    """One line per JSON Schema (2020-12) violation of `obj`, sorted by location."""
    import jsonschema

    schema = schema if schema is not None else load_schema()
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    errs = sorted(validator.iter_errors(obj), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    return ["%s: %s" % (_json_pointer(e.absolute_path), e.message) for e in errs]


def read_json_limited(path, limit=DEFAULT_MAX_JSON_BYTES):
    """json.load a file from a submission, refusing files over `limit` bytes."""
    size = Path(path).stat().st_size
    if size > limit:
        raise KitError("%s: %d bytes, over the %d-byte limit for JSON" % (path, size, limit))
    try:
        with open(str(path), encoding="utf-8") as fh:
            return json.load(fh)
    except (ValueError, UnicodeDecodeError) as exc:
        raise KitError("%s: not valid JSON: %s" % (path, exc)) from None


# ---------------------------------------------------------------- numbers shared by package and verify

def read_ckpt_safe(path, max_bytes=DEFAULT_MAX_MEMBER_BYTES):
    """OrderedDict name -> float64 ndarray of a (hostile) .ckpt (adapter or small base), via lorakit.ckpt_io's protobuf reader.

    Sizes are checked against the file before any buffer is allocated, so a lying header cannot make
    the reader allocate more than the file holds. Never unpickles, never calls MindSpore.
    """
    import collections

    from . import ckpt_io

    path = Path(path)
    size = path.stat().st_size
    if size > max_bytes:
        raise KitError("%s: %d bytes, over the %d-byte limit" % (path.name, size, max_bytes))
    out = collections.OrderedDict()
    try:
        for entry in ckpt_io.iter_ckpt(path):
            if entry.name in out:
                raise KitError("tensor %s appears twice" % entry.name)
            if entry.ttype not in ("Float32", "Float16", "BFloat16", "Float64"):
                raise KitError("tensor %s has type %s (LoRA tensors are floating point)" % (entry.name, entry.ttype))
            if entry.nbytes > size or entry.numel > size:
                raise KitError("tensor %s claims %d bytes, more than the file holds" % (entry.name, entry.nbytes))
            out[entry.name] = ckpt_io.as_float64(entry.load())
    except (EOFError, UnicodeDecodeError, OverflowError, MemoryError, IndexError) as exc:
        raise KitError("not a readable MindSpore checkpoint (%s)" % type(exc).__name__) from None
    if not out:
        raise KitError("no tensors")
    return out


def extract_base(source_ckpt, out_path):
    """Write the frozen base weights of a full training checkpoint (everything but LoRA tensors and optimizer /
    trainer state) to out_path; returns the number of tensors. Streams one tensor at a time."""
    from . import ckpt_io

    n = 0
    with ckpt_io.CkptWriter(out_path) as w:
        for entry in ckpt_io.iter_ckpt(source_ckpt):
            if ckpt_io.is_lora(entry.name) or ckpt_io.is_state_tensor(entry.name):
                continue
            w.write(entry.name, entry.load())
            n += 1
    if not n:
        raise KitError("%s: no base weights in it" % source_ckpt)
    return n


def count_from_tensors(tensors, model_cfg, pet):
    """params.summarize() of an adapter's tensors: trainable counted from the weights themselves,
    the base total from the closed form of model_cfg."""
    from . import params as P

    names = list(tensors)
    trainable = sum(int(tensors[n].size) for n in P.trainable_names(names, pet))
    base_total = sum(P.numel(s) for s, _ in P.base_param_table(model_cfg).values())
    lora_total = sum(int(t.size) for t in tensors.values())
    return P.summarize(base_total, trainable, lora_total, "weights")


def adapter_view(cfg):
    """The comparable LoRA fields of adapter_config.json (ckpt_io format) or of a yaml pet_config."""
    if not isinstance(cfg, dict):
        raise KitError("LoRA config is not a mapping")
    return {"pet_type": str(cfg.get("pet_type", "lora")).lower(), "rank": cfg.get("lora_rank"),
            "alpha": cfg.get("lora_alpha"), "dropout": cfg.get("lora_dropout"),
            "target_modules": cfg.get("target_modules")}


def scrub_json(obj, replacements):
    """Copy of a JSON value with scrub_text applied to every string (keys included)."""
    if isinstance(obj, dict):
        return {scrub_text(k, replacements): scrub_json(v, replacements) for k, v in obj.items()}
    if isinstance(obj, list):
        return [scrub_json(v, replacements) for v in obj]
    if isinstance(obj, str):
        return scrub_text(obj, replacements)
    return obj
