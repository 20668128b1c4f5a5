"""Fixtures for the checkpoint tests: synthetic tiny checkpoints, model-parallel slices and strategy files.

CPU MindSpore cannot compile semi-auto-parallel training, so the 2- and 4-way shards a contest run leaves
behind are built here: every parameter gets a layout (dev_matrix, tensor_map) like MindFormers' Llama
(column-parallel wq/wk/wv/w1/w3/lm_head, row-parallel wo/w2, LoRA A/B following their Linear), each
rank's slice is cut from the full tensor by that layout, and the layouts are written as MindSpore's
protobuf `ParallelStrategyMap` (or its JSON form). `tensor_map[i] = m` splits tensor dim i over device-
matrix axis `len(dev_matrix) - 1 - m` (-1: not split); rank r's coordinates are r unravelled row-major
over dev_matrix. If this convention were wrong, merging with mindspore.transform_checkpoints would not
give back the original tensors bit for bit, which is what the tests check.
"""

import collections
import json
import os

import numpy as np

from lorakit import ckpt_io, params
from lorakit.config import load_config


def tiny_cfg(overrides=()):
    return load_config("tiny", list(overrides))


def full_table(cfg, with_lora=True):
    mc = cfg["model"]["model_config"]
    table = params.base_param_table(mc)
    if with_lora:
        table.update(params.lora_param_table(mc, mc["pet_config"]))
    return table


