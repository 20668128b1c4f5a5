"""Submission manifests: file lists with hashes, schema validation, absolute-path scan, safe zips.

Used by tools/package.py (the producer) and tools/verify.py (the judge's checker). Everything here
treats a submission as hostile input: names are checked before anything touches the disk, zip members
are streamed with size caps, symlinks and special files are refused, and nothing from a submission is
ever imported, unpickled or executed.
"""

import json
import os
import re
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath

from .io import KitError, atomic_path, loads_strict, read_json_strict, sha256_file, show
from .params import LLAMA3_8B_TOTAL, score_ratio  # noqa: F401 - the score rule lives with the counts
from .paths import SCHEMA_DIR

MANIFEST_NAME = "manifest.json"
SCHEMA_NAME = "manifest.schema.json"
ADAPTER_SCHEMA_NAME = "adapter_config.schema.json"
SCHEMA_VERSION = 1

# Limits for a submission taken from anyone (the first four are overridable on the verify command line). Each
# is far above what an honest submission needs and low enough that verify stays within seconds and < 1 GB.
DEFAULT_MAX_MEMBERS = 2000
DEFAULT_MAX_MEMBER_BYTES = 2 << 30  # one file (an 8B r64 adapter on every linear, fp32, is ~0.7 GB)
DEFAULT_MAX_TOTAL_BYTES = 16 << 30
DEFAULT_MAX_JSON_BYTES = 64 << 20  # any text file: JSON/JSONL parsed, logs and reports scanned
MAX_MANIFEST_BYTES = 2 << 20  # an honest manifest (2,000 files, all families) is < 0.5 MB
MAX_MANIFEST_VALUES = 100000  # JSON values in the manifest (bounds the schema validation's work)
MAX_YAML_BYTES = 1 << 20  # a resolved MindFormers yaml is ~10 KB
MAX_YAML_NODES = 100000  # YAML nodes after expanding aliases (an alias bomb expands to billions)
MAX_YAML_ALIASES = 100
MAX_TEXT_FACTOR = 2  # all text files together: at most 2 x the per-file text limit (the path scan reads them all)
MAX_LINE_BYTES = 1 << 20  # one JSONL record (a completion of 8,192 tokens is < 100 KB)
MAX_NAME_CHARS = 512  # a member path; one component at most 255 bytes (the file systems' own limit)
MAX_TENSORS = 10000  # tensors in one checkpoint (Llama3-8B has 291, its largest adapter 448)

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
    if len(name) > MAX_NAME_CHARS:
        return "name of %d characters (at most %d)" % (len(name), MAX_NAME_CHARS)
    if any(len(p.encode("utf-8", "surrogatepass")) > 255 for p in parts):
        return "a path component longer than 255 bytes"
    return None


def _text_total_problem(text_total, limits):
    cap = MAX_TEXT_FACTOR * limits.max_json_bytes
    return ["%d bytes of text files in total, over the limit of %d" % (text_total, cap)] if text_total > cap else []


def size_problem(name, size, limits):
    """Why a file of `size` bytes named `name` is too big for a submission, or None. Text files (which verify
    parses or scans) have the tighter text limit."""
    if is_text_name(name) and size > limits.max_json_bytes:
        return "%d bytes, over the %d-byte limit for text files" % (size, limits.max_json_bytes)
    if size > limits.max_member_bytes:
        return "%d bytes, over the per-file limit of %d" % (size, limits.max_member_bytes)
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
    total = text_total = 0
    entries = 0
    for dirpath, dirnames, filenames in os.walk(str(root), followlinks=False):
        for name in sorted(dirnames + filenames):
            entries += 1
            if entries > 2 * limits.max_members:  # stop early: a folder of a million files is not read through
                problems.append("more than %d entries, over the limit of %d files" % (2 * limits.max_members,
                                                                                    limits.max_members))
                return sorted(files), problems
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, str(root)).replace(os.sep, "/")
            try:
                st = os.lstat(full)
            except OSError as exc:
                problems.append("%s: cannot stat: %s" % (show(rel), exc.strerror or exc))
                continue
            if stat.S_ISLNK(st.st_mode):
                problems.append("%s: symbolic link (not allowed in a submission)" % show(rel))
                continue
            if stat.S_ISDIR(st.st_mode):
                continue
            if not stat.S_ISREG(st.st_mode):
                problems.append("%s: not a regular file" % show(rel))
                continue
            why = relpath_problem(rel) or size_problem(rel, st.st_size, limits)
            if why:
                problems.append("%s: %s" % (show(rel), why))
                continue
            total += st.st_size
            text_total += st.st_size if is_text_name(rel) else 0
            files.append(rel)
        # never descend into symlinked directories (os.walk does not with followlinks=False)
    if len(files) > limits.max_members:
        problems.append("%d files, over the limit of %d" % (len(files), limits.max_members))
    problems += _text_total_problem(text_total, limits)
    if total > limits.max_total_bytes:
        problems.append("%d bytes in total, over the limit of %d" % (total, limits.max_total_bytes))
    return sorted(files), problems


