"""Checkpoint helpers shared by the tools: MindSpore .ckpt read/write, LoRA naming, adapter config.

Two ways to read and write a MindSpore `.ckpt`:

* `ms_load` / `ms_save`: through `mindspore.load_checkpoint` / `mindspore.save_checkpoint`. Simple, but
  MindSpore's loader reads the whole file into memory and parses it in one piece (file bytes + parsed
  message + tensors), so a 16 GB checkpoint costs 2-3 copies of itself.
* `iter_ckpt` / `CkptWriter`: tensor-by-tensor streaming over the very same file format (MindSpore's
  `checkpoint.proto`, proto2: the file is a concatenation of `Checkpoint` messages, each holding one
  `Value{tag, tensor{dims, tensor_type, tensor_content}}`; tensors above 512 MB are split into several
  consecutive values with the same tag; an optional trailing `crc_num` + 10 bytes). Peak memory is one
  tensor. Files written by `CkptWriter` load with `mindspore.load_checkpoint` and are byte-identical to
  what `mindspore.save_checkpoint` writes for the same tensors (tests/test_ckpt.py checks both ways).

Tensors are handled as `NpTensor(array, ttype)`: `ttype` is MindSpore's type string ("Float32",
"BFloat16", ...). numpy has no bfloat16, so BFloat16 tensors keep their raw bits in a uint16 array;
`to_float32` / `from_float32` convert exactly (round to nearest even, like MindSpore's cast).
"""

import collections
import os
import re

import numpy as np

from .io import KitError, atomic_path, file_fingerprint, read_json, write_json

LORA_TAG = "mindpet_delta_lora"
LORA_RE = re.compile(r"^(?P<cell>.+)\.mindpet_delta_lora_(?P<ab>[ab])$")
# what MindFormers' Llama names them (CONTEST.md section 5)
LORA_NAME = "model.layers.{layer}.attention.{proj}.mindpet_delta_lora_{ab}"
ADAPTER_FORMAT = "lorakit-adapter/1"
# Prefixes of optimizer / trainer state a training checkpoint carries next to the network's weights.
STATE_PREFIXES = ("adam_m.", "adam_v.", "moment1.", "moment2.", "moments.", "accu_grads.", "accumulated_grads.",
                  "global_step", "learning_rate", "scale_sense", "loss_scale", "epoch_num", "step_num",
                  "current_iterator_step", "last_overflow_iterator_step")

NpTensor = collections.namedtuple("NpTensor", "array ttype")

_NP_OF = {"Float32": np.float32, "Float16": np.float16, "Float64": np.float64, "BFloat16": np.uint16,
          "Int8": np.int8, "UInt8": np.uint8, "Int16": np.int16, "UInt16": np.uint16, "Int32": np.int32,
          "UInt32": np.uint32, "Int64": np.int64, "UInt64": np.uint64, "Bool": np.bool_}
_TTYPE_OF_NP = {np.dtype(np.float32): "Float32", np.dtype(np.float16): "Float16", np.dtype(np.float64): "Float64",
                np.dtype(np.int8): "Int8", np.dtype(np.uint8): "UInt8", np.dtype(np.int16): "Int16",
                np.dtype(np.uint16): "UInt16", np.dtype(np.int32): "Int32", np.dtype(np.uint32): "UInt32",
                np.dtype(np.int64): "Int64", np.dtype(np.uint64): "UInt64", np.dtype(np.bool_): "Bool"}
SLICE_BYTES = 512 * 1024 * 1024  # MindSpore's SLICE_SIZE (512 * 1024 KB)


def lora_name(layer, proj, ab):
    return LORA_NAME.format(layer=int(layer), proj=proj, ab=ab)


def is_state_tensor(name):
    """True for optimizer/trainer state (adam_m.*, global_step, ...) rather than a network weight."""
    return name.startswith(STATE_PREFIXES) or "." not in name


def is_lora(name):
    return bool(LORA_RE.match(name)) and not is_state_tensor(name)


def base_of(lora_tensor_name):
    """`x.wq.mindpet_delta_lora_a` -> `x.wq.weight` (the frozen weight it adapts)."""
    m = LORA_RE.match(lora_tensor_name)
    if not m:
        raise KitError("%s is not a LoRA tensor name" % lora_tensor_name)
    return m.group("cell") + ".weight"


# ---------------------------------------------------------------- dtypes

def np_ttype(array):
    try:
        return _TTYPE_OF_NP[np.dtype(array.dtype)]
    except KeyError:
        raise KitError("unsupported numpy dtype %s" % array.dtype) from None


