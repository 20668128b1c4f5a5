"""Small I/O helpers every tool needs: one-line errors, atomic writes, JSONL with line numbers, hashes."""

import contextlib
import hashlib
import json
import math
import os
import stat
import sys
import tempfile
import unicodedata
from pathlib import Path


class KitError(Exception):
    """An error the user can fix; printed as one line by run_main, exit code 2."""


def run_main(main):
    """Call main() and turn KitError into `tool: error: message` + exit 2 (no traceback)."""
    prog = Path(sys.argv[0]).name
    try:
        rc = main()
    except KitError as exc:
        print("%s: error: %s" % (prog, exc), file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("%s: interrupted" % prog, file=sys.stderr)
        sys.exit(130)
    sys.exit(rc or 0)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temp path beside `path`; rename it onto `path` only if the block succeeds.

    Readers never see a half-written file and a failed run leaves nothing behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp", dir=str(path.parent))
    os.close(fd)
    # mkstemp makes the file 0600; give it the mode a plain open() would (0666 minus the umask)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_open(path, mode="w", encoding="utf-8"):
    """open() for writing that only replaces `path` when the block succeeds."""
    with atomic_path(path) as tmp:
        kwargs = {} if "b" in mode else {"encoding": encoding, "newline": "\n"}
        with open(tmp, mode, **kwargs) as fh:
            yield fh


def write_json(path, obj):
    with atomic_open(path) as fh:
        json.dump(obj, fh, ensure_ascii=False, indent=2, sort_keys=False)
        fh.write("\n")


def write_jsonl(path, rows):
    with atomic_open(path) as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_json(path):
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except OSError as exc:
        raise KitError("%s: cannot read: %s" % (path, exc.strerror or exc)) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise KitError("%s: not valid JSON: %s" % (path, exc)) from None


# Strict JSON, for files taken from strangers (verify.py): no duplicate keys, no NaN/Infinity, no number that
# overflows to infinity, no integer with more digits than any honest count has, bounded nesting and size.
MAX_NUMBER_CHARS = 40
MAX_JSON_DEPTH = 64


class _Refused(ValueError):
    pass


def _no_duplicates(pairs):
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise _Refused("duplicate key %r" % show(key, 60))
        obj[key] = value
    return obj


def _no_constant(name):
    raise _Refused("%s is not a JSON number" % name)


def _finite_float(text):
    if len(text) > MAX_NUMBER_CHARS:
        raise _Refused("number with %d characters (at most %d)" % (len(text), MAX_NUMBER_CHARS))
    value = float(text)
    if not math.isfinite(value):
        raise _Refused("number %s is not finite" % text)
    return value


def _short_int(text):
    if len(text) > MAX_NUMBER_CHARS:
        raise _Refused("integer with %d digits (at most %d)" % (len(text.lstrip("-")), MAX_NUMBER_CHARS))
    return int(text)


def json_shape_problem(obj, max_depth=MAX_JSON_DEPTH, max_nodes=None, max_string=None):
    """Why a parsed JSON/YAML value is too deep, too big or holds a non-finite float, or None. Shared
    references (YAML aliases) are visited once."""
    stack = [(obj, 1)]
    seen = set()
    nodes = 0
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if max_nodes is not None and nodes > max_nodes:
            return "more than %d values" % max_nodes
        if isinstance(node, float) and not math.isfinite(node):
            return "non-finite number %r" % node
        if isinstance(node, str):
            if max_string is not None and len(node) > max_string:
                return "a string of %d characters (at most %d)" % (len(node), max_string)
            continue
        if not isinstance(node, (dict, list)):
            continue
        if depth > max_depth:
            return "nested deeper than %d levels" % max_depth
        if id(node) in seen:
            continue
        seen.add(id(node))
        children = list(node.keys()) + list(node.values()) if isinstance(node, dict) else node
        stack.extend((c, depth + 1) for c in children)
    return None


def loads_strict(text, max_depth=MAX_JSON_DEPTH, max_nodes=None, max_string=None):
    """json.loads for hostile input; raises ValueError with a one-line reason."""
    try:
        obj = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant,
                         parse_float=_finite_float, parse_int=_short_int)
    except _Refused:
        raise
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except ValueError as exc:
        raise ValueError("not valid JSON: %s" % show(str(exc), 200)) from None
    why = json_shape_problem(obj, max_depth, max_nodes, max_string)
    if why:
        raise ValueError(why)
    return obj


def read_json_strict(path, limit, name=None, max_nodes=None, max_string=None, expect=dict):
    """loads_strict of a file of at most `limit` bytes whose top level is `expect`; KitError naming `name`."""
    name = name or Path(path).name
    try:
        size = os.stat(str(path)).st_size
        if size > limit:
            raise KitError("%s: %d bytes, over the %d-byte limit" % (name, size, limit))
        with open(str(path), "rb") as fh:
            raw = fh.read(limit + 1)
    except OSError as exc:
        raise KitError("%s: cannot read: %s" % (name, exc.strerror or exc)) from None
    try:
        obj = loads_strict(raw.decode("utf-8"), max_nodes=max_nodes, max_string=max_string)
    except UnicodeDecodeError as exc:
        raise KitError("%s: not UTF-8 (byte %d)" % (name, exc.start)) from None
    except ValueError as exc:
        raise KitError("%s: %s" % (name, exc)) from None
    if expect is not None and not isinstance(obj, expect):
        raise KitError("%s: top level is %s, not a JSON %s" % (name, type(obj).__name__,
                                                                "object" if expect is dict else expect.__name__))
    return obj