def file_entries(root, exclude=(MANIFEST_NAME,), progress=None, limits=None):
    """[{path, bytes, sha256}] for every regular file below root (sorted), except `exclude`."""
    files, problems = walk_folder(root, limits)
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
    return None if is_dir else size_problem(name, info.file_size, limits)


def _zip_entry_count(zip_path):
    """Members the zip's end record announces (None if it cannot tell), read before zipfile builds one object
    per member: a central directory announcing millions of members is refused without parsing it."""
    try:
        with open(str(zip_path), "rb") as fh:
            end = zipfile._EndRecData(fh)  # the record zipfile.ZipFile itself starts from
    except (OSError, AttributeError, ValueError):
        return None
    return None if not end else end[zipfile._ECD_ENTRIES_TOTAL]


def _open_zip(zip_path):
    """zipfile.ZipFile of a hostile file, or a one-line reason (bad names, bad headers, anything zipfile raises)."""
    try:
        return zipfile.ZipFile(str(zip_path)), None
    except (OSError, zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, RuntimeError,
            NotImplementedError, OverflowError, MemoryError) as exc:
        # UnicodeDecodeError (a member name flagged UTF-8 that is not) is a ValueError
        return None, "not a readable zip: %s: %s" % (type(exc).__name__, show(exc, 200))


def scan_zip(zip_path, limits=None):
    """Check every member of a zip without extracting -> (member infos, problems)."""
    limits = limits or Limits()
    problems = []
    announced = _zip_entry_count(zip_path)
    if announced is not None and announced > limits.max_members:
        return [], ["%d members announced, over the limit of %d" % (announced, limits.max_members)]
    zf, why = _open_zip(zip_path)
    if zf is None:
        return [], ["%s: %s" % (show(Path(zip_path).name), why)]
    with zf:
        infos = zf.infolist()
    if len(infos) > limits.max_members:
        return infos, ["%d members, over the limit of %d" % (len(infos), limits.max_members)]
    seen = set()
    total = text_total = 0
    for info in infos:
        why = _zip_member_problem(info, limits)
        if why:
            problems.append("%s: %s" % (show(info.filename), why))
        key = info.filename.rstrip("/")
        if key in seen:
            problems.append("%s: duplicate member" % show(info.filename))
        seen.add(key)
        total += info.file_size
        text_total += info.file_size if is_text_name(info.filename) else 0
    if total > limits.max_total_bytes:
        problems.append("%d bytes uncompressed, over the limit of %d" % (total, limits.max_total_bytes))
    problems += _text_total_problem(text_total, limits)
    return infos, problems


def _zip_root(infos):
    """The folder prefix ('' or 'team/') under which the zip holds manifest.json, or None."""
    names = [i.filename for i in infos]
    if MANIFEST_NAME in names:
        return ""
    tops = {n.split("/", 1)[0] for n in names}
    if len(tops) == 1:
        prefix = tops.pop() + "/"
        if prefix + MANIFEST_NAME in names:
            return prefix
    return None


