"""Llama-architecture GGUF files (llama.cpp's format) -> MindFormers 1.1 LlamaForCausalLM weights + tokenizer.

Reading and dequantizing go through the `gguf` package (llama.cpp's own Python reader): any tensor type it can
dequantize is accepted (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, the K-quants, ...). What this module adds
is the mapping to MindFormers' Llama:

* names: `token_embd` -> `model.tok_embeddings.embedding_weight`, `blk.N.attn_q` -> `model.layers.N.attention.wq`,
  `ffn_gate/down/up` -> `feed_forward.w1/w2/w3`, `attn_norm` / `ffn_norm` -> `attention_norm` / `ffn_norm`,
  `output_norm` -> `model.norm_out`, `output` -> `lm_head` (tied models have no `output`: lm_head is a copy of
  the token embedding);
* rotary layout: llama.cpp's converter permutes the rows of Q and K so that each head's rotary pairs are
  interleaved (GPT-J style, `(x0, x1), (x2, x3), ...`); MindFormers rotates the two halves of a head
  (`rotate_half`, as Hugging Face's Llama). `unpermute_rope` undoes llama.cpp's permutation exactly (its inverse;
  tests/test_gguf.py checks it against the forward permutation written out from the converter's definition);
* shapes: GGUF lists dimensions innermost first; the reader's numpy arrays are already (out, in), MindFormers'
  layout for Linear weights.

The tokenizer side: a `gpt2`-model GGUF vocabulary (byte-level BPE: token strings in GPT-2's byte-to-unicode
alphabet, merges in priority order) becomes a Hugging Face `tokenizers` BPE (tokenizer.json) with the
pre-tokenizer llama.cpp uses for the file's `tokenizer.ggml.pre`; special tokens, BOS/EOS/pad and the chat
template go to tokenizer_config.json (Hugging Face's names). SentencePiece (`llama` model) vocabularies are
not supported (a clear error): the models this kit imports use byte-level BPE.
"""

import collections
import json

import numpy as np

from .io import KitError

ARCHITECTURES = ("llama",)

# llama.cpp's tokenizer.ggml.pre names -> the Hugging Face pre-tokenizer that splits text the same way
# (llama.cpp llama-vocab.cpp: "smollm" = \p{N} (one digit per piece) then GPT-2's regex; "gpt2"/"default" =
# GPT-2's regex alone, which ByteLevel(use_regex=True) applies).
PRE_TOKENIZERS = {
    "smollm": [{"type": "Digits", "individual_digits": True}],
    "gpt2": [],
    "default": [],
}

# GGUF token types (llama.cpp): 1 normal, 2 unknown, 3 control, 4 user defined, 5 unused, 6 byte
TOKEN_CONTROL, TOKEN_USER_DEFINED = 3, 4

_LAYER_MAP = {
    "attn_q": "attention.wq.weight",
    "attn_k": "attention.wk.weight",
    "attn_v": "attention.wv.weight",
    "attn_output": "attention.wo.weight",
    "ffn_gate": "feed_forward.w1.weight",
    "ffn_down": "feed_forward.w2.weight",
    "ffn_up": "feed_forward.w3.weight",
    "attn_norm": "attention_norm.weight",
    "ffn_norm": "ffn_norm.weight",
}
_TOP_MAP = {
    "token_embd.weight": "model.tok_embeddings.embedding_weight",
    "output_norm.weight": "model.norm_out.weight",
    "output.weight": "lm_head.weight",
}
# tensors llama.cpp may store that MindFormers computes itself
_IGNORED = ("rope_freqs.weight",)


def open_gguf(path):
    """GGUFReader over `path` (memory-mapped); one clear error for a missing or malformed file."""
    try:
        from gguf import GGUFReader
    except ImportError:
        raise KitError("the `gguf` package is missing: run `make setup`") from None
    try:
        return GGUFReader(str(path))
    except FileNotFoundError:
        raise KitError("%s: no such file" % path) from None
    except (ValueError, OSError, IndexError) as exc:
        raise KitError("%s: not a readable GGUF file: %s" % (path, exc)) from None


_MISSING = object()


def field(reader, key, default=_MISSING):
    """A metadata value (str, number, or list), `default` when absent; a required key names the file."""
    f = reader.fields.get(key)
    if f is None:
        if default is _MISSING:
            raise KitError("%s: GGUF metadata lacks %s" % (_path(reader), key))
        return default
    return f.contents()


def _path(reader):
    return getattr(reader.data, "filename", None) or "GGUF"


