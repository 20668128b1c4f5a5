#!/usr/bin/env python3
"""Batched greedy inference through MindFormers: problems JSONL -> predictions JSONL {id, family, prompt, completion}.

  predict.py --input test.jsonl --out runs/tiny/eval/predictions.jsonl --config tiny \\
             --checkpoint runs/tiny/train/.../tiny.ckpt --tokenizer tiny --template vicuna --batch-size 16

Input rows: math problems {problem[, id, solution]} rendered with --template (the one the model was trained
with, lorakit.templates, so train and inference prompts cannot drift), or SQuAD records from `squad.py prepare`
{id, context, question} rendered with the contest's SQuAD prompt. A row's id is its `id`, else its 1-based
record number. The model sees BOS + prompt (as in training; SQuAD records without BOS, as the stock eval feeds
them; --bos overrides), decodes greedily with min_new_tokens >= 1 and max_new_tokens (--max-new-tokens, else the
recipe's token report, else the config), and the completion is only the new tokens, cut at EOS, specials dropped:
the prompt is never echoed. Every row's completion is also cut to max_new_tokens (in a batch MindFormers lets
short prompts run on to the longest prompt's limit), so results do not depend on the batch size.

Resumable: ids already in --out are skipped, new rows are appended one batch at a time (whole lines, flushed and
fsynced); a truncated last line left by a crash is dropped before appending. Never duplicated.
On CPU use_past is forced off (the KV-cache path uses Ascend-only ops); on Ascend the profile's setting is kept
(yaml/llama3-8b-predict.yaml turns it on). A use_past profile is checked on every device before anything is built:
float16 compute (MindFormers builds the KV cache in float16) and batch x seq_length within num_blocks x block_size.
A checkpoint without LoRA tensors (folded by `ckpt.py fold-lora`, or a base model) is run without pet_config, so no
LoRA branch is built; --adapter always builds one.
"""

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

from lorakit.config import apply_overrides, dump_config, get_path, load_config, model_config, set_path
from lorakit.io import KitError, atomic_open, file_fingerprint, iter_jsonl, read_json, run_main, write_json
from lorakit.metrics import record_id

SQUAD_TEMPLATE = "squad"


# ---------------------------------------------------------------------------------------------- inputs

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


def done_ids(out, known):
    """Ids already predicted in `out`. A truncated last line (crash mid-write) is cut off; anything else wrong is
    an error. Ids not in the input mean the file belongs to another input."""
    out = Path(out)
    if not out.exists():
        return set(), 0
    raw = out.read_bytes()
    dropped = 0
    if raw and not raw.endswith(b"\n"):
        keep = raw[: raw.rfind(b"\n") + 1]
        with atomic_open(out, "wb") as fh:
            fh.write(keep)
        dropped = 1
        print(f"predict: {out}: dropped a truncated last line (an interrupted run); it will be redone",
              file=sys.stderr)
    ids = set()
    for lineno, row in iter_jsonl(out):
        rid = row.get("id")
        if rid in (None, "") or not isinstance(row.get("completion"), str):
            raise KitError("%s:%d: not a prediction row (needs id and completion)" % (out, lineno))
        rid = str(rid)
        if rid in ids:
            raise KitError("%s:%d: duplicate id %r" % (out, lineno, rid))
        if rid not in known:
            raise KitError("%s:%d: id %r is not in the input: --out belongs to another input file" % (out, lineno, rid))
        ids.add(rid)
    return ids, dropped


# ---------------------------------------------------------------------------------------------- config

