#!/usr/bin/env python3
"""Checkpoint jobs after training: merge rank shards, extract the LoRA adapter, fold it, inspect a file.

  merge-shards  rank_*/ checkpoints (+ strategy files) -> one complete checkpoint (mindspore.transform_checkpoints)
  extract-lora  full LoRA checkpoint -> adapter.ckpt (LoRA tensors only) + adapter_config.json
  fold-lora     base checkpoint + adapter -> folded checkpoint, W + (alpha/r) * B @ A in float32
  inspect       tensors, dtypes, shapes, norms; flags all-zero / empty / non-finite LoRA tensors

File formats and the reasons behind each check: docs/checkpoints.md.
"""

import argparse
import collections
import glob
import json
import os
import re
import shutil
import sys
import tempfile
import time

import numpy as np

from lorakit import params
from lorakit.ckpt_io import (
    ADAPTER_CKPT,
    ADAPTER_CONFIG,
    ADAPTER_FORMAT,
    CkptWriter,
    ckpt_index,
    fingerprint,
    from_float32,
    human_bytes,
    is_lora,
    is_state_tensor,
    iter_ckpt,
    read_adapter_config,
    read_ckpt,
    to_float32,
    write_adapter_config,
)
from lorakit.config import load_config
from lorakit.io import KitError, run_main, write_json
from lorakit.layout import rank_folder
from lorakit.records import LoraSpec
from lorakit.runrecord import CKPT_RE, STOCK_CKPT_RE

PROG = "ckpt"
STEP_RE = re.compile(r"-(?P<epoch>\d+)_(?P<step>\d+)\.ckpt$")


def _progress(total, desc, unit="B"):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, file=sys.stderr, leave=False,
                disable=not sys.stderr.isatty() and not os.environ.get("KIT_PROGRESS"))


def _need_file(path, what):
    if not os.path.isfile(path):
        raise KitError("%s %s: no such file" % (what, path))
    return path


def _warn(msg):
    print("%s: warning: %s" % (PROG, msg), file=sys.stderr)


# ============================================================== merge-shards

def checkpoint_step(path, by_name=False):
    """(step key, how) of a training checkpoint: its `step_num`/`global_step` tensor; else the kit's file name
    `<prefix>_rank_<r>-step<S>-epoch<E>.ckpt` (global step S); else MindFormers' `<prefix>_rank_<r>-<E>_<S>.ckpt`
    as the number pair (E, S) - numbers, never compared as strings."""
    if not by_name:
        for e in iter_ckpt(path):
            if e.name in ("step_num", "global_step") and e.numel == 1:
                return (int(e.load().array.reshape(-1)[0]),), e.name
    name = os.path.basename(path)
    m = CKPT_RE.match(name)
    if m:
        return (int(m.group("step")),), "file name step"
    m = STOCK_CKPT_RE.match(name) or STEP_RE.search(name)
    if m:
        return (int(m.group("epoch")), int(m.group("step"))), "file name epoch_step"
    raise KitError("%s: cannot tell its training step (no step_num/global_step tensor, name neither "
                   "*-step<S>-epoch<E>.ckpt nor *-<E>_<S>.ckpt)" % path)


def find_rank_dirs(src):
    """rank_N directories under src (or src/checkpoint) -> {N: dir}."""
    for base in (src, os.path.join(src, "checkpoint")):
        found = {}
        for d in glob.glob(os.path.join(base, "rank_*")):
            tail = os.path.basename(d)[len("rank_"):]
            if os.path.isdir(d) and tail.isdigit():
                found[int(tail)] = d
        if found:
            ranks = sorted(found)
            if ranks != list(range(len(ranks))):
                raise KitError("%s: rank folders %s are not rank_0..rank_%d" % (base, ranks, len(ranks) - 1))
            return found
    raise KitError("%s: no rank_N/ folders (looked in it and in its checkpoint/)" % src)