def show(text, limit=160):
    """`text` safe to print on a terminal: control, format (bidi) and unassigned characters escaped, at most
    `limit` characters (the rest counted). For names and values taken from untrusted files."""
    text = str(text)
    cut = len(text) - limit if len(text) > limit else 0
    if cut:
        text = text[:limit]
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if cat[0] == "C" or cat in ("Zl", "Zp"):
            out.append(ch.encode("unicode_escape").decode("ascii"))
        else:
            out.append(ch)
    return "".join(out) + ("...(+%d chars)" % cut if cut else "")


class BadLine:
    """A JSONL line that could not be used: where and why."""

    __slots__ = ("path", "lineno", "reason")

    def __init__(self, path, lineno, reason):
        self.path, self.lineno, self.reason = str(path), lineno, reason

    def __str__(self):
        return "%s:%d: %s" % (self.path, self.lineno, self.reason)

    def as_dict(self):
        return {"path": self.path, "line": self.lineno, "reason": self.reason}


def _lines(fh, max_line_bytes):
    """Lines of a binary file; with max_line_bytes, a longer line is yielded as None (never held in memory)."""
    if not max_line_bytes:
        yield from fh
        return
    while True:
        raw = fh.readline(max_line_bytes + 1)
        if not raw:
            return
        if len(raw) > max_line_bytes and not raw.endswith(b"\n"):
            while True:  # skip the rest of the over-long line in bounded reads
                more = fh.readline(1 << 20)
                if not more or more.endswith(b"\n"):
                    break
            yield None
            continue
        yield raw


def iter_jsonl(path, required=(), bad=None, strict=False, max_line_bytes=None):
    """Yield (lineno, obj) for each usable JSON object line of `path`.

    Lines that are not UTF-8, not JSON, not an object, or lack a required non-empty string
    field are appended to `bad` (a list of BadLine) and skipped; with bad=None they raise
    KitError naming the file and line. A last line without newline that fails to parse is
    reported as truncated. strict=True parses with loads_strict (hostile input: no duplicate keys,
    NaN or Infinity); a line over max_line_bytes is a bad line (it is skipped without being read whole).
    """
    path = Path(path)
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise KitError("%s: cannot read: %s" % (path, exc.strerror or exc)) from None
    with fh:
        lineno = 0
        for raw in _lines(fh, max_line_bytes):
            lineno += 1
            reason = None
            obj = None
            if raw is None:
                reason = "line longer than %d bytes" % max_line_bytes
            elif not raw.strip():
                continue
            else:
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    reason = "not UTF-8 (byte %d)" % exc.start
                else:
                    try:
                        obj = loads_strict(text) if strict else json.loads(text)
                    except RecursionError:
                        reason = "nested too deeply"
                    except ValueError as exc:
                        if not raw.endswith(b"\n"):
                            reason = "truncated last line"
                        elif strict:
                            reason = str(exc)
                        else:
                            reason = "not JSON: %s" % getattr(exc, "msg", exc)
                    if reason is None:
                        if not isinstance(obj, dict):
                            reason = "not a JSON object"
                        else:
                            for field in required:
                                value = obj.get(field)
                                if field not in obj:
                                    reason = "missing field %r" % field
                                elif not isinstance(value, str):
                                    reason = "field %r is not a string" % field
                                elif not value.strip():
                                    reason = "field %r is empty" % field
                                if reason:
                                    break
            if reason:
                if bad is None:
                    raise KitError("%s:%d: %s" % (path, lineno, reason))
                bad.append(BadLine(path, lineno, reason))
                continue
            yield lineno, obj


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: alive, another user's
        return True
    return True


def sweep_stale_tempdirs(prefix, root=None):
    """Remove <root>/<prefix><pid>-* folders of ours whose process is gone (killed before it could clean up);
    returns how many. Folders of live processes and of other users are left alone."""
    import re
    import shutil

    root = root or tempfile.gettempdir()
    removed = 0
    try:
        names = os.listdir(root)
    except OSError:
        return 0
    pattern = re.compile(re.escape(prefix) + r"(\d+)-")
    for name in names:
        m = pattern.match(name)
        if not m or int(m.group(1)) == os.getpid() or _pid_alive(int(m.group(1))):
            continue
        full = os.path.join(root, name)
        try:
            st = os.lstat(full)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid():
            shutil.rmtree(full, ignore_errors=True)
            removed += 1
    return removed


@contextlib.contextmanager
def pid_tempdir(prefix):
    """A temporary folder <tmp>/<prefix><pid>-XXXX, removed when the block ends. Leftovers of earlier runs that
    were killed (SIGKILL leaves no chance to clean up) are swept first; see sweep_stale_tempdirs."""
    import shutil

    sweep_stale_tempdirs(prefix)
    path = tempfile.mkdtemp(prefix="%s%d-" % (prefix, os.getpid()))
    try:
        yield Path(path)
    finally:
        shutil.rmtree(path, ignore_errors=True)


def sha256_file(path, chunk=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def file_fingerprint(path, hash_limit=2 << 30):
    """sha256 for files up to `hash_limit` bytes; size+mtime above it (hashing 16 GB takes minutes).

    The returned dict says which one it is, so a record never passes one off as the other.
    """
    st = os.stat(path)
    if st.st_size <= hash_limit:
        return {"bytes": st.st_size, "sha256": sha256_file(path)}
    return {"bytes": st.st_size, "mtime": int(st.st_mtime), "sha256": None,
            "note": "not hashed: larger than %d bytes" % hash_limit}
