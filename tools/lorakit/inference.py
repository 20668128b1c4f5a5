"""Batched greedy inference with the kit's templates, shared by predict.py and bench_predict.py (and package.py,
which rebuilds the config a prediction file was made with): input rows, the predict config, the tokenizer and
model checks, prompt encoding and completion decoding. predict.py's doc says what each rule is for.
"""

import math
import sys
from pathlib import Path

from .config import apply_overrides, get_path, load_config, model_config, set_path
from .io import KitError, iter_jsonl, read_json
from .records import DataReport, LoraSpec, record_id

SQUAD_TEMPLATE = "squad"


class Item:
    __slots__ = ("id", "family", "problem", "template", "bos", "lineno")

    def __init__(self, rid, family, problem, template, bos, lineno):
        self.id, self.family, self.problem, self.template, self.bos, self.lineno = (
            rid, family, problem, template, bos, lineno)


def read_items(path, template, bos="auto", limit=None):
    """Rows of the input as Items (duplicate ids and rows with nothing to ask are errors naming the line)."""
    items, seen = [], {}
    for k, (lineno, row) in enumerate(iter_jsonl(path), 1):
        rid = record_id(row, k)
        if rid in seen:
            raise KitError("%s:%d: duplicate id %r (first at line %d)" % (path, lineno, rid, seen[rid]))
        seen[rid] = lineno
        problem = row.get("problem")
        if isinstance(problem, str) and problem.strip():
            tmpl, fam = template, row.get("family")
            if not fam:
                fam = _classify(problem)
            use_bos = bos != "no"
        elif isinstance(row.get("context"), str) and isinstance(row.get("question"), str):
            tmpl, fam, problem = SQUAD_TEMPLATE, row.get("family") or "squad", {
                "context": row["context"], "question": row["question"]}
            use_bos = bos == "yes"
        else:
            raise KitError("%s:%d: needs a non-empty string 'problem' (or 'context' and 'question')" % (path, lineno))
        items.append(Item(rid, str(fam), problem, tmpl, use_bos, lineno))
        if limit and len(items) >= limit:
            break
    if not items:
        raise KitError(f"{path}: no records")
    return items


def _classify(problem):
    from lorakit.families import classify

    try:
        return classify(problem)
    except Exception:  # noqa: BLE001 - a family label is informative only; scoring classifies gold itself
        return "unknown"


def token_report_budget(path):
    """max_new_tokens from convert_dataset.py's data report (records.DataReport.answer_token_budget): every answer
    the recipe trained on fits."""
    rep = read_json(path)
    if not isinstance(rep, dict):
        raise KitError("%s: not a JSON object" % path)
    budget = DataReport(rep).answer_token_budget
    if budget is None:
        raise KitError("%s: no answer-token budget (tokens.answer_tokens.all.max); pass --max-new-tokens" % path)
    return budget

