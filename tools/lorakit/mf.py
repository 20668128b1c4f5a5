"""MindFormers glue shared by the tools that build a model outside the Trainer (predict, tests, checks).

Everything goes through MindFormers itself: `MindFormerConfig`, `build_context`, `build_network`
(which applies `pet_config` through `mindformers.pet.get_pet_model`, exactly as the Trainer does) and
the model's own `generate`. MindSpore/MindFormers are imported inside the functions so that the rest
of lorakit imports on machines without them.
"""

import copy
import logging
import os
import sys

import numpy as np

from .io import KitError
from .params import LORA_TAG

_CONTEXT_SET = False


def quiet_logs():
    """MindFormers logs every generation config at INFO; tools show their own progress instead."""
    os.environ.setdefault("GLOG_v", "3")
    logging.getLogger("mindformers").setLevel(logging.WARNING)


def to_mf_config(cfg):
    from mindformers import MindFormerConfig

    return MindFormerConfig(**copy.deepcopy(cfg))


def set_context(cfg):
    """Set the MindSpore context from the config once per process (device, mode, parallel)."""
    global _CONTEXT_SET
    if _CONTEXT_SET:
        return
    from mindformers.core.context import build_context

    build_context(to_mf_config(cfg))
    _CONTEXT_SET = True


# Parameters use_past creates as the KV cache (PagedAttentionMgr): runtime buffers, never in a checkpoint.
KV_CACHE_SUFFIXES = (".paged_attention_mgr.key_cache", ".paged_attention_mgr.value_cache")
# The dtype MindFormers 1.1 (and the contest fork) builds that cache in: InferAttention is created without a
# compute_dtype, so PagedAttentionMgr keeps its float16 default whatever the model's compute_dtype is.
KV_CACHE_DTYPE = "float16"
# LlamaConfig's defaults for the paged KV cache
KV_BLOCK_SIZE, KV_NUM_BLOCKS = 16, 512


def not_from_checkpoint(name):
    """Network parameters a checkpoint need not hold: LoRA tensors (a base checkpoint has none; they keep
    their initial values) and the use_past KV cache."""
    return LORA_TAG in name or name.endswith(KV_CACHE_SUFFIXES)