def layout_for(name, shape, mp, two_d=False):
    """(dev_matrix, tensor_map) of a parameter in an mp-way model-parallel Llama."""
    ndim = len(shape)
    col = (".wq.", ".wk.", ".wv.", ".w1.", ".w3.", "lm_head.")
    row = (".wo.", ".w2.")
    if two_d and name == "lm_head.weight":
        return [2, mp // 2], [1, 0]  # both dims split over a 2 x (mp/2) device matrix
    if ndim == 2 and any(k in name for k in col):
        if name.endswith("lora_a"):
            return [mp], [-1, -1]
        return [mp], [0, -1]          # split output rows (weight and lora_b)
    if ndim == 2 and any(k in name for k in row):
        if name.endswith("lora_b"):
            return [mp], [-1, -1]
        return [mp], [-1, 0]          # split input columns (weight and lora_a)
    if name == "model.tok_embeddings.embedding_weight":
        return [mp], [0, -1]          # vocab-parallel embedding
    return [mp], [-1] * ndim          # norms: replicated


def slice_for_rank(arr, dev_matrix, tensor_map, rank):
    coords = np.unravel_index(rank, dev_matrix)
    index = []
    for dim, m in enumerate(tensor_map):
        if m == -1:
            index.append(slice(None))
            continue
        axis = len(dev_matrix) - 1 - m
        parts = dev_matrix[axis]
        step = arr.shape[dim] // parts
        assert step * parts == arr.shape[dim], "dim %d of %s not divisible by %d" % (dim, arr.shape, parts)
        index.append(slice(coords[axis] * step, (coords[axis] + 1) * step))
    return arr[tuple(index)]


def write_strategy(path, layouts, fmt="protobuf"):
    """layouts: {name: (dev_matrix, tensor_map)} -> MindSpore strategy file (protobuf .ckpt or .json)."""
    if fmt == "json":
        items = collections.OrderedDict()
        for name, (dev, tmap) in layouts.items():
            items[name] = {"dev_matrix": list(dev), "tensor_map": list(tmap), "param_split_shape": [],
                           "indices_offset": [], "field": 0, "opt_weight_shard_step": 0,
                           "opt_weight_shard_size": 0}
        with open(path, "w", encoding="utf-8") as fh:
            json.dump({"current_stage": 0, "parallel_layout_item": items}, fh)
        return path
    from mindspore.train.node_strategy_pb2 import ParallelStrategyMap

    smap = ParallelStrategyMap()
    smap.current_stage = 0
    for name, (dev, tmap) in layouts.items():
        item = smap.parallel_layout_item.add()
        item.param_name = name
        lay = item.parallel_layouts
        lay.dev_matrix.add().dim.extend(dev)
        lay.tensor_map.add().dim.extend(tmap)
        lay.param_split_shape.add()
        lay.indices_offset.add()
        lay.field = 0
        lay.opt_weight_shard_step = 0
        lay.opt_weight_shard_size = 0
    with open(path, "wb") as fh:
        fh.write(smap.SerializeToString())
    return path


def make_sharded_run(root, full, mp, step=10, stale_step=9, two_d=False, fmt="protobuf",
                     strategy_names=None, extra_state=True):
    """Write root/checkpoint/rank_r/tiny_rank_r-1_{step}.ckpt (+ a stale, different -1_{stale_step}.ckpt that
    sorts *after* it by name) and root/strategy/ckpt_strategy_rank_r.{ckpt,json}. Returns the layouts."""
    layouts = collections.OrderedDict((n, layout_for(n, t.array.shape, mp, two_d)) for n, t in full.items())
    ext = ".json" if fmt == "json" else ".ckpt"
    os.makedirs(os.path.join(root, "strategy"), exist_ok=True)
    chosen = layouts if strategy_names is None else \
        collections.OrderedDict((n, layouts[n]) for n in strategy_names)
    for r in range(mp):
        d = os.path.join(root, "checkpoint", "rank_%d" % r)
        os.makedirs(d, exist_ok=True)
        shard = collections.OrderedDict()
        for n, t in full.items():
            dev, tmap = layouts[n]
            shard[n] = ckpt_io.NpTensor(np.ascontiguousarray(slice_for_rank(t.array, dev, tmap, r)), t.ttype)
        if extra_state:
            shard["step_num"] = ckpt_io.NpTensor(np.array([step], np.int64), "Int64")
        ckpt_io.write_ckpt(os.path.join(d, "tiny_rank_%d-1_%d.ckpt" % (r, step)), shard)
        if stale_step is not None:
            stale = collections.OrderedDict((n, ckpt_io.NpTensor(t.array + t.array.dtype.type(1)
                                                                 if t.ttype != "BFloat16" else t.array ^ 1, t.ttype))
                                            for n, t in shard.items() if n != "step_num")
            if extra_state:
                stale["step_num"] = ckpt_io.NpTensor(np.array([stale_step], np.int64), "Int64")
            ckpt_io.write_ckpt(os.path.join(d, "tiny_rank_%d-1_%d.ckpt" % (r, stale_step)), stale)
        write_strategy(os.path.join(root, "strategy", "ckpt_strategy_rank_%d%s" % (r, ext)), chosen, fmt)
    return layouts


def random_full(cfg, seed=0, dtype=None):
    """{name: NpTensor} of a random tiny LoRA checkpoint (float32 unless dtype='BFloat16')."""
    rng = np.random.default_rng(seed)
    out = collections.OrderedDict()
    for name, (shape, _) in full_table(cfg).items():
        arr = (rng.standard_normal(shape) * 0.05).astype(np.float32)
        out[name] = ckpt_io.from_float32(arr, dtype or "Float32")
    return out


def logits_main(argv):
    """`python tests/ckpt_fixtures.py LORA_CKPT FOLDED_CKPT BASE_CKPT`: logits of the tiny model three ways,
    each network built through MindFormers (lorakit.mf.build_model: build_network + get_pet_model):
    LoRA network + LoRA checkpoint (unfolded), plain network + folded checkpoint, plain network + base.
    Prints one JSON object with the differences (runs in its own process: MindSpore's context is global)."""
    import copy

    import mindspore as ms

    from lorakit import mf

    lora_ckpt, folded_ckpt, base_ckpt = argv
    cfg = tiny_cfg()
    plain = copy.deepcopy(cfg)
    plain["model"]["model_config"].pop("pet_config")
    rng = np.random.default_rng(0)
    seq = int(cfg["model"]["model_config"]["seq_length"])
    ids = ms.Tensor(rng.integers(0, 1024, size=(2, seq)).astype(np.int32))
    lora_net = mf.build_model(cfg, lora_ckpt)
    trainable = sum(int(p.size) for p in lora_net.trainable_params())
    unfolded = lora_net(ids)[0].asnumpy().astype(np.float64)
    folded = mf.build_model(plain, folded_ckpt)(ids)[0].asnumpy().astype(np.float64)
    base = mf.build_model(plain, base_ckpt)(ids)[0].asnumpy().astype(np.float64)
    out = {"shape": list(unfolded.shape), "max_abs_logit": float(np.abs(unfolded).max()),
           "max_abs_diff_folded": float(np.abs(unfolded - folded).max()),
           "max_abs_diff_base": float(np.abs(unfolded - base).max()),
           "argmax_agree_folded": float((unfolded.argmax(-1) == folded.argmax(-1)).mean()),
           "lora_trainable": trainable}
    print(json.dumps(out))


if __name__ == "__main__":  # run with PYTHONPATH=tools
    import sys

    logits_main(sys.argv[1:])