def token_report_budget(path):
    """max_new_tokens from the data report of convert_dataset.py: the longest training answer in tokens
    (`tokens.answer_tokens.all.max`, which counts the EOS), so every answer the recipe trained on fits; a top-level
    `max_new_tokens` wins when present."""
    rep = read_json(path)
    if not isinstance(rep, dict):
        raise KitError("%s: not a JSON object" % path)
    if isinstance(rep.get("max_new_tokens"), int) and rep["max_new_tokens"] > 0:
        return int(rep["max_new_tokens"])
    tokens = rep.get("tokens")
    node = tokens.get("answer_tokens") if isinstance(tokens, dict) else None
    node = node.get("all") if isinstance(node, dict) else None
    if isinstance(node, dict) and isinstance(node.get("max"), int) and node["max"] > 0:
        return int(node["max"])
    raise KitError("%s: no answer-token budget (tokens.answer_tokens.all.max); pass --max-new-tokens" % path)


def resolve_config(args):
    cfg = load_config(args.config, args.set or [])
    mc = model_config(cfg)
    source = "config"
    max_new = mc.get("max_new_tokens")
    if args.max_new_tokens is not None:
        max_new, source = args.max_new_tokens, "--max-new-tokens"
    elif args.token_report:
        max_new, source = token_report_budget(args.token_report), f"token report {args.token_report}"
    if not isinstance(max_new, int) or max_new < 1:
        raise KitError(f"max_new_tokens must be a positive integer (got {max_new!r} from {source})")
    min_new = args.min_new_tokens if args.min_new_tokens is not None else int(mc.get("min_new_tokens") or 1)
    if min_new < 1:
        raise KitError("min_new_tokens must be >= 1 (0 lets greedy decoding stop at once: empty answers)")
    if min_new > max_new:
        raise KitError("min_new_tokens %d > max_new_tokens %d" % (min_new, max_new))
    device = str(get_path(cfg, "context.device_target", "CPU"))
    use_past_profile = bool(mc.get("use_past"))
    overrides = ["model.model_config.batch_size=%d" % args.batch_size,
                 "model.model_config.max_new_tokens=%d" % max_new,
                 "model.model_config.min_new_tokens=%d" % min_new,
                 "model.model_config.do_sample=False", "model.model_config.top_k=1",
                 "runner_config.batch_size=%d" % args.batch_size, "run_mode=predict"]
    notes = []
    if device == "CPU" and mc.get("use_past"):
        overrides.append("model.model_config.use_past=False")
        notes.append("use_past forced off on CPU (Ascend-only KV-cache ops)")
    apply_overrides(cfg, overrides)
    no_pet = bool(args.no_pet)
    checkpoint = getattr(args, "checkpoint", None)
    if args.adapter:
        apply_adapter_config(cfg, args.adapter)
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
    from lorakit.ckpt_io import ADAPTER_CKPT, ADAPTER_CONFIG

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
    ac = read_adapter_config(conf)
    pet = dict(model_config(cfg).get("pet_config") or {})
    pet.update({"pet_type": "lora", "lora_rank": int(ac["lora_rank"]), "lora_alpha": ac["lora_alpha"],
                "target_modules": ac["target_modules"]})
    if "lora_dropout" in ac:
        pet["lora_dropout"] = ac["lora_dropout"]
    set_path(cfg, "model.model_config.pet_config", pet)


# ---------------------------------------------------------------------------------------------- model

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


