"""MindRecord files of training rows (input_ids, labels: int32, seq_length+1), as the stock script writes.

`MindRecordRows(path, seq_length)` is a context manager: rows go into a fresh temp directory beside
`path` under the final file name (a MindRecord's .db index records the data file's name, so the file
cannot be renamed, only moved) and both files are moved into place when the block succeeds; on error
the temp directory is removed and an existing `path` is untouched.

Rows are written in batches. The schema, header, commit and index are MindSpore's FileWriter; the
fast path hands pre-serialised row blobs (the bytes FileWriter's own `_merge_blob` makes: per blob
field an 8-byte big-endian length, then the int32 bytes) to the FileWriter's ShardWriter, skipping
~70 us/row of per-row Python checks. It is used only when those internals are present and is
checked against the public path in tests/test_convert.py; `fast=False` uses `write_raw_data`.
"""

import os
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from .io import KitError

COLUMNS = ("input_ids", "labels")
SCHEMA_NAME = "qa"  # what llama_preprocess.py --dataset_type qa passes to add_schema


def _schema():
    return {c: {"type": "int32", "shape": [-1]} for c in COLUMNS}


class MindRecordRows:
    """Write (input_ids, labels) rows to one MindRecord file atomically."""

    def __init__(self, path, seq_length, fast=True):
        self.path = Path(path)
        self.width = int(seq_length) + 1
        self.fast = fast
        self.rows = 0
        self._tmpdir = None
        self._writer = None
        self._raw = None

    def __enter__(self):
        from mindspore.mindrecord import FileWriter

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmpdir = Path(tempfile.mkdtemp(prefix="." + self.path.name + ".", suffix=".tmp",
                                             dir=str(self.path.parent)))
        self._writer = FileWriter(str(self._tmpdir / self.path.name), shard_num=1, overwrite=True)
        self._writer.add_schema(_schema(), SCHEMA_NAME)
        if self.fast:
            self._raw = self._open_fast()
        return self

    def _open_fast(self):
        """The FileWriter's ShardWriter, opened with the header, or None when the internals differ."""
        w = self._writer
        shard = getattr(w, "_writer", None)
        if shard is None or not hasattr(shard, "_writer") or not hasattr(shard, "_header"):
            return None
        if not all(hasattr(w, a) for a in ("_paths", "_overwrite", "_header")):
            return None
        if not shard.is_open:
            shard.open(w._paths, w._overwrite)
        if not shard.get_shard_header():
            shard.set_shard_header(w._header)
        fields = list(shard._header.blob_fields)
        if sorted(fields) != sorted(COLUMNS):
            return None
        self._fields = fields
        return shard

    def write(self, input_ids, labels):
        """Append a batch: two (n, seq_length+1) arrays (any integer dtype, stored as int32)."""
        ids = np.ascontiguousarray(input_ids, dtype=np.int32)
        lab = np.ascontiguousarray(labels, dtype=np.int32)
        if ids.ndim != 2 or ids.shape != lab.shape or ids.shape[1] != self.width:
            raise KitError("MindRecord batch shape %s / %s, expected (n, %d)" % (ids.shape, lab.shape, self.width))
        n = ids.shape[0]
        if n == 0:
            return
        if self._raw is not None:
            cols = {"input_ids": ids, "labels": lab}
            nbytes = 4 * self.width
            rec = np.empty((n, len(self._fields) * (8 + nbytes)), np.uint8)
            prefix = np.frombuffer(nbytes.to_bytes(8, "big"), np.uint8)
            off = 0
            for f in self._fields:
                rec[:, off:off + 8] = prefix
                rec[:, off + 8:off + 8 + nbytes] = cols[f].view(np.uint8).reshape(n, nbytes)
                off += 8 + nbytes
            blobs = [r.tobytes() for r in rec]
            # validate=False: the blobs are built above exactly as FileWriter would (checked by a test)
            self._raw._writer.write_raw_data({}, blobs, False, False)
        else:
            self._writer.write_raw_data([{"input_ids": ids[i], "labels": lab[i]} for i in range(n)])
        self.rows += n

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                if self.rows == 0:
                    raise KitError("%s: no rows to write (an empty MindRecord cannot be trained on)" % self.path)
                self._writer.commit()
                src = self._tmpdir / self.path.name
                os.replace(str(src) + ".db", str(self.path) + ".db")
                os.replace(str(src), str(self.path))
        finally:
            shutil.rmtree(str(self._tmpdir), ignore_errors=True)
        return False


_FRAME = struct.Struct("<4sqi")  # command, rows, width