def to_float32(t):
    """NpTensor -> float32 ndarray (exact for bf16/fp16/fp32)."""
    if t.ttype == "BFloat16":
        return (t.array.astype(np.uint32) << 16).view(np.float32)
    return t.array.astype(np.float32, copy=False)


def from_float32(arr, ttype):
    """float32 ndarray -> NpTensor of `ttype`, rounding to nearest even for BFloat16 (NaN kept NaN)."""
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if ttype == "BFloat16":
        bits = arr.view(np.uint32)
        tmp = bits >> np.uint32(16)  # one temporary, updated in place: (bits + 0x7FFF + lsb) >> 16
        tmp &= np.uint32(1)
        tmp += np.uint32(0x7FFF)
        tmp += bits
        tmp >>= np.uint32(16)
        rounded = tmp.astype(np.uint16)
        del tmp
        if np.isnan(arr).any():
            rounded[np.isnan(arr)] = 0x7FC0
        return NpTensor(rounded, "BFloat16")
    if ttype not in _NP_OF:
        raise KitError("unsupported tensor type %s" % ttype)
    return NpTensor(arr.astype(_NP_OF[ttype]), ttype)


def as_float64(t):
    return to_float32(t).astype(np.float64) if t.ttype in ("BFloat16", "Float16", "Float32") else \
        t.array.astype(np.float64)


# ---------------------------------------------------------------- streaming reader

# Bounds of a well-formed checkpoint.proto: a varint is at most 10 bytes (64 bits); a tensor has a handful of
# dims, a short type name and a name of reasonable length. A file breaking them is refused before the reader
# spends time or memory on it (a hostile file can claim a 1 MB varint or 10^8 packed dims).
MAX_VARINT_BYTES = 10
MAX_DIMS = 16
MAX_TAG_BYTES = 4096
MAX_TTYPE_BYTES = 32


class CkptFormatError(KitError):
    """The file breaks the checkpoint format's bounds (see MAX_*)."""


def _varint(fh):
    shift = result = 0
    for _ in range(MAX_VARINT_BYTES):
        b = fh.read(1)
        if not b:
            raise EOFError
        byte = b[0]
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result
        shift += 7
    raise CkptFormatError("varint longer than %d bytes at byte %d" % (MAX_VARINT_BYTES, fh.tell()))


def _varint_bytes(buf, pos):
    shift = result = 0
    for _ in range(MAX_VARINT_BYTES):
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
    raise CkptFormatError("varint longer than %d bytes in packed dims" % MAX_VARINT_BYTES)


def _read_bounded(fh, n, limit, what, path):
    if n > limit:
        raise CkptFormatError("%s: %s of %d bytes at byte %d (at most %d)" % (path, what, n, fh.tell(), limit))
    return fh.read(n)


class _Entry:
    __slots__ = ("tag", "dims", "ttype", "offset", "length")


def _read_value(fh, end, path):
    """Parse one Checkpoint.Value from fh up to `end`, leaving tensor_content unread (offset, length)."""
    e = _Entry()
    e.tag, e.dims, e.ttype, e.offset, e.length = None, [], None, None, 0
    while fh.tell() < end:
        key = _varint(fh)
        field, wire = key >> 3, key & 7
        if wire != 2:
            raise KitError("%s: not a MindSpore checkpoint (unexpected field %d/%d at byte %d)"
                           % (path, field, wire, fh.tell()))
        n = _varint(fh)
        if field == 1:
            e.tag = _read_bounded(fh, n, MAX_TAG_BYTES, "tensor name", path).decode("utf-8")
        elif field == 2:
            t_end = fh.tell() + n
            while fh.tell() < t_end:
                tkey = _varint(fh)
                tfield, twire = tkey >> 3, tkey & 7
                if tfield == 1 and twire == 0:
                    e.dims.append(_varint(fh))
                elif tfield == 1 and twire == 2:
                    packed = _read_bounded(fh, _varint(fh), MAX_DIMS * MAX_VARINT_BYTES, "packed dims", path)
                    pos = 0
                    while pos < len(packed):
                        v, pos = _varint_bytes(packed, pos)
                        e.dims.append(v)
                elif tfield == 2 and twire == 2:
                    e.ttype = _read_bounded(fh, _varint(fh), MAX_TTYPE_BYTES, "tensor type", path).decode("utf-8")
                elif tfield == 3 and twire == 2:
                    e.length = _varint(fh)
                    e.offset = fh.tell()
                    fh.seek(e.length, 1)
                else:
                    raise KitError("%s: unexpected tensor field %d at byte %d" % (path, tfield, fh.tell()))
                if len(e.dims) > MAX_DIMS:
                    raise CkptFormatError("%s: tensor %s has more than %d dims" % (path, e.tag, MAX_DIMS))
        elif field == 3:
            raise KitError("%s: map tensors (%s) are not supported" % (path, e.tag))
        else:
            fh.seek(n, 1)
    if e.tag is None or e.ttype is None:
        raise KitError("%s: truncated or malformed checkpoint entry before byte %d" % (path, end))
    if e.dims == [0]:
        e.dims = []
    return e


