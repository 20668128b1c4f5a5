"""Small Llama-architecture GGUF files written with the `gguf` package's own writer, for the import tests.

The weights are fabricated in Hugging Face / MindFormers layout and written the way llama.cpp's converter writes
them (Q and K rows permuted for interleaved rotary pairs, `lorakit.gguf_model.rope_permute`), quantized with the
gguf package (F32, F16, Q8_0, Q4_0, Q4_1). The vocabulary is a byte-level BPE: GPT-2's byte-to-unicode alphabet
(256 tokens), a few merges, and ChatML-style control tokens, with a ChatML chat template.
"""

import numpy as np

DIMS = {"hidden": 64, "layers": 2, "heads": 4, "kv_heads": 2, "ffn": 96}
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MERGES = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a", "e r", "Ġ 1", "o n"]
CHATML = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
          "{{ '<|im_start|>system\nYou are a test model<|im_end|>\n' }}{% endif %}"
          "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def bytes_to_unicode():
    """GPT-2's reversible byte -> printable character map (the alphabet of byte-level BPE vocabularies)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def vocabulary():
    alphabet = [bytes_to_unicode()[b] for b in range(256)]
    merged = ["".join(m.split(" ")) for m in MERGES]
    return SPECIALS + alphabet + merged


def hf_weights(seed=0):
    """name (GGUF) -> float32 array in Hugging Face layout (out, in); norms near 1."""
    rng = np.random.default_rng(seed)
    h, f, kv = DIMS["hidden"], DIMS["ffn"], DIMS["hidden"] // DIMS["heads"] * DIMS["kv_heads"]
    vocab = len(vocabulary())
    w = {"token_embd.weight": rng.normal(0, 0.5, (vocab, h)), "output_norm.weight": 1 + rng.normal(0, 0.1, h)}
    for i in range(DIMS["layers"]):
        p = "blk.%d." % i
        w[p + "attn_norm.weight"] = 1 + rng.normal(0, 0.1, h)
        w[p + "ffn_norm.weight"] = 1 + rng.normal(0, 0.1, h)
        w[p + "attn_q.weight"] = rng.normal(0, 0.5, (h, h))
        w[p + "attn_k.weight"] = rng.normal(0, 0.5, (kv, h))
        w[p + "attn_v.weight"] = rng.normal(0, 0.5, (kv, h))
        w[p + "attn_output.weight"] = rng.normal(0, 0.5, (h, h))
        w[p + "ffn_gate.weight"] = rng.normal(0, 0.5, (f, h))
        w[p + "ffn_up.weight"] = rng.normal(0, 0.5, (f, h))
        w[p + "ffn_down.weight"] = rng.normal(0, 0.5, (h, f))
    return {k: v.astype(np.float32) for k, v in w.items()}


def write_gguf(path, qtype_name, weights=None, tied=True, pad_id=2, chat_template=CHATML, permute=True):
    """A GGUF file of the fixture model; 2-D weights stored as `qtype_name`, norms F32 (as llama.cpp does)."""
    import gguf
    from gguf.quants import quantize

    from lorakit.gguf_model import rope_permute

    weights = dict(weights or hf_weights())
    if not tied:
        weights["output.weight"] = np.random.default_rng(9).normal(0, 0.5, weights["token_embd.weight"].shape) \
            .astype(np.float32)
    qtype = getattr(gguf.GGMLQuantizationType, qtype_name)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(DIMS["layers"])
    w.add_context_length(256)
    w.add_embedding_length(DIMS["hidden"])
    w.add_feed_forward_length(DIMS["ffn"])
    w.add_head_count(DIMS["heads"])
    w.add_head_count_kv(DIMS["kv_heads"])
    w.add_rope_freq_base(100000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(DIMS["hidden"] // DIMS["heads"])
    vocab = vocabulary()
    w.add_vocab_size(len(vocab))
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(vocab)
    w.add_token_types([3] * len(SPECIALS) + [1] * (len(vocab) - len(SPECIALS)))
    w.add_token_merges(MERGES)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_pad_token_id(pad_id)
    w.add_add_bos_token(False)
    if chat_template:
        w.add_chat_template(chat_template)
    for name, arr in weights.items():
        if permute and name.endswith("attn_q.weight"):
            arr = rope_permute(arr, DIMS["heads"])
        elif permute and name.endswith("attn_k.weight"):
            arr = rope_permute(arr, DIMS["kv_heads"])
        if arr.ndim == 1 or qtype_name == "F32":
            w.add_tensor(name, arr.astype(np.float32))
        elif qtype_name == "F16":
            w.add_tensor(name, arr.astype(np.float16))
        else:
            w.add_tensor(name, quantize(arr, qtype), raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