def _declared_problems(zf, infos, limits):
    """Before anything is written: the zip's files must be exactly those manifest.json declares, each with the
    declared size (read from the zip, size-capped, strict JSON), so nothing undeclared or oversized reaches disk."""
    root = _zip_root(infos)
    if root is None:
        return ["no %s at the top of the zip (or of its one top folder)" % MANIFEST_NAME]
    info = zf.getinfo(root + MANIFEST_NAME)
    if info.file_size > MAX_MANIFEST_BYTES:
        return ["%s: %d bytes, over the %d-byte limit" % (MANIFEST_NAME, info.file_size, MAX_MANIFEST_BYTES)]
    try:
        with zf.open(info) as fh:
            raw = fh.read(MAX_MANIFEST_BYTES + 1)
        manifest = loads_strict(raw.decode("utf-8"), max_nodes=MAX_MANIFEST_VALUES)
    except (ValueError, zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError, EOFError) as exc:
        return ["%s: %s" % (MANIFEST_NAME, show(exc, 200))]
    declared = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(declared, list) or not all(isinstance(e, dict) and isinstance(e.get("path"), str)
                                                 for e in declared):
        return ["%s: no list of files with paths" % MANIFEST_NAME]
    sizes = {e["path"]: e.get("bytes") for e in declared}
    problems = []
    members = {i.filename[len(root):]: i.file_size for i in infos if not i.filename.endswith("/")}
    members.pop(MANIFEST_NAME, None)
    for rel in sorted(set(members) - set(sizes)):
        problems.append("%s: not declared in %s (not extracted)" % (show(rel), MANIFEST_NAME))
    for rel in sorted(set(members) & set(sizes)):
        if members[rel] != sizes[rel]:
            problems.append("%s: %d bytes in the zip, %s declares %s" % (show(rel), members[rel], MANIFEST_NAME,
                                                                         show(sizes[rel], 40)))
    return problems


def extract_zip(zip_path, dest, limits=None):
    """Extract a checked zip below `dest` (which must exist and be empty) -> list of problems.

    Nothing is written until every member has passed the name and size checks and the zip's members and sizes
    equal what its manifest.json declares, and their total fits the free space of `dest`. Members are then
    written one by one with at most their declared size read (a lying header cannot grow a file past it).
    """
    limits = limits or Limits()
    infos, problems = scan_zip(zip_path, limits)
    if problems:
        return problems
    zf, why = _open_zip(zip_path)
    if zf is None:
        return [why]
    with zf:
        problems = _declared_problems(zf, infos, limits)
        if problems:
            return problems
        dest = Path(dest).resolve()
        need = sum(i.file_size for i in infos)
        try:
            free = shutil.disk_usage(str(dest)).free
        except OSError:
            free = None
        if free is not None and need + (64 << 20) > free:
            return ["%d bytes uncompressed but only %d bytes free in %s (set TMPDIR to a larger disk)"
                    % (need, free, dest.parent)]
        for info in infos:
            target = (dest / info.filename).resolve()
            if target != dest and dest not in target.parents:
                return ["%s: resolves outside the extraction folder" % show(info.filename)]
            written = 0
            try:
                if info.filename.endswith("/"):
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(str(target), "xb") as out:
                    while True:
                        block = src.read(1 << 20)
                        if not block:
                            break
                        written += len(block)
                        if written > info.file_size or written > limits.max_member_bytes:
                            return ["%s: more data than its declared %d bytes" % (show(info.filename),
                                                                                  info.file_size)]
                        out.write(block)
            except FileExistsError:
                return ["%s: written twice" % show(info.filename)]
            except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError, EOFError, ValueError) as exc:
                return ["%s: cannot extract: %s" % (show(info.filename), show(exc, 200))]
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

def find_absolute_paths(text, max_hits=None):
    """Absolute filesystem paths in `text` (list of the matched strings, at most max_hits)."""
    out = []
    for m in _ABS_RE.finditer(text):
        s = m.group(0)
        if s in _ALLOWED_ABS or any(s.startswith(a + "/") for a in _ALLOWED_ABS):
            continue
        out.append(s)
        if max_hits is not None and len(out) >= max_hits:
            break
    return out


def scan_absolute_paths(root, files, max_bytes=DEFAULT_MAX_JSON_BYTES, max_hits=100):
    """'file:line: path' for each absolute path in the text files among `files` below root (the first
    `max_hits`); a text file over `max_bytes` is reported as one (it cannot be scanned, so it cannot be passed)."""
    hits = []
    for rel in files:
        if len(hits) >= max_hits:
            break
        full = Path(root) / rel
        if not is_text_name(rel):
            continue
        size = full.stat().st_size
        if size > max_bytes:
            hits.append("%s: %d bytes, too big to scan (text files: at most %d)" % (show(rel), size, max_bytes))
            continue
        with open(str(full), "rb") as fh:
            for lineno, raw in enumerate(fh, 1):
                for s in find_absolute_paths(raw.decode("utf-8", "replace"), max_hits - len(hits)):
                    hits.append("%s:%d: %s" % (show(rel), lineno, show(s)))
                if len(hits) >= max_hits:
                    break
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