def llama_config(reader):
    """The model's dimensions from the GGUF metadata, in MindFormers LlamaConfig terms."""
    arch = field(reader, "general.architecture")
    if arch not in ARCHITECTURES:
        raise KitError("%s: architecture %r is not supported (only %s)" % (_path(reader), arch,
                                                                          ", ".join(ARCHITECTURES)))
    p = arch + "."
    hidden = int(field(reader, p + "embedding_length"))
    heads = int(field(reader, p + "attention.head_count"))
    kv_heads = int(field(reader, p + "attention.head_count_kv", heads))
    tokens = field(reader, "tokenizer.ggml.tokens", None)
    vocab = int(field(reader, p + "vocab_size", len(tokens) if tokens is not None else 0))
    if not vocab:
        raise KitError("%s: neither %svocab_size nor tokenizer.ggml.tokens" % (_path(reader), p))
    if hidden % heads or heads % kv_heads:
        raise KitError("%s: hidden %d, heads %d, kv heads %d do not divide" % (_path(reader), hidden, heads, kv_heads))
    head_dim = hidden // heads
    rope_dim = int(field(reader, p + "rope.dimension_count", head_dim))
    if rope_dim != head_dim:
        raise KitError("%s: partial rotary (rope dim %d of head dim %d) is not supported by MindFormers' Llama"
                       % (_path(reader), rope_dim, head_dim))
    scaling = field(reader, p + "rope.scaling.type", "none")
    if scaling not in ("none", "linear") or (scaling == "linear"
                                             and float(field(reader, p + "rope.scaling.factor", 1.0)) != 1.0):
        raise KitError("%s: rope scaling %r is not supported" % (_path(reader), scaling))
    return collections.OrderedDict([
        ("hidden_size", hidden),
        ("num_layers", int(field(reader, p + "block_count"))),
        ("num_heads", heads),
        ("n_kv_heads", kv_heads),
        ("intermediate_size", int(field(reader, p + "feed_forward_length"))),
        ("vocab_size", vocab),
        ("rms_norm_eps", float(np.float32(field(reader, p + "attention.layer_norm_rms_epsilon")))),
        ("theta", float(field(reader, p + "rope.freq_base", 10000.0))),
        ("max_position_embedding", int(field(reader, p + "context_length", 2048))),
    ])


def rope_permute(w, n_head):
    """llama.cpp's permutation of Q/K rows (convert_hf_to_gguf.py `LlamaModel.permute`), for tests and fixtures."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute_rope(w, n_head):
    """The inverse of rope_permute: interleaved rotary pairs back to MindFormers' (Hugging Face's) half split."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def mindformers_name(gguf_name):
    """MindFormers parameter name of a GGUF tensor, None for tensors MindFormers does not store."""
    if gguf_name in _TOP_MAP:
        return _TOP_MAP[gguf_name]
    if gguf_name in _IGNORED:
        return None
    parts = gguf_name.split(".")
    if len(parts) == 4 and parts[0] == "blk" and parts[1].isdigit() and parts[3] == "weight" \
            and parts[2] in _LAYER_MAP:
        return "model.layers.%d.%s" % (int(parts[1]), _LAYER_MAP[parts[2]])
    raise KitError("GGUF tensor %r has no place in MindFormers' Llama (biases and other architectures are not "
                   "supported)" % gguf_name)


def dequantize(tensor):
    """float32 numpy array (out, in) of a GGUF tensor of any type the gguf package can dequantize."""
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize as gg_dequantize

    qtype = tensor.tensor_type
    try:
        if qtype == GGMLQuantizationType.F32:
            arr = np.array(tensor.data, dtype=np.float32)
        elif qtype == GGMLQuantizationType.F16:
            arr = np.asarray(tensor.data).astype(np.float32)
        else:
            arr = gg_dequantize(np.asarray(tensor.data), qtype).astype(np.float32, copy=False)
    except NotImplementedError:
        raise KitError("GGUF tensor %s: type %s cannot be dequantized by the gguf package"
                       % (tensor.name, qtype.name)) from None
    shape = tuple(int(d) for d in reversed(tensor.shape.tolist()))
    if arr.size != int(np.prod(shape)):
        raise KitError("GGUF tensor %s: %d values for shape %s" % (tensor.name, arr.size, shape))
    return arr.reshape(shape)


def iter_weights(reader, cfg, unpermute=True):
    """(MindFormers name, float32 array, GGUF type name) for every tensor of the model, lm_head last.

    unpermute=False leaves Q/K in llama.cpp's rotary layout: only for showing that the checks catch it.
    """
    heads, kv_heads = cfg["num_heads"], cfg["n_kv_heads"]
    embedding = None
    has_output = False
    for t in reader.tensors:
        name = mindformers_name(t.name)
        if name is None:
            continue
        arr = dequantize(t)
        if unpermute and t.name.endswith(".attn_q.weight"):
            arr = unpermute_rope(arr, heads)
        elif unpermute and t.name.endswith(".attn_k.weight"):
            arr = unpermute_rope(arr, kv_heads)
        if name == "lm_head.weight":
            has_output = True
            yield name, arr, t.tensor_type.name
            continue
        if t.name == "token_embd.weight":
            embedding = (arr, t.tensor_type.name)
        yield name, arr, t.tensor_type.name
    if not has_output:
        if embedding is None:
            raise KitError("%s: no token_embd.weight" % _path(reader))
        yield "lm_head.weight", embedding[0], embedding[1] + " (tied: token embedding)"