def choose_checkpoints(rank_dirs, step=None):
    """One checkpoint per rank: the newest by training step (or exactly `step`), the same step on every rank."""
    chosen = {}
    for rank, d in sorted(rank_dirs.items()):
        files = sorted(glob.glob(os.path.join(d, "*.ckpt")))
        if not files:
            raise KitError("%s: no .ckpt files" % d)
        stepped = [(s, f, how) for f in files for s, how in [checkpoint_step(f)]]
        if len({how for _, _, how in stepped}) > 1:  # some files lack the step tensor: use names for all
            stepped = [(s, f, how) for f in files for s, how in [checkpoint_step(f, by_name=True)]]
        keys = [s for s, _, _ in stepped]
        if step is not None:
            picks = [x for x in stepped if x[0][-1] == step or x[0] == (step,)]
            if not picks:
                raise KitError("%s: no checkpoint of step %d (has %s)" % (d, step, [k[-1] for k in keys]))
            if len(picks) > 1:
                raise KitError("%s: several checkpoints of step %d: %s" % (d, step, [p[1] for p in picks]))
            pick = picks[0]
        else:
            best = max(keys)
            picks = [x for x in stepped if x[0] == best]
            if len(picks) > 1:
                raise KitError("%s: %d checkpoints share the newest step %s: %s"
                               % (d, len(picks), best, ", ".join(os.path.basename(p[1]) for p in picks)))
            pick = picks[0]
        chosen[rank] = pick
    steps = {r: p[0] for r, p in chosen.items()}
    if len(set(steps.values())) != 1:
        raise KitError("ranks disagree on the newest step: %s; pass --step" %
                       ", ".join("rank_%d=%s" % (r, s) for r, s in sorted(steps.items())))
    return {r: p[1] for r, p in chosen.items()}, chosen[0][0], chosen[0][2]


def find_strategy(path):
    """A strategy file, or a folder of per-rank strategy files (identical ones collapse to one; different
    ones, i.e. pipeline stages, are merged with mindspore.merge_pipeline_strategys). None when absent."""
    if not path:
        return None, None
    if os.path.isfile(path):
        return path, None
    if not os.path.isdir(path):
        raise KitError("strategy %s does not exist" % path)
    files = sorted(glob.glob(os.path.join(path, "*.ckpt")) + glob.glob(os.path.join(path, "*.json")))
    if not files:
        return None, None
    contents = {open(f, "rb").read() for f in files}
    if len(contents) == 1:
        return files[0], None
    import mindspore as ms

    tmpdir = tempfile.mkdtemp(prefix="kit-strategy-")
    merged = os.path.join(tmpdir, "merged_strategy" + os.path.splitext(files[0])[1])
    ms.merge_pipeline_strategys(path, merged)
    return merged, tmpdir


def strategy_params(strategy_file):
    """Parameter names a strategy file has layouts for (pipeline `stage-` prefixes removed)."""
    import mindspore as ms

    try:
        layouts = ms.build_searched_strategy(strategy_file)
    except Exception as exc:  # MindSpore raises ValueError/TypeError/RuntimeError for bad files
        raise KitError("%s: not a MindSpore strategy file: %s" % (strategy_file, str(exc).splitlines()[0])) from None
    return {n.split("-", 1)[1] if re.match(r"^\d+-", n) else n for n in layouts}


def check_strategy_covers(strategy_file, ckpt_file):
    """Refuse a strategy that lacks network parameters the checkpoints hold (only_trainable_params: True)."""
    have = strategy_params(strategy_file)
    names = [n for n in ckpt_index(ckpt_file) if not is_state_tensor(n)]
    missing = [n for n in names if n not in have]
    if missing:
        frozen = [n for n in missing if not is_lora(n)]
        raise KitError("strategy %s has no layout for %d of the %d network parameters in %s (e.g. %s)%s; the "
                       "merge would drop or garble them. Re-save the strategy with "
                       "parallel.strategy_ckpt_config.only_trainable_params: False"
                       % (strategy_file, len(missing), len(names), os.path.basename(ckpt_file),
                          ", ".join(missing[:3]),
                          " - frozen weights missing: it was saved for trainable parameters only" if frozen else ""))


def copy_network(src, dst, keep_state=False):
    """Stream src's tensors into dst (dropping optimizer/trainer state unless keep_state)."""
    n = 0
    with CkptWriter(dst) as w:
        for e in iter_ckpt(src):
            if is_state_tensor(e.name) and not keep_state:
                continue
            w.write(e.name, e.load())
            n += 1
    return n