def _entries(fh, path):
    """Yield lists of consecutive _Entry with the same tag (one tensor, possibly in several slices)."""
    size = os.fstat(fh.fileno()).st_size
    group = []
    while True:
        pos = fh.tell()
        if pos >= size:
            break
        if size - pos == 17:
            tail = fh.read(17)
            if tail.startswith(b"crc_num"):
                break
            fh.seek(pos)
        try:
            key = _varint(fh)
            if key != 0x0A:
                raise KitError("%s: not a MindSpore checkpoint (byte %d)" % (path, pos))
            n = _varint(fh)
        except EOFError:
            raise KitError("%s: truncated at byte %d" % (path, pos)) from None
        end = fh.tell() + n
        if end > size:
            raise KitError("%s: truncated (entry at byte %d needs %d bytes, file has %d)" % (path, pos, n, size))
        entry = _read_value(fh, end, path)
        fh.seek(end)
        if group and group[0].tag != entry.tag:
            yield group
            group = []
        group.append(entry)
    if group:
        yield group


class CkptEntry:
    """One tensor of a checkpoint as seen by iter_ckpt: name, shape, ttype, and `load()` for its data."""

    __slots__ = ("name", "shape", "ttype", "nbytes", "_fh", "_parts", "_path")

    def __init__(self, path, fh, group):
        self.name, self.ttype, self._fh, self._path = group[0].tag, group[0].ttype, fh, path
        self.shape = tuple(int(d) for d in group[0].dims)
        self._parts = [(e.offset, e.length) for e in group]
        self.nbytes = sum(length for _, length in self._parts)

    @property
    def numel(self):
        n = 1
        for d in self.shape:
            n *= d
        return n

    def load(self):
        """Read this tensor's bytes now -> NpTensor (only this tensor is in memory)."""
        if self.ttype not in _NP_OF:
            raise KitError("%s: tensor %s has unsupported type %s" % (self._path, self.name, self.ttype))
        buf = np.empty(self.nbytes, np.uint8)  # not zero-filled, unlike bytearray
        view = memoryview(buf)
        pos = 0
        resume = self._fh.tell()  # iter_ckpt reads on from here
        try:
            for offset, length in self._parts:
                if offset is None:
                    continue
                self._fh.seek(offset)
                got = self._fh.readinto(view[pos:pos + length])
                if got != length:
                    raise KitError("%s: truncated inside tensor %s" % (self._path, self.name))
                pos += length
        finally:
            self._fh.seek(resume)
        dtype = np.dtype(_NP_OF[self.ttype])
        if self.nbytes != self.numel * dtype.itemsize:
            raise KitError("%s: tensor %s has %d bytes, shape %s of %s needs %d"
                           % (self._path, self.name, self.nbytes, list(self.shape), self.ttype,
                              self.numel * dtype.itemsize))
        return NpTensor(buf.view(dtype).reshape(self.shape), self.ttype)


    def float_chunks(self, chunk_bytes=16 << 20):
        """This tensor's values as float64 arrays of at most chunk_bytes of file data each (bf16/fp16/fp32/fp64),
        read straight from the file: memory stays at one chunk whatever the tensor's size."""
        if self.ttype not in ("Float32", "Float16", "BFloat16", "Float64"):
            raise KitError("%s: tensor %s has type %s, not floating point" % (self._path, self.name, self.ttype))
        dtype = np.dtype(_NP_OF[self.ttype])
        if self.nbytes != self.numel * dtype.itemsize:
            raise KitError("%s: tensor %s has %d bytes, shape %s of %s needs %d"
                           % (self._path, self.name, self.nbytes, list(self.shape), self.ttype,
                              self.numel * dtype.itemsize))
        step = max(dtype.itemsize, chunk_bytes // dtype.itemsize * dtype.itemsize)
        resume = self._fh.tell()
        try:
            for offset, length in self._parts:
                if offset is None or not length:
                    continue
                if length % dtype.itemsize:
                    raise KitError("%s: tensor %s has a slice of %d bytes, not whole %s values"
                                   % (self._path, self.name, length, self.ttype))
                for start in range(0, length, step):
                    self._fh.seek(offset + start)
                    raw = self._fh.read(min(step, length - start))
                    if len(raw) != min(step, length - start):
                        raise KitError("%s: truncated inside tensor %s" % (self._path, self.name))
                    arr = np.frombuffer(raw, dtype)
                    yield as_float64(NpTensor(arr, self.ttype))
        finally:
            self._fh.seek(resume)


def iter_ckpt(path):
    """Yield a CkptEntry per tensor of a MindSpore .ckpt, in file order, reading no tensor data itself."""
    path = str(path)
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise KitError("%s: cannot read: %s" % (path, exc.strerror or exc)) from None
    with fh:
        for group in _entries(fh, path):
            yield CkptEntry(path, fh, group)


def ckpt_index(path):
    """OrderedDict name -> (shape, ttype) without reading tensor data (fast even for 16 GB)."""
    out = collections.OrderedDict()
    for e in iter_ckpt(path):
        out[e.name] = (e.shape, e.ttype)
    return out


def read_ckpt(path, names=None):
    """OrderedDict name -> NpTensor (all tensors, or only `names`), via the streaming reader."""
    want = set(names) if names is not None else None
    out = collections.OrderedDict()
    for e in iter_ckpt(path):
        if want is None or e.name in want:
            out[e.name] = e.load()
    return out


# ---------------------------------------------------------------- streaming writer

def _enc_varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


class CkptWriter:
    """Write tensors one at a time into a .ckpt that mindspore.load_checkpoint reads.

    Use as a context manager; the file appears (atomically) only when the block succeeds.
    """

    def __init__(self, path):
        self.path = str(path)
        self._ctx = None
        self._fh = None
        self.names = []

    def __enter__(self):
        self._ctx = atomic_path(self.path)
        tmp = self._ctx.__enter__()
        self._fh = open(tmp, "wb")
        return self

    def __exit__(self, exc_type, exc, tb):
        self._fh.close()
        return self._ctx.__exit__(exc_type, exc, tb)

    def write(self, name, tensor):
        """Append `tensor` (NpTensor or numpy array) under `name`."""
        if name in self.names:
            raise KitError("%s: tensor %s written twice" % (self.path, name))
        if not isinstance(tensor, NpTensor):
            tensor = NpTensor(np.asarray(tensor), np_ttype(np.asarray(tensor)))
        arr = np.ascontiguousarray(tensor.array)
        # np.ascontiguousarray makes a scalar shape (1,): MindSpore stores scalars as dims [1] too
        dims = b"".join(b"\x08" + _enc_varint(int(d)) for d in arr.shape)
        ttype = tensor.ttype.encode()
        data = memoryview(arr.reshape(-1).view(np.uint8)) if arr.size else memoryview(b"")
        tag = name.encode("utf-8")
        # slice like MindSpore's _write_parameter_bytes_data: consecutive 512 MB byte chunks, same tag
        starts = range(0, max(len(data), 1), SLICE_BYTES)
        for start in starts:
            chunk = data[start:start + SLICE_BYTES]
            tensor_msg_head = dims + b"\x12" + _enc_varint(len(ttype)) + ttype + b"\x1a" + _enc_varint(len(chunk))
            tensor_len = len(tensor_msg_head) + len(chunk)
            value_head = b"\x0a" + _enc_varint(len(tag)) + tag + b"\x12" + _enc_varint(tensor_len)
            value_len = len(value_head) + tensor_len
            self._fh.write(b"\x0a" + _enc_varint(value_len) + value_head + tensor_msg_head)
            self._fh.write(chunk)
        self.names.append(name)


def write_ckpt(path, tensors):
    """Write an OrderedDict name -> NpTensor/ndarray as a .ckpt (streaming writer)."""
    with CkptWriter(path) as w:
        for name, t in tensors.items():
            w.write(name, t)


# ---------------------------------------------------------------- MindSpore's own API

def ms_tensor(t):
    """NpTensor -> mindspore.Tensor of the same type (exact)."""
    import mindspore as ms

    if t.ttype == "BFloat16":
        return ms.Tensor(to_float32(t), ms.bfloat16)
    return ms.Tensor(np.ascontiguousarray(t.array))


def from_ms(value):
    """mindspore Tensor/Parameter -> NpTensor (exact, bf16 kept as bits)."""
    import mindspore as ms

    if value.dtype == ms.bfloat16:
        return from_float32(value.float().asnumpy(), "BFloat16")
    arr = value.asnumpy()
    return NpTensor(arr, np_ttype(arr))


def ms_load(path):
    """mindspore.load_checkpoint -> OrderedDict name -> NpTensor."""
    import mindspore as ms

    try:
        params = ms.load_checkpoint(str(path))
    except (ValueError, RuntimeError) as exc:
        raise KitError("%s: mindspore cannot load it: %s" % (path, str(exc).splitlines()[0])) from None
    return collections.OrderedDict((k, from_ms(v)) for k, v in params.items() if not isinstance(v, str))


def ms_save(path, tensors):
    """mindspore.save_checkpoint of an OrderedDict name -> NpTensor, written atomically."""
    import mindspore as ms

    params = collections.OrderedDict((k, ms.Parameter(ms_tensor(t), name=k)) for k, t in tensors.items())
    with atomic_path(path) as tmp:
        target = str(tmp) + ".ckpt"
        ms.save_checkpoint(params, target)
        os.replace(target, str(tmp))


# ---------------------------------------------------------------- adapter files

ADAPTER_CKPT = "adapter.ckpt"
ADAPTER_CONFIG = "adapter_config.json"
REQUIRED_KEYS = ("format", "pet_type", "lora_rank", "lora_alpha", "scaling", "target_modules", "tensors")


def read_adapter_config(path):
    """Load and check adapter_config.json; returns the dict. Scaling must be alpha / rank exactly."""
    cfg = read_json(path)
    if not isinstance(cfg, dict):
        raise KitError("%s: not a JSON object" % path)
    for key in REQUIRED_KEYS:
        if key not in cfg:
            raise KitError("%s: missing field %r" % (path, key))
    if cfg["format"] != ADAPTER_FORMAT:
        raise KitError("%s: format %r, expected %r" % (path, cfg["format"], ADAPTER_FORMAT))
    if cfg["pet_type"] != "lora":
        raise KitError("%s: pet_type %r is not lora" % (path, cfg["pet_type"]))
    try:
        rank, alpha, scaling = int(cfg["lora_rank"]), float(cfg["lora_alpha"]), float(cfg["scaling"])
    except (TypeError, ValueError):
        raise KitError("%s: lora_rank / lora_alpha / scaling must be numbers" % path) from None
    if rank <= 0:
        raise KitError("%s: field 'lora_rank' must be positive" % path)
    if abs(scaling - alpha / rank) > 1e-12 * max(1.0, abs(scaling)):
        raise KitError("%s: field 'scaling' %r != lora_alpha / lora_rank = %r" % (path, scaling, alpha / rank))
    if not isinstance(cfg["tensors"], list) or not all(isinstance(t, dict) and "name" in t and "shape" in t
                                                       for t in cfg["tensors"]):
        raise KitError("%s: field 'tensors' must be a list of {name, shape, dtype}" % path)
    return cfg


def write_adapter_config(path, cfg):
    write_json(path, cfg)


def fingerprint(path):
    """file_fingerprint plus the path, for recording which base/source a file came from."""
    fp = collections.OrderedDict([("path", os.path.abspath(str(path)))])
    fp.update(file_fingerprint(path))
    return fp


def human_bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return ("%d %s" % (n, unit)) if unit == "B" else ("%.1f %s" % (n, unit))
        n /= 1024.0
    return str(n)


def write_synthetic(path, table, seed=0, scale=0.02, lora_b_zero=False):
    """Write a random checkpoint with the names/shapes/dtypes of `table` (name -> (shape, dtype str)),
    one tensor at a time (so an 8B-shaped file never sits in memory). Norm weights are ~1, others ~N(0, scale)."""
    rng = np.random.default_rng(seed)
    ttypes = {"float32": "Float32", "float16": "Float16", "bfloat16": "BFloat16"}
    with CkptWriter(path) as w:
        for name, (shape, dtype) in table.items():
            ttype = ttypes.get(str(dtype).lower(), dtype)
            if name.endswith("mindpet_delta_lora_b") and lora_b_zero:
                arr = np.zeros(shape, np.float32)
            else:
                arr = rng.standard_normal(shape, dtype=np.float32)
                arr *= np.float32(scale)
                if name.endswith("norm.weight") or name.endswith("norm_out.weight"):
                    arr += np.float32(1.0)
            w.write(name, from_float32(arr, ttype))
            del arr