def check_table(names_shapes, table, where):
    """Every parameter of the MindFormers model once, with its shape; nothing extra."""
    got = dict(names_shapes)
    missing = [n for n in table if n not in got]
    extra = [n for n in got if n not in table]
    bad = ["%s %s != %s" % (n, tuple(got[n]), tuple(table[n][0])) for n in table
           if n in got and tuple(got[n]) != tuple(table[n][0])]
    if missing or extra or bad:
        msg = []
        if missing:
            msg.append("%d missing (e.g. %s)" % (len(missing), ", ".join(missing[:3])))
        if extra:
            msg.append("%d without a place (e.g. %s)" % (len(extra), ", ".join(extra[:3])))
        if bad:
            msg.append("shape: " + "; ".join(bad[:3]))
        raise KitError("%s does not match MindFormers' LlamaForCausalLM: %s" % (where, "; ".join(msg)))


# ------------------------------------------------------------------------------------------------ tokenizer

def gguf_tokenizer(reader):
    """(tokenizer.json text, tokenizer_config dict) of a byte-level BPE GGUF vocabulary.

    tokenizer.json is a Hugging Face `tokenizers` BPE over the GGUF's own tokens (ids = positions) and merges
    (priority = position), the pre-tokenizer of `tokenizer.ggml.pre`, byte-level decoding; the control tokens
    are listed as special added tokens. tokenizer_config.json names BOS/EOS/pad/unk, whether BOS is added, and
    carries the chat template verbatim.
    """
    from tokenizers import Tokenizer

    where = _path(reader)
    model = field(reader, "tokenizer.ggml.model")
    if model != "gpt2":
        raise KitError("%s: tokenizer model %r is not supported (only byte-level BPE, 'gpt2')" % (where, model))
    pre = field(reader, "tokenizer.ggml.pre", "default")
    if pre not in PRE_TOKENIZERS:
        raise KitError("%s: pre-tokenizer %r is not supported (known: %s)" % (where, pre,
                                                                             ", ".join(sorted(PRE_TOKENIZERS))))
    tokens = field(reader, "tokenizer.ggml.tokens")
    merges = field(reader, "tokenizer.ggml.merges")
    types = field(reader, "tokenizer.ggml.token_type", [1] * len(tokens))
    if len(types) != len(tokens):
        raise KitError("%s: %d token types for %d tokens" % (where, len(types), len(tokens)))
    vocab = {}
    for i, tok in enumerate(tokens):
        if tok in vocab:
            raise KitError("%s: token %r appears twice (ids %d and %d)" % (where, tok, vocab[tok], i))
        vocab[tok] = i
    pairs = []
    for k, m in enumerate(merges):
        parts = m.split(" ")
        if len(parts) != 2 or parts[0] + parts[1] not in vocab:
            raise KitError("%s: merge %d %r is not 'a b' with ab in the vocabulary" % (where, k, m))
        pairs.append(parts)
    specials = [i for i, t in enumerate(types) if int(t) in (TOKEN_CONTROL, TOKEN_USER_DEFINED)]
    pre_tokenizers = PRE_TOKENIZERS[pre] + [{"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                                            "use_regex": True}]
    spec = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [{"id": i, "content": tokens[i], "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": int(types[i]) == TOKEN_CONTROL} for i in specials],
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": pre_tokenizers},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "vocab": vocab, "merges": [" ".join(p) for p in pairs]},
    }
    text = json.dumps(spec, ensure_ascii=False)
    try:
        Tokenizer.from_str(text)  # the tokenizers library accepts it
    except Exception as exc:  # noqa: BLE001 - the Rust error names the problem
        raise KitError("%s: the tokenizers library rejects the vocabulary: %s" % (where, exc)) from None

    def token(key):
        idx = field(reader, key, None)
        return None if idx is None else {"id": int(idx), "content": tokens[int(idx)]}

    bos, eos, unk, pad = (token("tokenizer.ggml.%s_token_id" % k) for k in ("bos", "eos", "unknown", "padding"))
    config = collections.OrderedDict([
        ("tokenizer_class", "PreTrainedTokenizerFast"),
        ("source", "gguf"),
        ("gguf_pre_tokenizer", pre),
        ("bos_token", bos), ("eos_token", eos), ("unk_token", unk), ("pad_token", pad),
        ("add_bos_token", bool(field(reader, "tokenizer.ggml.add_bos_token", True))),
        ("add_eos_token", bool(field(reader, "tokenizer.ggml.add_eos_token", False))),
        ("chat_template", field(reader, "tokenizer.chat_template", None)),
        ("special_tokens", [{"id": i, "content": tokens[i]} for i in specials]),
    ])
    return text, config