def ranks_identical(files):
    """Data-parallel check: every rank's network tensors equal rank 0's, bit for bit (one tensor at a time)."""
    ref_names = [n for n in ckpt_index(files[0]) if not is_state_tensor(n)]
    for f in files[1:]:
        names = [n for n in ckpt_index(f) if not is_state_tensor(n)]
        if names != ref_names:
            return "%s holds different tensors than %s" % (f, files[0])
        ref_it = (e for e in iter_ckpt(files[0]) if not is_state_tensor(e.name))
        other_it = (e for e in iter_ckpt(f) if not is_state_tensor(e.name))
        for ea, eb in zip(ref_it, other_it):
            a, b = ea.load(), eb.load()
            if a.ttype != b.ttype or a.array.shape != b.array.shape or not np.array_equal(a.array, b.array):
                return "%s differs from %s in %s" % (f, files[0], ea.name)
    return None


def cmd_merge(args):
    if not os.path.isdir(args.src):
        raise KitError("--src %s: no such folder" % args.src)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    rank_dirs = find_rank_dirs(args.src)
    files, step, how = choose_checkpoints(rank_dirs, args.step)
    strategy_arg = args.strategy
    if strategy_arg is None:
        for cand in (os.path.join(args.src, "strategy"), os.path.join(os.path.dirname(args.src.rstrip("/")),
                                                                       "strategy")):
            if os.path.isdir(cand):
                strategy_arg = cand
                break
    strategy, strategy_tmp = find_strategy(strategy_arg)
    record = collections.OrderedDict([("ranks", len(files)), ("step", list(step)), ("step_from", how),
                                      ("inputs", [files[r] for r in sorted(files)]), ("strategy", strategy)])
    t0 = time.time()
    try:
        if strategy is None:
            if len(files) > 1:
                diff = ranks_identical([files[r] for r in sorted(files)])
                if diff:
                    raise KitError("no strategy file and the ranks differ (%s): a model-parallel run needs its "
                                   "strategy files (--strategy)" % diff)
                record["mode"] = "data parallel: ranks identical, rank_0 copied"
            else:
                record["mode"] = "single rank copied"
            copy_network(files[0], args.out, keep_state=args.keep_state)
        else:
            check_strategy_covers(strategy, files[0])
            import mindspore as ms

            work = tempfile.mkdtemp(prefix="kit-merge-", dir=os.path.dirname(os.path.abspath(args.out)) or ".")
            try:
                stage = os.path.join(work, "src")
                for rank, f in files.items():
                    os.makedirs(os.path.join(stage, rank_folder(rank)))
                    os.symlink(os.path.abspath(f), os.path.join(stage, rank_folder(rank), os.path.basename(f)))
                dst = os.path.join(work, "dst")
                ms.transform_checkpoints(stage, dst, "merged", strategy, None)
                merged = os.path.join(dst, rank_folder(0), "merged0.ckpt")
                if not os.path.isfile(merged):
                    raise KitError("mindspore.transform_checkpoints wrote no %s" % merged)
                if args.keep_state or not any(is_state_tensor(n) for n in ckpt_index(merged)):
                    os.replace(merged, args.out)  # same filesystem (work is beside --out): no second copy
                else:
                    copy_network(merged, args.out, keep_state=False)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            record["mode"] = "model parallel: mindspore.transform_checkpoints"
    finally:
        if strategy_tmp:
            shutil.rmtree(strategy_tmp, ignore_errors=True)
    idx = ckpt_index(args.out)
    record["output"] = os.path.abspath(args.out)
    record["tensors"] = len(idx)
    record["lora_tensors"] = sum(1 for n in idx if is_lora(n))
    record["params"] = sum(params.numel(s) for s, _ in idx.values())
    record["seconds"] = round(time.time() - t0, 2)
    write_json(os.path.splitext(args.out)[0] + ".merge.json", record)
    return record


# ============================================================== extract-lora

def lora_pairs(index, where):
    """{cell: (a_name, b_name)} from an index; refuses a lone A or B."""
    cells = collections.OrderedDict()
    for name in index:
        if is_lora(name):
            cell, ab = name.rsplit(".mindpet_delta_lora_", 1)
            cells.setdefault(cell, {})[ab] = name
    for cell, d in cells.items():
        if "a" not in d or "b" not in d:
            raise KitError("%s: %s has lora_%s without lora_%s" % (where, cell, "a" if "a" in d else "b",
                                                                  "b" if "a" in d else "a"))
    return collections.OrderedDict((c, (d["a"], d["b"])) for c, d in cells.items())