class MindRecordRowsProcess:
    """MindRecordRows in a child process: the same interface, but MindSpore's writer (which holds the GIL
    while it writes) runs on the other core while this process tokenises. Rows travel as raw int32
    bytes over the child's stdin, sent by a thread from a bounded queue, so this process keeps working
    while the child still imports MindSpore. The child commits and moves the files into place only on
    DONE, and removes its temp directory on EOF without DONE (this process failed): nothing is
    half-written.
    """

    QUEUE_BATCHES = 4  # at most this many batches wait in memory for the child

    def __init__(self, path, seq_length, fast=True):
        self.path = Path(path)
        self.width = int(seq_length) + 1
        self.fast = fast
        self.rows = 0
        self._proc = None
        self._queue = None
        self._thread = None
        self._error = None

    def __enter__(self):
        import queue
        import threading

        code = "import sys; sys.path.insert(0, %r); from lorakit.mindrecord_io import _serve; _serve()" % (
            str(Path(__file__).resolve().parents[1]))
        env = dict(os.environ)
        env.setdefault("GLOG_v", "3")
        self._proc = subprocess.Popen([sys.executable, "-c", code, str(self.path), str(self.width - 1),
                                       "1" if self.fast else "0"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, env=env)
        self._queue = queue.Queue(self.QUEUE_BATCHES)
        self._thread = threading.Thread(target=self._sender, name="mindrecord-sender", daemon=True)
        self._thread.start()
        return self

    def _sender(self):
        stdin = self._proc.stdin
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is not None:
                continue  # drain, so that write() never blocks on a dead child
            try:
                for part in item:
                    stdin.write(part)
                stdin.flush()
            except (BrokenPipeError, OSError, ValueError) as exc:
                self._error = exc

    def _check(self):
        if self._error is not None:
            self._proc.wait()
            raise KitError("%s: the MindRecord writer process died (exit %s)" % (self.path, self._proc.returncode))

    def write(self, input_ids, labels):
        """Queue a batch (copied: the caller may reuse its arrays)."""
        ids = np.array(input_ids, dtype=np.int32, order="C", copy=True)
        lab = np.array(labels, dtype=np.int32, order="C", copy=True)
        if ids.ndim != 2 or ids.shape != lab.shape or ids.shape[1] != self.width:
            raise KitError("MindRecord batch shape %s / %s, expected (n, %d)" % (ids.shape, lab.shape, self.width))
        if ids.shape[0] == 0:
            return
        self._check()
        self._queue.put((_FRAME.pack(b"ROWS", ids.shape[0], self.width), memoryview(ids).cast("B"),
                         memoryview(lab).cast("B")))
        self.rows += ids.shape[0]

    def __exit__(self, exc_type, exc, tb):
        proc = self._proc
        failure = None
        try:
            if exc_type is None and self.rows == 0:
                failure = KitError("%s: no rows to write (an empty MindRecord cannot be trained on)" % self.path)
            if exc_type is None and failure is None:
                self._queue.put((_FRAME.pack(b"DONE", self.rows, self.width),))
            self._queue.put(None)
            self._thread.join()
        finally:
            try:
                proc.stdin.close()  # EOF without DONE = abort: the child removes its temp files
            except (BrokenPipeError, OSError):
                pass
            out = proc.stdout.read().decode("utf-8", "replace")
            proc.stdout.close()
            rc = proc.wait()
        if failure is not None:
            raise failure
        if exc_type is None and (self._error is not None or rc != 0 or out.split()[:2] != ["ok", str(self.rows)]):
            raise KitError("%s: the MindRecord writer process failed (exit %d): %s" % (self.path, rc, out.strip()))
        return False


def _read_exact(fh, n):
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = fh.readinto(view[got:])
        if not k:
            return None
        got += k
    return buf


def _serve():
    """Child side of MindRecordRowsProcess: argv = path seq_length fast."""
    path, seq_length, fast = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
    fh = sys.stdin.buffer
    w = MindRecordRows(path, seq_length, fast=fast)
    w.__enter__()
    try:
        while True:
            head = _read_exact(fh, _FRAME.size)
            if head is None:  # the parent aborted (its error is reported there): clean up quietly
                w.__exit__(EOFError, None, None)
                sys.exit(3)
            cmd, n, width = _FRAME.unpack(bytes(head))
            if width != w.width:
                raise ValueError("row width %d, expected %d" % (width, w.width))
            if cmd == b"DONE":
                if n != w.rows:
                    raise ValueError("parent sent %d rows, %d received" % (n, w.rows))
                break
            data = _read_exact(fh, 2 * n * width * 4)
            if data is None:
                raise EOFError("input ended inside a batch")
            arr = np.frombuffer(data, np.int32).reshape(2, n, width)
            w.write(arr[0], arr[1])
    except SystemExit:
        raise
    except BaseException as exc:
        w.__exit__(type(exc), exc, None)
        print("mindrecord writer: %s" % exc, file=sys.stderr)
        sys.exit(3)
    w.__exit__(None, None, None)
    sys.stdout.write("ok %d\n" % w.rows)
    sys.stdout.flush()


def write_rows(path, input_ids, labels, seq_length, fast=True, batch=4096):
    """Write all rows of two (n, seq_length+1) arrays; returns the row count."""
    with MindRecordRows(path, seq_length, fast=fast) as w:
        for i in range(0, len(input_ids), batch):
            w.write(input_ids[i:i + batch], labels[i:i + batch])
    return w.rows


def iter_rows(path, columns=COLUMNS):
    """Yield (input_ids, labels) arrays of a MindRecord file in file order."""
    from mindspore.mindrecord import FileReader

    if not Path(path).is_file() or not Path(str(path) + ".db").is_file():
        raise KitError("%s: MindRecord file or its .db index is missing" % path)
    reader = FileReader(str(path), columns=list(columns))
    try:
        for row in reader.get_next():
            yield tuple(row[c] for c in columns)
    finally:
        reader.close()


def read_rows(path):
    """All rows of a MindRecord file as a list of (input_ids, labels) int32 arrays."""
    return list(iter_rows(path))
