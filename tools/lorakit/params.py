"""Exact parameter counts of MindFormers 1.1's LlamaForCausalLM (+ LoRA) in closed form, without MindSpore.

The table of base parameters follows `mindformers/models/llama/` (names, shapes, dtypes); the LoRA
targets follow `mindformers/pet/tuners/lora_adapter.py::recursive_replace_dense_cell` exactly:

* the adapter is applied to `LlamaForCausalLM.model` (the LlamaModel), never to `lm_head`;
* it walks the cell tree child by child and tests `re.match(target_modules, <child's own name>)` — the
  *local* cell name (`wq`, `attention`, `0`), not the dotted path;
* a child matched by `exclude_layers` (list of regexes, `re.match`) is skipped with its whole subtree;
* a matched child that is a Linear/Dense is replaced by a LoRADense; a matched child that is anything
  else (e.g. `attention` under `.*attention.*`) is skipped **without descending** into it;
* an unmatched child is descended into.

Then `mindpet.freeze_delta` freezes everything except names matching `*mindpet_delta_lora*`
(fnmatch), and `freeze_include` / `freeze_exclude` (fnmatch lists) are applied on top.
LoRADense(in, out, r) holds `mindpet_delta_lora_a` (r, in) and `mindpet_delta_lora_b` (out, r).
"""

import re
from collections import OrderedDict
from fnmatch import fnmatch

from .io import KitError

# The contest divided by this (the base model size, rounded); the exact base total is 8,030,261,248.
CONTEST_DENOMINATOR = 8.03e9
LLAMA3_8B_TOTAL = 8030261248  # exact base total of Llama3-8B (CONTEST.md section 5)
LORA_TAG = "mindpet_delta_lora"


class Linear:
    """A Linear cell in the tree: its in/out channels and whether it has a bias."""

    __slots__ = ("in_ch", "out_ch", "bias")

    def __init__(self, in_ch, out_ch, bias=False):
        self.in_ch, self.out_ch, self.bias = int(in_ch), int(out_ch), bool(bias)


def _mc_get(mc, key, default):
    value = mc.get(key, default)
    return default if value is None else value


def ffn_hidden_dim(mc):
    """LlamaFeedForward's hidden size: intermediate_size if set, else the multiple_of rounding rule."""
    if mc.get("intermediate_size") is not None:
        return _dim(mc, "intermediate_size")
    hidden = 4 * _dim(mc, "hidden_size")
    mult = mc.get("ffn_dim_multiplier")
    if mult is not None:
        try:
            mult = float(mult)
        except (TypeError, ValueError):
            mult = None
        if mult is None or not 0 < mult <= 64:
            raise KitError("model_config.ffn_dim_multiplier %r: must be a number in (0, 64]"
                           % mc.get("ffn_dim_multiplier"))
        hidden = int((mult + 0.01) * hidden)
    hidden = int(2 * hidden / 3)
    multiple_of = _dim(mc, "multiple_of", 256)
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)


# Ranges a model_config dimension must lie in (Llama3-8B: hidden 4096, 32 layers, 32 heads, vocab 128256);
# wide enough for any Llama, narrow enough that a hostile config cannot make the counter build 10^9 layers.
DIM_RANGES = {"hidden_size": (1, 1 << 17), "num_layers": (1, 1024), "num_heads": (1, 1024),
              "n_kv_heads": (1, 1024), "vocab_size": (1, 1 << 22), "intermediate_size": (1, 1 << 20),
              "multiple_of": (1, 1 << 16)}


def _dim(mc, key, default=None):
    """model_config[key] as an int in DIM_RANGES[key] (an integral float is accepted; inf, nan, bool and text
    are not), else KitError naming the field."""
    value = mc.get(key, default) if default is not None else mc[key]
    if value is None and default is not None:
        value = default
    ok = isinstance(value, int) and not isinstance(value, bool)
    if isinstance(value, float) and value == value and abs(value) != float("inf") and value.is_integer():
        value, ok = int(value), True
    lo, hi = DIM_RANGES[key]
    if not ok or not lo <= value <= hi:
        raise KitError("model_config.%s %r: must be an integer in [%d, %d]" % (key, value, lo, hi))
    return value