def check_pair_shapes(cell, a_shape, b_shape, where, rank=None, weight_shape=None):
    if len(a_shape) != 2 or len(b_shape) != 2 or a_shape[0] != b_shape[1]:
        raise KitError("%s: %s: lora_a %s and lora_b %s do not chain (want (r, in) and (out, r))"
                       % (where, cell, list(a_shape), list(b_shape)))
    if rank is not None and a_shape[0] != rank:
        raise KitError("%s: %s: rank %d, the config says %d" % (where, cell, a_shape[0], rank))
    if weight_shape is not None and tuple(weight_shape) != (b_shape[0], a_shape[1]):
        raise KitError("%s: %s.weight is %s but B @ A is %s" % (where, cell, list(weight_shape),
                                                                 [b_shape[0], a_shape[1]]))


def cmd_extract(args):
    cfg = load_config(args.config, [params.expand_override(o) for o in args.overrides])
    mc = cfg["model"]["model_config"]
    pet = mc.get("pet_config")
    if not pet or str(pet.get("pet_type", "")).lower() != "lora":
        raise KitError("%s: config has no LoRA pet_config" % args.config)
    rank, alpha = int(pet["lora_rank"]), pet.get("lora_alpha")
    if alpha is None:
        raise KitError("%s: pet_config.lora_alpha is not set (the scaling alpha/r needs it)" % args.config)
    index = ckpt_index(_need_file(args.checkpoint, "--checkpoint"))
    pairs = lora_pairs(index, args.checkpoint)
    if not pairs:
        raise KitError("%s: no LoRA tensors (*.mindpet_delta_lora_a/_b)" % args.checkpoint)
    expected = params.lora_param_table(mc, pet)
    got = collections.OrderedDict((n, index[n][0]) for pair in pairs.values() for n in pair)
    missing = [n for n in expected if n not in got]
    extra = [n for n in got if n not in expected]
    if missing or extra:
        parts = (["%d missing, e.g. %s" % (len(missing), missing[0])] if missing else []) + \
            (["%d unexpected, e.g. %s" % (len(extra), extra[0])] if extra else [])
        raise KitError("%s does not match the config's LoRA (rank %d, target_modules %r): LoRA tensors %s"
                       % (args.checkpoint, rank, pet.get("target_modules"), "; ".join(parts)))
    for cell, (a, b) in pairs.items():
        wname = cell + ".weight"
        check_pair_shapes(cell, index[a][0], index[b][0], args.checkpoint, rank,
                          index[wname][0] if wname in index else None)
        for n in (a, b):
            if tuple(index[n][0]) != tuple(expected[n][0]):
                raise KitError("%s: %s has shape %s, the config implies %s"
                               % (args.checkpoint, n, list(index[n][0]), list(expected[n][0])))
    out_dir = args.out_dir
    os.makedirs(out_dir, exist_ok=True)
    tensors, warnings = [], []
    want = set(got)
    bar = _progress(len(want), "extract", unit="tensor")
    with CkptWriter(os.path.join(out_dir, ADAPTER_CKPT)) as w:
        for e in iter_ckpt(args.checkpoint):
            if e.name not in want:
                continue
            t = e.load()
            f32 = to_float32(t)
            norm = float(np.linalg.norm(f32.astype(np.float64)))
            if not np.isfinite(f32).all():
                raise KitError("%s: %s has NaN/Inf values" % (args.checkpoint, e.name))
            if t.array.size == 0 or (norm == 0.0 and e.name.endswith("_a")):
                raise KitError("%s: %s is %s: a broken (e.g. sharded) save; refusing to extract it"
                               % (args.checkpoint, e.name, "empty" if t.array.size == 0 else "all zero"))
            if norm == 0.0:
                warnings.append("%s is all zero (LoRA B starts at zero: was this checkpoint trained?)" % e.name)
            w.write(e.name, t)
            tensors.append(collections.OrderedDict([("name", e.name), ("shape", list(e.shape)),
                                                    ("dtype", e.ttype), ("norm", norm)]))
            bar.update(1)
    bar.close()
    base_fp = None
    base_path = args.base or cfg.get("load_checkpoint") or ""
    if base_path and os.path.isfile(base_path):
        base_fp = fingerprint(base_path)
    elif args.base:
        raise KitError("--base %s: no such file" % args.base)
    closed = params.count_from_config(cfg)
    dims = collections.OrderedDict((k, mc.get(k)) for k in ("hidden_size", "num_layers", "num_heads", "n_kv_heads",
                                                           "intermediate_size", "vocab_size"))
    spec = LoraSpec.from_pet_config(pet)
    spec.rank = rank
    adapter_cfg = collections.OrderedDict([("format", ADAPTER_FORMAT)])
    adapter_cfg.update(spec.adapter_fields())
    adapter_cfg.update([
        ("trainable_params", sum(params.numel(t["shape"]) for t in tensors)),
        ("base_model", collections.OrderedDict([
            ("name", cfg.get("trainer", {}).get("model_name")),
            ("arch", cfg.get("model", {}).get("arch", {}).get("type")),
            ("dims", dims),
            ("total_params", closed["total"]),
            ("checkpoint", base_fp),
        ])),
        ("source_checkpoint", fingerprint(args.checkpoint)),
        ("config", args.config),
        ("created_utc", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())),
        ("warnings", warnings),
        ("tensors", tensors),
    ])
    write_adapter_config(os.path.join(out_dir, ADAPTER_CONFIG), adapter_cfg)
    for msg in warnings[:5]:
        _warn(msg)
    return collections.OrderedDict([("adapter", os.path.join(out_dir, ADAPTER_CKPT)),
                                    ("config", os.path.join(out_dir, ADAPTER_CONFIG)),
                                    ("tensors", len(tensors)), ("trainable_params", adapter_cfg["trainable_params"]),
                                    ("scaling", adapter_cfg["scaling"]), ("warnings", len(warnings))])