def schema_errors(obj, schema=None, max_errors=1000):
    """One line per JSON Schema (2020-12) violation of `obj` (the first `max_errors`), sorted by location."""
    import jsonschema

    schema = schema if schema is not None else load_schema()
    import itertools

    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    errs = sorted(itertools.islice(validator.iter_errors(obj), max_errors),
                  key=lambda e: (list(map(str, e.absolute_path)), e.message))
    return ["%s: %s" % (show(_json_pointer(e.absolute_path), 120), show(e.message, 200)) for e in errs]


def read_json_limited(path, limit=DEFAULT_MAX_JSON_BYTES, name=None, expect=dict, max_nodes=None):
    """A JSON file from a submission: at most `limit` bytes, strict (lorakit.io.loads_strict: no duplicate keys,
    NaN, Infinity or overflowing numbers, bounded nesting), top level `expect` (None: anything)."""
    return read_json_strict(path, limit, name=name, expect=expect, max_nodes=max_nodes)


def read_yaml_limited(path, limit=MAX_YAML_BYTES, name=None):
    """A YAML file from a submission as a mapping: at most `limit` bytes; its event stream is checked first
    (nesting, aliases, nodes after expanding aliases, over-long numbers), then yaml.safe_load builds it and no
    value may be a non-finite float. One-line KitError naming `name`."""
    import yaml

    name = name or Path(path).name
    size = Path(path).stat().st_size
    if size > limit:
        raise KitError("%s: %d bytes, over the %d-byte limit for YAML" % (name, size, limit))
    try:
        with open(str(path), "rb") as fh:
            text = fh.read(limit + 1).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise KitError("%s: not UTF-8 (byte %d)" % (name, exc.start)) from None
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        why = _yaml_events_problem(yaml.parse(text, Loader=loader))
        if why:
            raise KitError("%s: %s" % (name, why))
        data = yaml.load(text, Loader=loader)  # a SafeLoader: plain data only
    except yaml.YAMLError as exc:
        raise KitError("%s: bad YAML: %s" % (name, show(str(exc).replace("\n", " "), 300))) from None
    except (RecursionError, ValueError, OverflowError) as exc:
        raise KitError("%s: bad YAML: %s" % (name, show(exc, 200) or type(exc).__name__)) from None
    if not isinstance(data, dict):
        raise KitError("%s: top level is not a mapping" % name)
    from .io import json_shape_problem

    why = json_shape_problem(data, max_nodes=MAX_YAML_NODES)
    if why:
        raise KitError("%s: %s" % (name, why))
    return data