def _dims(mc):
    try:
        hidden = _dim(mc, "hidden_size")
        layers = _dim(mc, "num_layers")
        heads = _dim(mc, "num_heads")
        vocab = _dim(mc, "vocab_size")
    except KeyError as exc:
        raise KitError("model_config lacks %s" % exc) from None
    kv_heads = _dim(mc, "n_kv_heads", heads)
    if hidden % heads:
        raise KitError("model_config: hidden_size %d is not a multiple of num_heads %d" % (hidden, heads))
    if heads % kv_heads:
        raise KitError("model_config: num_heads %d is not a multiple of n_kv_heads %d" % (heads, kv_heads))
    moe = mc.get("moe_config") or {}
    if isinstance(moe, dict) and int(moe.get("expert_num", 1) or 1) > 1:
        raise KitError("model_config: MoE (moe_config.expert_num > 1) is not supported by the counter")
    return hidden, layers, heads, kv_heads, vocab


def cell_tree(mc):
    """The LlamaModel cell tree as nested OrderedDicts (leaves: Linear or None for non-Linear leaf cells).

    Only the structure that can hold Linear cells matters for LoRA matching; the other children are
    listed by name so that a regex matching them behaves as in MindFormers (skipped, nothing inside).
    """
    hidden, layers, heads, kv_heads, _ = _dims(mc)
    kv_dim = kv_heads * (hidden // heads)
    ffn = ffn_hidden_dim(mc)
    bias = bool(mc.get("qkv_has_bias", False))
    tree = OrderedDict()
    tree["freqs_mgr"] = None
    tree["casual_mask"] = None
    tree["tok_embeddings"] = None
    layer_list = OrderedDict()
    for i in range(layers):
        attn = OrderedDict()
        if mc.get("qkv_concat", False):
            attn["w"] = Linear(hidden, hidden + 2 * kv_dim, bias)
        else:
            attn["wq"] = Linear(hidden, hidden, bias)
            attn["wk"] = Linear(hidden, kv_dim, bias)
            attn["wv"] = Linear(hidden, kv_dim, bias)
        attn["wo"] = Linear(hidden, hidden)
        attn["apply_rotary_emb"] = None
        ff = OrderedDict([("w1", Linear(hidden, ffn)), ("w2", Linear(ffn, hidden)), ("w3", Linear(hidden, ffn))])
        layer = OrderedDict([("ffn_norm", None), ("attention_norm", None), ("attention", attn), ("feed_forward", ff)])
        layer_list[str(i)] = layer
    tree["layers"] = layer_list
    tree["norm_out"] = None
    return tree


MAX_PATTERN_CHARS = 1000
MAX_EXCLUDE_PATTERNS = 64
_MATCH_CHILD = (
    "import json, re, sys\n"
    "patterns, names = json.load(sys.stdin)\n"
    "out = []\n"
    "for p in patterns:\n"
    "    try:\n"
    "        rx = re.compile(p)\n"
    "    except re.error as exc:\n"
    "        print(json.dumps({'bad': p, 'why': str(exc)})); sys.exit(0)\n"
    "    out.append([bool(rx.match(n)) for n in names])\n"
    "print(json.dumps({'match': out}))\n")


def _local_names(node, out):
    for name, child in node.items():
        out.add(name)
        if isinstance(child, dict):
            _local_names(child, out)
    return out


def regex_match_table(patterns, names, timeout=None):
    """{(pattern, name): re.match(pattern, name) is not None} for every pattern and name.

    With `timeout` (seconds) the matching runs with Python's own `re` (MindFormers' engine) in a child process
    that is killed after `timeout`: a pattern with catastrophic backtracking (ReDoS) from a hostile config then
    costs seconds, not hours. Invalid patterns and timeouts raise KitError."""
    patterns, names = list(dict.fromkeys(patterns)), sorted(names)
    for p in patterns:
        if not isinstance(p, str):
            raise KitError("regex %r is not a string" % (p,))
        if len(p) > MAX_PATTERN_CHARS:
            raise KitError("regex of %d characters (at most %d)" % (len(p), MAX_PATTERN_CHARS))
    if timeout is None:
        table = {}
        for p in patterns:
            try:
                rx = re.compile(p)
            except re.error as exc:
                raise KitError("%r is not a valid regex: %s" % (p, exc)) from None
            table.update(((p, n), bool(rx.match(n))) for n in names)
        return table
    import json
    import subprocess
    import sys

    try:
        proc = subprocess.run([sys.executable, "-I", "-S", "-c", _MATCH_CHILD], input=json.dumps([patterns, names]),
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise KitError("regex %s: matching %d cell names took over %g s (catastrophic backtracking?)"
                       % (" / ".join(repr(p[:80]) for p in patterns), len(names), timeout)) from None
    try:
        res = json.loads(proc.stdout)
    except ValueError:
        raise KitError("regex matching failed (exit %d): %s" % (proc.returncode, proc.stderr.strip()[-200:])) from None
    if "bad" in res:
        raise KitError("%r is not a valid regex: %s" % (res["bad"], res["why"]))
    return {(p, n): hit for p, row in zip(patterns, res["match"]) for n, hit in zip(names, row)}


def lora_targets(mc, target_modules, exclude_layers=None, regex_timeout=None):
    """Dotted names (under `model.`) of the Linear cells LoRA replaces, in network order. regex_timeout: see
    regex_match_table (verify.py bounds the submitter's regexes that way)."""
    if not target_modules:
        raise KitError("pet_config.target_modules is empty (MindFormers' LoraModel refuses that too)")
    if isinstance(exclude_layers, str):
        exclude_layers = [exclude_layers]
    exclude_layers = list(exclude_layers or [])
    if len(exclude_layers) > MAX_EXCLUDE_PATTERNS:
        raise KitError("pet_config.exclude_layers: %d patterns (at most %d)" % (len(exclude_layers),
                                                                              MAX_EXCLUDE_PATTERNS))
    tree = cell_tree(mc)
    try:
        hit = regex_match_table([target_modules] + exclude_layers, _local_names(tree, set()), regex_timeout)
    except KitError as exc:
        raise KitError("pet_config.target_modules / exclude_layers: %s" % exc) from None
    out = []

    def walk(node, prefix):
        for name, child in node.items():
            if exclude_layers and any(hit[(p, name)] for p in exclude_layers):
                continue
            if hit[(target_modules, name)]:
                if isinstance(child, Linear):
                    out.append((prefix + name, child))
                continue  # matched but not a Linear: MindFormers skips it without descending
            if isinstance(child, dict):
                walk(child, prefix + name + ".")

    walk(tree, "model.")
    return out


def base_param_table(mc):
    """OrderedDict name -> (shape tuple, dtype str) of LlamaForCausalLM without LoRA."""
    hidden, _, _, _, vocab = _dims(mc)
    ptype = str(_mc_get(mc, "param_init_type", "float16"))
    etype = str(_mc_get(mc, "embedding_init_type", ptype))
    table = OrderedDict()
    table["model.tok_embeddings.embedding_weight"] = ((vocab, hidden), etype)

    def walk(node, prefix):
        for name, child in node.items():
            if isinstance(child, Linear):
                table[prefix + name + ".weight"] = ((child.out_ch, child.in_ch), ptype)
                if child.bias:
                    table[prefix + name + ".bias"] = ((child.out_ch,), ptype)
            elif isinstance(child, dict):
                if "attention" in child:  # a decoder layer: its norms come first
                    table[prefix + name + ".ffn_norm.weight"] = ((hidden,), "float32")
                    table[prefix + name + ".attention_norm.weight"] = ((hidden,), "float32")
                walk(child, prefix + name + ".")

    walk(cell_tree(mc)["layers"], "model.layers.")
    table["model.norm_out.weight"] = ((hidden,), "float32")
    table["lm_head.weight"] = ((vocab, hidden), ptype)
    return table


def lora_param_table(mc, pet, regex_timeout=None):
    """OrderedDict name -> (shape, dtype) of the LoRA tensors `pet` (a pet_config dict) adds."""
    table = OrderedDict()
    if not pet:
        return table
    pet_type = str(pet.get("pet_type", "lora")).lower()
    if pet_type != "lora":
        raise KitError("pet_config.pet_type %r: only lora is counted" % pet_type)
    try:
        rank = int(pet.get("lora_rank", 8))
    except (TypeError, ValueError):
        raise KitError("pet_config.lora_rank %r is not an integer" % pet.get("lora_rank")) from None
    if rank <= 0:
        raise KitError("pet_config.lora_rank must be positive, got %d" % rank)
    dtype = str(pet.get("param_init_type") or "float16")  # LoraConfig's default
    for cell, lin in lora_targets(mc, pet.get("target_modules"), pet.get("exclude_layers"), regex_timeout):
        table[cell + "." + LORA_TAG + "_a"] = ((rank, lin.in_ch), dtype)
        table[cell + "." + LORA_TAG + "_b"] = ((lin.out_ch, rank), dtype)
    return table


def _fn_any(name, patterns):
    return bool(patterns) and any(fnmatch(name, p) for p in patterns)


def trainable_names(names, pet):
    """Apply mindpet's freeze rules (freeze_delta) to parameter names; return the trainable ones."""
    names = list(names)
    trainable = {n: fnmatch(n, "*" + LORA_TAG + "*") for n in names}
    include = pet.get("freeze_include") if pet else None
    exclude = pet.get("freeze_exclude") if pet else None
    if include or exclude:
        for n in names:
            inc, exc = _fn_any(n, include), _fn_any(n, exclude)
            if inc and not exc:
                trainable[n] = False
            elif exc and not inc:
                trainable[n] = True
    return [n for n in names if trainable[n]]


def numel(shape):
    n = 1
    for d in shape:
        n *= int(d)
    return n


def summarize(base_total, trainable, lora_total, source):
    """The one result dict count_params prints (see docs/checkpoints.md for the meaning of each field)."""
    return OrderedDict([
        ("source", source),
        ("trainable", int(trainable)),
        ("total", int(base_total)),
        ("lora_params", int(lora_total)),
        ("network_total", int(base_total + lora_total)),
        # the leaderboard's format: 6 significant digits (0.000424393, 0.00679028)
        ("ratio_contest", float("%.6g" % (trainable / CONTEST_DENOMINATOR))),
        ("ratio_contest_full", float("%.12g" % (trainable / CONTEST_DENOMINATOR))),
        ("ratio_exact", float("%.12g" % (trainable / base_total)) if base_total else None),
        ("contest_denominator", CONTEST_DENOMINATOR),
    ])


def _model_config(cfg):
    mc = cfg.get("model", {}).get("model_config") if isinstance(cfg.get("model"), dict) else None
    if not isinstance(mc, dict):
        raise KitError("config has no model.model_config mapping")
    return mc


def pet_config_of(cfg):
    return _model_config(cfg).get("pet_config") or None


def count_from_config(cfg):
    """Closed-form counts from a resolved kit config (model.model_config + its pet_config)."""
    mc = _model_config(cfg)
    pet = mc.get("pet_config") or None
    base = base_param_table(mc)
    lora = lora_param_table(mc, pet)
    names = list(base) + list(lora)
    sizes = {n: numel(s) for n, (s, _) in list(base.items()) + list(lora.items())}
    train = trainable_names(names, pet) if pet else names
    out = summarize(sum(numel(s) for s, _ in base.values()), sum(sizes[n] for n in train),
                    sum(numel(s) for s, _ in lora.values()), "config")
    cells = []
    for n in lora:
        cell = n.rsplit(".", 1)[0]
        if cell not in cells:
            cells.append(cell)
    out["lora_matrices"] = len(cells)
    out["lora_targets"] = cells
    out["lora_rank"] = int(pet.get("lora_rank", 8)) if pet else None
    out["target_modules"] = pet.get("target_modules") if pet else None
    return out


_SHORT_PREFIXES = (("pet_config.", "model.model_config.pet_config."), ("model_config.", "model.model_config."))


def expand_override(item):
    """`pet_config.lora_rank=64` -> `model.model_config.pet_config.lora_rank=64` (full keys pass through; a
    leading `+`, which adds a new key, is kept)."""
    plus = "+" if item.startswith("+") else ""
    item = item[len(plus):]
    for short, full in _SHORT_PREFIXES:
        if item.startswith(short):
            return plus + full + item[len(short):]
    return plus + item


def score_ratio(params):
    """The ratio the contest score uses: trainable / 8.03e9 for Llama3-8B itself, else the exact
    trainable / total (8.03e9 means nothing for the tiny CPU model). `params` is count_params' JSON."""
    if int(params["total"]) == LLAMA3_8B_TOTAL:
        return float(params["ratio_contest"])
    return float(params["ratio_exact"])