# ============================================================== fold-lora

def load_adapter(path):
    """(adapter_config dict, {cell: (A NpTensor, B NpTensor)}, adapter.ckpt path) from a folder or file."""
    if os.path.isdir(path):
        ckpt, cfgp = os.path.join(path, ADAPTER_CKPT), os.path.join(path, ADAPTER_CONFIG)
    else:
        ckpt, cfgp = path, os.path.join(os.path.dirname(os.path.abspath(path)), ADAPTER_CONFIG)
    if not os.path.isfile(cfgp):
        raise KitError("%s: missing (the scaling alpha/r is read from it; there is no default)" % cfgp)
    acfg = read_adapter_config(cfgp)
    if not os.path.isfile(ckpt):
        raise KitError("%s: missing" % ckpt)
    tensors = read_ckpt(ckpt)
    stray = [n for n in tensors if not is_lora(n)]
    if stray:
        raise KitError("%s: not an adapter file: holds non-LoRA tensor %s" % (ckpt, stray[0]))
    pairs = lora_pairs(tensors, ckpt)
    listed = [t["name"] for t in acfg["tensors"]]
    if sorted(listed) != sorted(tensors):
        raise KitError("%s lists %d tensors, %s holds %d" % (cfgp, len(listed), ckpt, len(tensors)))
    out = collections.OrderedDict()
    for cell, (a, b) in pairs.items():
        check_pair_shapes(cell, tensors[a].array.shape, tensors[b].array.shape, ckpt, int(acfg["lora_rank"]))
        out[cell] = (tensors[a], tensors[b])
    return acfg, out, ckpt


def fold_weight(w, a, b, scaling):
    """W + scaling * B @ A computed in float32, cast back to W's type (round to nearest even)."""
    w32 = to_float32(w)
    delta = np.matmul(to_float32(b), to_float32(a))
    delta *= np.float32(scaling)
    if w32.flags.writeable:
        np.add(w32, delta, out=w32)
    else:
        w32 = w32 + delta
    return from_float32(w32, w.ttype)