def resolve_config(config, overrides=(), batch_size=1, max_new_tokens=None, min_new_tokens=None,
                   token_report=None, adapter=None, no_pet=False, checkpoint=None):
    """The predict config of a profile (or yaml) with `overrides`: greedy decoding, batch size, max/min new
    tokens (given, else the token report's budget, else the config's), use_past off on CPU, pet_config from the
    adapter's own config (`adapter`), or dropped for a checkpoint without LoRA tensors. -> (cfg, info)."""
    cfg = load_config(config, list(overrides or []))
    mc = model_config(cfg)
    source = "config"
    max_new = mc.get("max_new_tokens")
    if max_new_tokens is not None:
        max_new, source = max_new_tokens, "--max-new-tokens"
    elif token_report:
        max_new, source = token_report_budget(token_report), f"token report {token_report}"
    if not isinstance(max_new, int) or max_new < 1:
        raise KitError(f"max_new_tokens must be a positive integer (got {max_new!r} from {source})")
    min_new = min_new_tokens if min_new_tokens is not None else int(mc.get("min_new_tokens") or 1)
    if min_new < 1:
        raise KitError("min_new_tokens must be >= 1 (0 lets greedy decoding stop at once: empty answers)")
    if min_new > max_new:
        raise KitError("min_new_tokens %d > max_new_tokens %d" % (min_new, max_new))
    device = str(get_path(cfg, "context.device_target", "CPU"))
    use_past_profile = bool(mc.get("use_past"))
    settings = ["model.model_config.batch_size=%d" % batch_size,
                 "model.model_config.max_new_tokens=%d" % max_new,
                 "model.model_config.min_new_tokens=%d" % min_new,
                 "model.model_config.do_sample=False", "model.model_config.top_k=1",
                 "runner_config.batch_size=%d" % batch_size, "run_mode=predict"]
    notes = []
    if device == "CPU" and mc.get("use_past"):
        settings.append("model.model_config.use_past=False")
        notes.append("use_past forced off on CPU (Ascend-only KV-cache ops)")
    apply_overrides(cfg, settings)
    no_pet = bool(no_pet)
    if adapter:
        apply_adapter_config(cfg, adapter)
        no_pet = False
    elif not no_pet and model_config(cfg).get("pet_config") and checkpoint and not holds_lora(checkpoint):
        # a folded (or base) checkpoint: a LoRA branch would only add zero-initialised B matrices and cells
        no_pet = True
        notes.append("pet_config dropped: %s holds no LoRA tensors (folded or base weights)" % Path(checkpoint).name)
    if no_pet:
        model_config(cfg).pop("pet_config", None)
    return cfg, {"max_new_tokens": max_new, "max_new_tokens_from": source, "min_new_tokens": min_new,
                 "device": device, "use_past": bool(model_config(cfg).get("use_past")),
                 "use_past_profile": use_past_profile, "no_pet": no_pet, "notes": notes}


def holds_lora(checkpoint):
    """True when the checkpoint has LoRA tensors (a training checkpoint); read from its index, no tensor data."""
    from lorakit.ckpt_io import ckpt_index, is_lora

    return any(is_lora(name) for name in ckpt_index(checkpoint))


def check_use_past(cfg, info, batch_size):
    """A profile with use_past on (yaml/llama3-8b-predict.yaml) must fit the KV cache it builds on Ascend, checked
    on every device (on CPU use_past is forced off, so this is where a CPU run sees it): one line per problem."""
    from lorakit.mf import use_past_problems

    if not info.get("use_past_profile"):
        return
    problems = use_past_problems(dict(model_config(cfg), use_past=True), batch_size)
    if problems:
        raise KitError("config %s: %s" % (info.get("config", ""), "; ".join(problems)))


def adapter_files(adapter):
    from .ckpt_io import ADAPTER_CKPT, ADAPTER_CONFIG

    d = Path(adapter)
    if not d.is_dir():
        raise KitError(f"--adapter {adapter}: not a folder (expects {ADAPTER_CKPT} + {ADAPTER_CONFIG})")
    for name in (ADAPTER_CKPT, ADAPTER_CONFIG):
        if not (d / name).is_file():
            raise KitError(f"--adapter {adapter}: missing {name}")
    return d / ADAPTER_CKPT, d / ADAPTER_CONFIG


def apply_adapter_config(cfg, adapter):
    """pet_config from the adapter's own config (rank, alpha, targets): the network must match the weights."""
    from lorakit.ckpt_io import read_adapter_config

    _, conf = adapter_files(adapter)
    spec = LoraSpec.from_pet_config(read_adapter_config(conf))
    spec.rank = int(spec.rank)
    set_path(cfg, "model.model_config.pet_config", spec.to_pet_config(model_config(cfg).get("pet_config")))