def _yaml_events_problem(events):
    """Walk YAML parser events (nothing is built): nesting depth, alias count, the node count the document would
    have with every alias expanded, and over-long plain numbers. Returns a reason or None."""
    import yaml

    stack = [[0, None]]  # per open collection: [expanded node count, anchor]
    sizes = {}
    aliases = 0
    for ev in events:
        if isinstance(ev, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            if len(stack) > 64:
                return "nested deeper than 64 levels"
            stack.append([1, ev.anchor])
        elif isinstance(ev, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            count, anchor = stack.pop()
            if anchor is not None:
                sizes[anchor] = count
            stack[-1][0] += count
        elif isinstance(ev, yaml.ScalarEvent):
            if ev.anchor is not None:
                sizes[ev.anchor] = 1
            value = ev.value
            if not ev.style and len(value) > 100 and value[:1] in "+-.0123456789":  # plain: None, or '' (libyaml)
                return "a plain number of %d characters" % len(value)
            stack[-1][0] += 1
        elif isinstance(ev, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_YAML_ALIASES:
                return "more than %d aliases" % MAX_YAML_ALIASES
            stack[-1][0] += sizes.get(ev.anchor, 1)
        else:
            continue
        if stack[-1][0] > MAX_YAML_NODES or (len(stack) > 1 and sum(c for c, _ in stack) > MAX_YAML_NODES):
            return "more than %d values with its aliases expanded (an alias bomb)" % MAX_YAML_NODES
    return None


# ---------------------------------------------------------------- numbers shared by package and verify

def _safe_entries(path, max_bytes):
    """The entries of lorakit.ckpt_io.iter_ckpt for a (hostile) .ckpt, each checked before the caller reads it:
    file size, at most MAX_TENSORS, no name twice, floating point only, no more bytes claimed than the file holds.
    Use inside _ckpt_errors()."""
    from . import ckpt_io

    path = Path(path)
    size = path.stat().st_size
    if size > max_bytes:
        raise KitError("%s: %d bytes, over the %d-byte limit" % (path.name, size, max_bytes))
    seen = set()
    for entry in ckpt_io.iter_ckpt(path):
        if len(seen) >= MAX_TENSORS:
            raise KitError("more than %d tensors" % MAX_TENSORS)
        if entry.name in seen:
            raise KitError("tensor %s appears twice" % show(entry.name))
        if entry.ttype not in ("Float32", "Float16", "BFloat16", "Float64"):
            raise KitError("tensor %s has type %s (LoRA tensors are floating point)"
                           % (show(entry.name), show(entry.ttype)))
        if entry.nbytes > size or entry.numel > size:
            raise KitError("tensor %s claims %d bytes, more than the file holds" % (show(entry.name), entry.nbytes))
        seen.add(entry.name)
        yield entry
    if not seen:
        raise KitError("no tensors")


class _ckpt_errors:
    """Turns what a malformed checkpoint makes the reader raise into one KitError line."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and issubclass(exc_type, (EOFError, UnicodeDecodeError, OverflowError, MemoryError,
                                                           IndexError)):
            raise KitError("not a readable MindSpore checkpoint (%s)" % exc_type.__name__) from None
        return False


def read_ckpt_safe(path, max_bytes=DEFAULT_MAX_MEMBER_BYTES):
    """OrderedDict name -> float64 ndarray of a (hostile) .ckpt (adapter or small base), via lorakit.ckpt_io's protobuf reader.

    Sizes are checked against the file before any buffer is allocated, so a lying header cannot make
    the reader allocate more than the file holds. Never unpickles, never calls MindSpore.
    """
    import collections

    from . import ckpt_io

    out = collections.OrderedDict()
    with _ckpt_errors():
        for entry in _safe_entries(path, max_bytes):
            out[entry.name] = ckpt_io.as_float64(entry.load())
    return out


class TensorStats:
    """What verify needs to know of one tensor, computed in one streaming pass (never the whole tensor in memory)."""

    __slots__ = ("name", "shape", "ttype", "numel", "finite", "sumsq", "nonzero")

    @property
    def rms(self):
        return (self.sumsq / self.numel) ** 0.5 if self.numel and self.finite else 0.0

    @property
    def norm(self):
        return self.sumsq ** 0.5 if self.finite else float("nan")


def ckpt_stats(path, max_bytes=DEFAULT_MAX_MEMBER_BYTES, load=None):
    """OrderedDict name -> TensorStats of a (hostile) .ckpt: shapes from the index; values (finite, sum of
    squares, any non-zero) read in bounded chunks only for the tensors `load(name, shape)` accepts (default all).
    Never unpickles, never calls MindSpore; every bound of lorakit.ckpt_io and MAX_TENSORS holds."""
    import collections

    import numpy as np

    out = collections.OrderedDict()
    with _ckpt_errors():
        for entry in _safe_entries(path, max_bytes):
            st = TensorStats()
            st.name, st.shape, st.ttype, st.numel = entry.name, entry.shape, entry.ttype, entry.numel
            st.finite, st.sumsq, st.nonzero = None, None, None
            if load is None or load(entry.name, entry.shape):
                st.finite, st.sumsq, st.nonzero = True, 0.0, False
                for chunk in entry.float_chunks():
                    if st.finite and not np.all(np.isfinite(chunk)):
                        st.finite = False
                    if st.finite:
                        st.sumsq += float(np.dot(chunk, chunk))
                    st.nonzero = st.nonzero or bool(np.any(chunk))
            out[entry.name] = st
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


def count_from_tensors(tensors, model_cfg, pet=None):
    """params.summarize() of an adapter's tensors: trainable = every LoRA tensor present in the adapter (the
    weights themselves, not the freeze rules a config states), the base total from the closed form of
    model_cfg. `tensors`: name -> anything with .size (ndarray) or .numel (TensorStats)."""
    from . import params as P

    def size(t):
        return int(t.size) if hasattr(t, "size") else int(t.numel)

    trainable = sum(size(t) for n, t in tensors.items() if P.LORA_TAG in n)
    base_total = sum(P.numel(s) for s, _ in P.base_param_table(model_cfg).values())
    lora_total = sum(size(t) for t in tensors.values())
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