def cmd_fold(args):
    _need_file(args.base, "--base")
    acfg, pairs, adapter_ckpt = load_adapter(args.adapter)
    scaling = float(acfg["scaling"])
    index = ckpt_index(args.base)
    lacking = [c + ".weight" for c in pairs if c + ".weight" not in index]
    if lacking:
        raise KitError("%s lacks %d weight(s) the adapter targets, e.g. %s" % (args.base, len(lacking), lacking[0]))
    for cell, (a, b) in pairs.items():
        check_pair_shapes(cell, a.array.shape, b.array.shape, args.adapter, None, index[cell + ".weight"][0])
    recorded = (acfg.get("base_model") or {}).get("checkpoint") or {}
    base_is_training_output = any(is_lora(n) for n in index)
    if recorded.get("bytes") and recorded["bytes"] != os.path.getsize(args.base) and not base_is_training_output:
        _warn("%s is %d bytes; the adapter was trained on a base of %d bytes (%s)"
              % (args.base, os.path.getsize(args.base), recorded["bytes"], recorded.get("path")))
    bar = _progress(os.path.getsize(args.base), "fold")
    folded, copied, dropped = [], 0, []
    t0 = time.time()
    with CkptWriter(args.out) as w:
        for e in iter_ckpt(args.base):
            bar.update(e.nbytes)
            if is_lora(e.name) or is_state_tensor(e.name):
                dropped.append(e.name)
                continue
            t = e.load()
            cell = e.name[:-len(".weight")] if e.name.endswith(".weight") else None
            if cell in pairs:
                a, b = pairs[cell]
                t = fold_weight(t, a, b, scaling)
                folded.append(e.name)
            else:
                copied += 1
            w.write(e.name, t)
            del t
    bar.close()
    record = collections.OrderedDict([
        ("output", os.path.abspath(args.out)), ("base", fingerprint(args.base) if args.hash_base else
                                               {"path": os.path.abspath(args.base),
                                                "bytes": os.path.getsize(args.base)}),
        ("adapter", os.path.abspath(adapter_ckpt)), ("scaling", scaling), ("lora_rank", acfg["lora_rank"]),
        ("lora_alpha", acfg["lora_alpha"]), ("folded", len(folded)), ("copied", copied),
        ("dropped", len(dropped)), ("dropped_examples", dropped[:5]), ("seconds", round(time.time() - t0, 2)),
        ("math", "W' = cast(float32(W) + (alpha/r) * float32(B) @ float32(A), dtype(W)), round to nearest even"),
    ])
    write_json(os.path.splitext(args.out)[0] + ".fold.json", record)
    return record


# ============================================================== inspect

def cmd_inspect(args):
    _need_file(args.checkpoint, "checkpoint")
    rows, flagged = [], []
    total = 0
    bar = _progress(os.path.getsize(args.checkpoint), "inspect")
    for e in iter_ckpt(args.checkpoint):
        bar.update(e.nbytes)
        row = collections.OrderedDict([("name", e.name), ("dtype", e.ttype), ("shape", list(e.shape)),
                                       ("numel", e.numel)])
        total += e.numel
        flags = []
        if args.no_norms and not is_lora(e.name):
            row["norm"] = None
        else:
            t = e.load()
            if t.ttype in ("Float32", "Float16", "BFloat16", "Float64"):
                x = to_float32(t) if t.ttype != "Float64" else t.array
                finite = bool(np.isfinite(x).all())
                row["norm"] = float(np.sqrt(np.sum(np.square(x, dtype=np.float64)))) if finite else None
                if not finite:
                    flags.append("non-finite")
                elif e.numel and row["norm"] == 0.0:
                    flags.append("all-zero")
            else:
                row["norm"] = None
            del t
        if e.numel == 0:
            flags.append("empty")
        row["flags"] = flags
        if is_lora(e.name) and flags:
            flagged.append("%s (%s)" % (e.name, ", ".join(flags)))
        rows.append(row)
    bar.close()
    lora = [r for r in rows if is_lora(r["name"])]
    summary = collections.OrderedDict([
        ("checkpoint", os.path.abspath(args.checkpoint)), ("bytes", os.path.getsize(args.checkpoint)),
        ("tensors", len(rows)), ("params", total), ("lora_tensors", len(lora)),
        ("lora_params", sum(r["numel"] for r in lora)),
        ("state_tensors", sum(1 for r in rows if is_state_tensor(r["name"]))),
        ("dtypes", dict(collections.Counter(r["dtype"] for r in rows))),
        ("flagged_lora", flagged),
    ])
    if not args.json:
        width = max([len(r["name"]) for r in rows] + [10])
        for r in rows:
            if args.lora_only and not is_lora(r["name"]):
                continue
            norm = "-" if r["norm"] is None else "%.6g" % r["norm"]
            print("%-*s %-8s %-16s %12s  %s" % (width, r["name"], r["dtype"], "x".join(map(str, r["shape"])) or "()",
                                                norm, " ".join("[%s]" % f for f in r["flags"])))
        print("%d tensors, %s parameters, %s; %d LoRA tensors (%s params); %d optimizer/trainer state tensors"
              % (summary["tensors"], f"{total:,}", human_bytes(summary["bytes"]), len(lora),
                 "{:,}".format(summary["lora_params"]), summary["state_tensors"]))
        for f in flagged:
            print("FLAG: %s" % f)
    else:
        summary["rows"] = rows if not args.lora_only else lora
    return summary, (1 if (flagged and args.check) else 0)