def check_tokenizer(tok, cfg):
    mc = model_config(cfg)
    problems = []
    for name, got in (("bos_token_id", tok.bos_id), ("eos_token_id", tok.eos_id), ("pad_token_id", tok.pad_id)):
        want = mc.get(name)
        if want is not None and int(want) != int(got):
            problems.append(f"{name} {want} != tokenizer's {got}")
    if mc.get("vocab_size") is not None and tok.n_vocab > int(mc["vocab_size"]):
        problems.append("tokenizer has %d ids > vocab_size %s" % (tok.n_vocab, mc["vocab_size"]))
    if problems:
        raise KitError("tokenizer does not fit the model config: " + "; ".join(problems))


def load_network(cfg, checkpoint, adapter):
    import contextlib

    from lorakit import mf

    mf.quiet_logs()
    with contextlib.redirect_stdout(sys.stderr):  # loggers created while building bind to stderr
        net = mf.build_model(cfg, checkpoint=checkpoint)
    mf.quiet_mindformers()
    if adapter:
        import mindspore as ms

        ckpt, _ = adapter_files(adapter)
        params = ms.load_checkpoint(str(ckpt))
        _, unused = ms.load_param_into_net(net, params, strict_load=False)
        if unused:
            raise KitError("%s: %d tensors have no place in the network (e.g. %s): wrong base or pet_config"
                           % (ckpt, len(unused), ", ".join(sorted(unused)[:3])))
    return net


def encode_items(tok, items, seq_length, max_new, overlong):
    """Token ids per item (BOS when the item wants it); prompts that leave no room for max_new are cut from the
    left (keeping the question at their end), skipped or refused, as --overlong says."""
    from lorakit.templates import encode_prompt

    limit = seq_length - max_new
    if limit < 2:
        raise KitError("seq_length %d leaves no room for a prompt with max_new_tokens %d" % (seq_length, max_new))
    out, truncated, skipped = {}, [], []
    for it in items:
        ids = encode_prompt(tok, it.template, it.problem)
        if not it.bos:
            ids = ids[1:]
        if len(ids) > limit:
            if overlong == "error":
                raise KitError("line %d (id %s): prompt has %d tokens, only %d fit before %d new tokens in "
                               "seq_length %d (use --overlong truncate|skip)" % (it.lineno, it.id, len(ids), limit,
                                                                                 max_new, seq_length))
            if overlong == "skip":
                skipped.append(it.id)
                continue
            ids = ([ids[0]] if it.bos else []) + ids[len(ids) - limit + (1 if it.bos else 0):]
            truncated.append(it.id)
        out[it.id] = ids
    return out, truncated, skipped


SEQ_QUANTUM = 16


def fit_seq_length(cfg, prompts, max_new, mode="auto"):
    """Set model seq_length to what the rows need (longest prompt + max_new, rounded up to 16, at most the
    profile's): without a KV cache every decoding step runs the whole padded sequence, so a shorter one is
    proportionally cheaper. RoPE positions and causal masking make the greedy results the same. Returns it."""
    mc = model_config(cfg)
    cap = int(mc["seq_length"])
    # the KV cache holds whole blocks: with use_past, a multiple of block_size as well
    quantum = SEQ_QUANTUM * int(mc.get("block_size") or SEQ_QUANTUM) // math.gcd(
        SEQ_QUANTUM, int(mc.get("block_size") or SEQ_QUANTUM)) if mc.get("use_past") else SEQ_QUANTUM
    if mode == "auto":
        need = max(len(p) for p in prompts) + max_new if prompts else cap
        seq = min(cap, -(-need // quantum) * quantum)
    elif mode == "config":
        seq = cap
    else:
        seq = int(mode)
        if seq < 2:
            raise KitError("--seq-length must be auto, config or an integer >= 2")
    mc["seq_length"] = seq
    return seq


def decode_completion(tok, new_ids, max_new):
    """Text of the new tokens: at most max_new, special tokens dropped."""
    return tok.decode([t for t in new_ids[:max_new] if not tok.is_special(t)])


def prompt_text(it, tok):
    from .templates import render_prompt

    return render_prompt(it.template, it.problem, tok)