# ---------------------------------------------------------------------------------------------- main

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", required=True, help="problems JSONL (problem[, id]) or squad records (id, context, "
                                                   "question)")
    ap.add_argument("--out", required=True, help="predictions JSONL (appended to; done ids are skipped)")
    ap.add_argument("--config", default="tiny", help="profile name (yaml/<name>.yaml) or yaml path (default tiny)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override, repeatable")
    ap.add_argument("--checkpoint", default=None, help="model checkpoint (base, trained with LoRA, or folded)")
    ap.add_argument("--adapter", default=None, help="adapter folder (adapter.ckpt + adapter_config.json) loaded "
                                                    "over the checkpoint; its config sets pet_config")
    ap.add_argument("--no-pet", action="store_true", help="build the network without pet_config (automatic when --checkpoint holds no LoRA "
                         "tensors, e.g. a folded one)")
    ap.add_argument("--tokenizer", default="tiny", help="tokenizer.model path, an imported model's tokenizer.json "
                                                        "(or its folder), or `tiny` (default)")
    ap.add_argument("--template", default=None,
                    help="prompt template for `problem` rows: the one the model was trained with (default: the "
                         "`template` of --token-report, else lorakit.templates.DEFAULT_TEMPLATE, vicuna)")
    ap.add_argument("--batch-size", type=int, default=8, help="rows per generate call (default 8)")
    ap.add_argument("--max-new-tokens", type=int, default=None, help="default: --token-report, else the config")
    ap.add_argument("--token-report", default=None,
                    help="convert_dataset.py's data report: answer-token budget and the training template")
    ap.add_argument("--min-new-tokens", type=int, default=None, help=">= 1 (default: config, else 1)")
    ap.add_argument("--bos", choices=("auto", "yes", "no"), default="auto",
                    help="auto: BOS before problems (as training rows), none before SQuAD records (as the stock eval)")
    ap.add_argument("--overlong", choices=("truncate", "skip", "error"), default="truncate",
                    help="prompt longer than seq_length - max_new_tokens: keep its end (default), skip it, or fail")
    ap.add_argument("--seq-length", default="auto",
                    help="auto (default): the longest prompt + max_new_tokens rounded up to 16, at most the profile's; "
                         "config: the profile's; or a number")
    ap.add_argument("--limit", type=int, default=None, help="only the first N input rows")
    ap.add_argument("--dump-config", default=None, help="write the resolved predict config (yaml) here")
    ap.add_argument("--record", default=None, help="run record JSON (default: <out>.run.json)")
    ap.add_argument("--json", action="store_true", help="print the run record as one JSON object")
    args = ap.parse_args(argv)
    if args.batch_size < 1:
        raise KitError("--batch-size must be >= 1")

    from lorakit.templates import DEFAULT_TEMPLATE, TEMPLATES
    from lorakit.tokenizer import load_tokenizer

    trained = None
    if args.token_report:
        rep = read_json(args.token_report)
        trained = rep.get("template") if isinstance(rep, dict) and isinstance(rep.get("template"), str) else None
    template = args.template or trained or DEFAULT_TEMPLATE
    template_from = "--template" if args.template else ("token report" if trained else "default")
    if trained and template != trained:
        print("predict: warning: template %r differs from the one the data was made with (%r): train/inference "
              "prompt mismatch" % (template, trained), file=sys.stderr)
    if template not in TEMPLATES:
        raise KitError("unknown template {!r} (known: {})".format(template, ", ".join(TEMPLATES)))
    if not args.checkpoint:
        print("predict: warning: no --checkpoint: the network keeps its random initial weights", file=sys.stderr)
    if args.checkpoint and not os.path.isfile(args.checkpoint):
        raise KitError(f"checkpoint not found: {args.checkpoint}")
    if args.adapter:
        adapter_files(args.adapter)
    cfg, info = resolve_config(args)
    items = read_items(args.input, template, args.bos, args.limit)
    done, dropped = done_ids(args.out, {it.id for it in items})
    pending = [it for it in items if it.id not in done]
    tok = load_tokenizer(args.tokenizer)
    check_tokenizer(tok, cfg)
    seq_length = int(model_config(cfg)["seq_length"])
    max_new, min_new = info["max_new_tokens"], info["min_new_tokens"]
    encoded, truncated, skipped = encode_items(tok, pending, seq_length, max_new, args.overlong)
    if args.dump_config:
        dump_config(cfg, args.dump_config)

    record = {"input": str(args.input), "out": str(args.out), "config": str(args.config), "overrides": args.set,
              "template": template, "template_from": template_from, "trained_template": trained, "bos": args.bos, "batch_size": args.batch_size, "records": len(items),
              "already_done": len(done), "truncated_line_dropped": dropped, "predicted": 0,
              "prompts_truncated": len(truncated), "prompts_skipped": len(skipped), "skipped_ids": skipped[:20],
              "checkpoint": file_fingerprint(args.checkpoint) if args.checkpoint else None,
              "checkpoint_path": args.checkpoint, "adapter": args.adapter, "tokenizer": str(args.tokenizer),
              "tokenizer_sha256": tok.sha256, "seq_length": seq_length}
    record.update(info)
    todo = [it for it in pending if it.id in encoded]
    record["seq_length_run"] = fit_seq_length(cfg, [encoded[it.id] for it in todo], max_new, args.seq_length)
    check_use_past(cfg, dict(info, config=args.config), args.batch_size)
    if skipped:  # written as empty answers (scored wrong, never retried) so every id appears exactly once
        skip = set(skipped)
        rows = [{"id": it.id, "family": it.family, "prompt": _prompt_text(it, tok), "completion": "",
                 "skipped": "prompt longer than seq_length - max_new_tokens"} for it in pending if it.id in skip]
        _append(args.out, [json.dumps(r, ensure_ascii=False) + "\n" for r in rows])
    stats = {"generated_tokens": 0, "seconds": 0.0, "first_batch_seconds": None, "first_batch_tokens": 0}
    if todo:
        from lorakit import mf

        net = load_network(cfg, args.checkpoint, args.adapter)
        from tqdm import tqdm

        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        cut = set(truncated)
        bar = tqdm(total=len(todo), unit="row", desc="predict", file=sys.stderr, dynamic_ncols=True)
        with open(out, "a", encoding="utf-8", newline="\n") as fh:
            for start in range(0, len(todo), args.batch_size):
                batch = todo[start: start + args.batch_size]
                t0 = time.perf_counter()
                news = mf.generate_rows(net, tok, [encoded[it.id] for it in batch], max_new, min_new,
                                     pad_to=args.batch_size)
                dt = time.perf_counter() - t0
                lines = []
                ntok = 0
                for it, new in zip(batch, news):
                    ntok += len(new)
                    row = {"id": it.id, "family": it.family, "prompt": _prompt_text(it, tok),
                           "completion": decode_completion(tok, new, max_new)}
                    if it.id in cut:
                        row["prompt_truncated"] = True
                    lines.append(json.dumps(row, ensure_ascii=False) + "\n")
                _write_lines(fh, lines)
                if stats["first_batch_seconds"] is None:
                    stats["first_batch_seconds"], stats["first_batch_tokens"] = dt, ntok
                stats["generated_tokens"] += ntok
                stats["seconds"] += dt
                record["predicted"] += len(batch)
                bar.update(len(batch))
                bar.set_postfix(tok_s="%.1f" % (stats["generated_tokens"] / max(stats["seconds"], 1e-9)))
        bar.close()
    record.update(stats)
    record["tokens_per_s"] = stats["generated_tokens"] / stats["seconds"] if stats["seconds"] else None
    later_s = stats["seconds"] - (stats["first_batch_seconds"] or 0.0)
    later_t = stats["generated_tokens"] - stats["first_batch_tokens"]
    record["tokens_per_s_after_first_batch"] = later_t / later_s if later_s > 0 and later_t > 0 else None
    write_json(args.record or str(args.out) + ".run.json", record)
    if args.json:
        print(json.dumps(record, ensure_ascii=False))
    else:
        print("predict: %d new predictions (%d already done, %d prompts truncated, %d skipped) -> %s"
              % (record["predicted"], len(done), len(truncated), len(skipped), args.out), file=sys.stderr)
    return 0


def _write_lines(fh, lines):
    """Whole lines in one write, flushed and fsynced: a crash leaves at most one truncated last line."""
    fh.write("".join(lines))
    fh.flush()
    os.fsync(fh.fileno())


def _append(path, lines):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8", newline="\n") as fh:
        _write_lines(fh, lines)


def _prompt_text(it, tok):
    from lorakit.templates import render_prompt

    return render_prompt(it.template, it.problem, tok)


if __name__ == "__main__":
    run_main(main)