# ============================================================== CLI

def main(argv=None):
    ap = argparse.ArgumentParser(prog="ckpt.py", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    sub = ap.add_subparsers(dest="cmd", metavar="COMMAND")
    sub.required = True

    m = sub.add_parser("merge-shards", help="rank_*/ checkpoints (+ strategy) -> one complete checkpoint")
    m.add_argument("--src", required=True, help="training output dir holding rank_N/ (or checkpoint/rank_N/)")
    m.add_argument("--strategy", help="strategy file or folder (default: SRC/strategy if present); "
                                      "without one the ranks must be identical (data parallel)")
    m.add_argument("--step", type=int, help="merge this training step (default: the newest on every rank)")
    m.add_argument("--out", required=True, help="merged checkpoint to write, e.g. RUN/train/merged.ckpt")
    m.add_argument("--keep-state", action="store_true", help="keep optimizer/trainer state tensors")
    m.add_argument("--json", action="store_true", help="print one JSON object")

    e = sub.add_parser("extract-lora", help="full LoRA checkpoint -> adapter.ckpt + adapter_config.json")
    e.add_argument("--checkpoint", required=True, help="merged full checkpoint holding the LoRA tensors")
    e.add_argument("--config", required=True, help="the training config (profile or RUN/train/config.yaml): "
                                                   "rank, alpha, dropout, target_modules come from it")
    e.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    e.add_argument("--base", help="base checkpoint the run started from (fingerprinted into the config; "
                                  "default: the config's load_checkpoint when it exists)")
    e.add_argument("--out-dir", required=True, help="folder for adapter.ckpt and adapter_config.json")
    e.add_argument("--json", action="store_true", help="print one JSON object")

    f = sub.add_parser("fold-lora", help="base + adapter -> folded checkpoint (W + alpha/r * B @ A)")
    f.add_argument("--base", required=True, help="base checkpoint (a full LoRA checkpoint also works: its LoRA "
                                                 "and optimizer tensors are dropped from the output)")
    f.add_argument("--adapter", required=True, help="adapter folder (adapter.ckpt + adapter_config.json)")
    f.add_argument("--out", required=True, help="folded checkpoint to write")
    f.add_argument("--hash-base", action="store_true", help="record the base's sha256 (slow for 16 GB)")
    f.add_argument("--json", action="store_true", help="print one JSON object")

    i = sub.add_parser("inspect", help="tensors, dtypes, shapes, norms; flag bad LoRA tensors")
    i.add_argument("checkpoint")
    i.add_argument("--lora-only", action="store_true", help="list only LoRA tensors")
    i.add_argument("--no-norms", action="store_true", help="skip norms of non-LoRA tensors (fast on 16 GB)")
    i.add_argument("--check", action="store_true", help="exit 1 if a LoRA tensor is empty/all-zero/non-finite")
    i.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)

    rc = 0
    if args.cmd == "merge-shards":
        result = cmd_merge(args)
    elif args.cmd == "extract-lora":
        result = cmd_extract(args)
    elif args.cmd == "fold-lora":
        result = cmd_fold(args)
    else:
        result, rc = cmd_inspect(args)
    if args.json:
        print(json.dumps(result))
    elif args.cmd != "inspect":
        for k, v in result.items():
            print("%-16s %s" % (k, v))
    return rc


if __name__ == "__main__":
    run_main(main)
