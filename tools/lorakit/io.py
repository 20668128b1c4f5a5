"""Small I/O helpers every tool needs: one-line errors, atomic writes, JSONL with line numbers, hashes."""

import contextlib
import hashlib
import json
import os
import sys
import tempfile
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


class BadLine:
    """A JSONL line that could not be used: where and why."""

    __slots__ = ("path", "lineno", "reason")

    def __init__(self, path, lineno, reason):
        self.path, self.lineno, self.reason = str(path), lineno, reason

    def __str__(self):
        return "%s:%d: %s" % (self.path, self.lineno, self.reason)

    def as_dict(self):
        return {"path": self.path, "line": self.lineno, "reason": self.reason}


def iter_jsonl(path, required=(), bad=None):
    """Yield (lineno, obj) for each usable JSON object line of `path`.

    Lines that are not UTF-8, not JSON, not an object, or lack a required non-empty string
    field are appended to `bad` (a list of BadLine) and skipped; with bad=None they raise
    KitError naming the file and line. A last line without newline that fails to parse is
    reported as truncated.
    """
    path = Path(path)
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise KitError("%s: cannot read: %s" % (path, exc.strerror or exc)) from None
    with fh:
        lineno = 0
        for raw in fh:
            lineno += 1
            reason = None
            obj = None
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                reason = "not UTF-8 (byte %d)" % exc.start
            else:
                try:
                    obj = json.loads(text)
                except ValueError as exc:
                    reason = ("truncated last line" if not raw.endswith(b"\n") else "not JSON: %s" % exc.msg)
                else:
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