def use_past_problems(mc, batch_size=None):
    """What stops a use_past (KV cache) model config on Ascend, as one line each (empty when fine or use_past
    is off). ReshapeAndCache needs key/value in the cache's dtype (float16, see KV_CACHE_DTYPE) and MindFormers'
    BlockTables refuses batch x seq_length beyond num_blocks x block_size at the first generate call."""
    if not mc.get("use_past"):
        return []
    problems = []
    compute = str(mc.get("compute_dtype") or "float16")
    if compute != KV_CACHE_DTYPE:
        problems.append("use_past needs model_config.compute_dtype %s (the KV cache is %s; ReshapeAndCache "
                        "wants equal dtypes), got %s" % (KV_CACHE_DTYPE, KV_CACHE_DTYPE, compute))
    pet = mc.get("pet_config")
    if isinstance(pet, dict) and pet.get("compute_dtype") not in (None, KV_CACHE_DTYPE):
        problems.append("use_past needs pet_config.compute_dtype %s (added to the %s attention inputs), got %s"
                        % (KV_CACHE_DTYPE, KV_CACHE_DTYPE, pet.get("compute_dtype")))
    block = int(mc.get("block_size") or KV_BLOCK_SIZE)
    blocks = int(mc.get("num_blocks") or KV_NUM_BLOCKS)
    batch = int(batch_size if batch_size is not None else mc.get("batch_size") or 1)
    seq = int(mc.get("seq_length") or 0)
    if seq % block:
        problems.append("use_past needs seq_length %d to be a multiple of block_size %d" % (seq, block))
    if batch * seq > blocks * block:
        problems.append("KV cache too small: batch %d x seq_length %d = %d tokens > num_blocks %d x block_size %d "
                        "= %d (raise model_config.num_blocks to %d)"
                        % (batch, seq, batch * seq, blocks, block, blocks * block, -(-batch * seq // block)))
    return problems


def build_model(cfg, checkpoint=None, strict=True):
    """Build the configured network (with LoRA when pet_config is set) and load `checkpoint` into it.

    A base checkpoint (no LoRA tensors) may be loaded into a LoRA network: the LoRA tensors keep their
    initial values (A random, B zero). With strict=True every other parameter (but the use_past KV cache)
    must come from the checkpoint, so a wrong or truncated file fails here instead of silently leaving
    random weights.
    """
    import mindspore as ms
    from mindformers.models.build_model import build_network

    set_context(cfg)
    mfc = to_mf_config(cfg)
    mfc.model.model_config.checkpoint_name_or_path = ""
    net = build_network(mfc.model)
    share_predict_jit_config(net)
    if checkpoint:
        if not os.path.isfile(checkpoint):
            raise KitError("checkpoint not found: %s" % checkpoint)
        params = ms.load_checkpoint(checkpoint)
        not_loaded, _ = ms.load_param_into_net(net, params, strict_load=False)
        missing = [n for n in not_loaded if not not_from_checkpoint(n)]
        if strict and missing:
            raise KitError("%s lacks %d parameters of the network, e.g. %s"
                           % (checkpoint, len(missing), ", ".join(missing[:3])))
    net.set_train(False)
    return net


def share_predict_jit_config(net):
    """With use_past, MindFormers sets the kernel-by-kernel predict jit config (jit_level O0, infer_boost on)
    on the Llama model only; a LoRA wrapper (PetModel) runs `generate` with its own, empty, config, so it
    never fills block_tables/slot_mapping and ReshapeAndCache gets None. Give the wrapper the model's config."""
    inner = getattr(getattr(net, "pet_model", None), "lora_model", None)
    if inner is None or not getattr(getattr(inner, "config", None), "use_past", False):
        return
    jit = getattr(inner, "jit_config_dict", None) or {}
    if jit.get("jit_level") and not getattr(net, "jit_config_dict", None):
        from mindspore import JitConfig

        net.set_jit_config(JitConfig(jit_level=jit["jit_level"], infer_boost=jit.get("infer_boost", "off")))


def quiet_mindformers():
    """MindFormers and mindpet log every generate call at INFO on stdout; keep stdout for --json and show only
    warnings, on stderr."""
    import logging

    import mindformers  # noqa: F401 - creates its loggers

    for name in ("mindformers", "mindpet", "SDK", ""):
        lg = logging.getLogger(name)
        for h in lg.handlers:
            if isinstance(h, logging.StreamHandler) and getattr(h, "stream", None) is sys.stdout:
                h.setStream(sys.stderr)
            if isinstance(h, logging.StreamHandler):
                h.setLevel(logging.ERROR)  # its per-call warnings (top_k, max_length clamp) repeat every batch




def row_budget_processor(prompts, tok, min_new, max_new):
    """A MindFormers logits processor giving every row its *own* token budget.

    MindFormers 1.1 applies processors row by row, but its MinNewTokensLengthLogitsProcessor measures new tokens
    from the batch's longest prompt, and its loop runs every row to `longest prompt + max_new_tokens`: in a
    batch, a short prompt's EOS is suppressed for longer than min_new_tokens and it keeps decoding after its
    budget. This one finds each row's prompt (by its token prefix), suppresses EOS until min_new new tokens,
    forces EOS once max_new are out (so the batch stops after max_new + 1 steps), and never lets the model emit
    BOS or pad (decoding drops special tokens anyway; a generated pad would confuse the valid-length logic).
    """
    from mindformers.generation.logits_process import LogitsProcessor

    by_len = {}
    for p in prompts:
        by_len.setdefault(len(p), set()).add(tuple(int(t) for t in p))
    lengths = sorted(by_len, reverse=True)
    eos, pad, banned = int(tok.eos_id), int(tok.pad_id), [int(tok.bos_id), int(tok.pad_id)]

    class RowBudget(LogitsProcessor):
        def __call__(self, input_ids, scores):
            for r in range(input_ids.shape[0]):
                row = input_ids[r]
                nz = np.flatnonzero(row != pad)
                cur = int(nz[-1]) + 1 if nz.size else 0
                plen = next((n for n in lengths if tuple(int(t) for t in row[:n]) in by_len[n]), cur)
                new = cur - plen
                scores[r, banned] = -np.inf
                if new < min_new:
                    scores[r, eos] = -np.inf
                elif new >= max_new:
                    scores[r, :] = -np.inf
                    scores[r, eos] = 0.0
            return scores

    return RowBudget()


def generate_rows(net, tok, prompts, max_new, min_new, pad_to=None):
    """Greedy completions (token lists, at most max_new, cut at EOS) for one batch of prompt token lists.

    Through the model's own MindFormers `generate` (right-padded rows, as it wants them), with
    row_budget_processor so a row's result does not depend on the other rows of its batch. With pad_to, the
    batch is filled with copies of its first prompt so every call has the same shape (no recompilation for a
    short last batch); the fillers are dropped.
    """
    from mindformers.generation.logits_process import LogitsProcessorList

    rows = [list(p) for p in prompts]
    real = len(rows)
    if pad_to and real < pad_to:
        rows += [rows[0]] * (pad_to - real)
    width = max(len(p) for p in rows)
    batch = np.full((len(rows), width), tok.pad_id, dtype=np.int32)
    for i, p in enumerate(rows):
        batch[i, : len(p)] = p
    procs = LogitsProcessorList([row_budget_processor(rows, tok, min_new, max_new)])
    outs = net.generate(batch.tolist(), max_new_tokens=int(max_new), min_new_tokens=0, do_sample=False,
                        pad_token_id=int(tok.pad_id), eos_token_id=int(tok.eos_id), logits_processor=procs)
    result = []
    for p, out in zip(rows[:real], outs):
        new = [int(t) for t in list(out)[len(p):]]
        if tok.eos_id in new:
            new = new[: new.index(tok.eos_id)]
        result.append([t for t in new if t != tok.pad_id][:max_new])
    return result


def token_nll(net, rows, seq_length, pad_id):
    """Negative log-likelihood (nats) of each token of each row given the tokens before it, through the model's
    own forward pass (eval mode: logits of every position). rows: token lists of at most seq_length tokens, run
    one at a time padded with pad_id to seq_length (the network's compiled shape). Returns one float64 array per
    row (len(row) - 1 values)."""
    import mindspore as ms

    out = []
    for row in rows:
        n = len(row)
        if not 2 <= n <= seq_length:
            raise KitError("token_nll: a row of %d tokens (needs 2..%d)" % (n, seq_length))
        x = np.full((1, seq_length), pad_id, np.int32)
        x[0, :n] = row
        logits = net(ms.Tensor(x))[0].asnumpy().reshape(seq_length, -1)[: n - 1].astype(np.float64)
        top = logits.max(-1, keepdims=True)
        lse = np.log(np.exp(logits - top).sum(-1)) + top[:, 0]
        out.append(lse - logits[np.arange(n - 1), np.asarray(row[1:])])
    return out
