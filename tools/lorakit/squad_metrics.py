"""SQuAD scoring shared by squad.py, package and verify: MindFormers' EmF1Metric re-implemented exactly, the
official SQuAD v1.1 EM/F1 beside it, the report of a prediction file, and the gate (thresholds: lorakit.contest).
"""

import re
import unicodedata

from .contest import SQUAD_FRACTION, SQUAD_GATE_EM, SQUAD_GATE_F1, gate_passes
from .io import KitError
from .records import record_id

# --------------------------------------------------------------------------------------------------------------
# MindFormers EmF1Metric, re-implemented (mindformers/core/metric/metric.py, 1.1). Behaviour kept on purpose:
# the prediction is stripped and cut to its first line; the label is not; EM drops a fixed punctuation list after
# lower-casing; F1 segments with jieba (each CJK char and each listed punctuation alone) and takes the longest
# common *contiguous* run of segments; the 2-char entry '……' can never match a single char, so '…' survives.

EMF1_PUNCT = frozenset(['-', ':', '_', '*', '^', '/', '\\', '~', '`', '+', '=',
                        '，', '。', '：', '？', '！', '“', '”', '；', '’', '《', '》', '……', '·', '、',
                        '「', '」', '（', '）', '－', '～', '『', '』'])
_CJK_EMF1_RE = re.compile(r"[\u4e00-\u9fa5]")
_JIEBA = None


def _jieba():
    global _JIEBA
    if _JIEBA is None:
        import logging

        import jieba

        jieba.setLogLevel(logging.WARNING)
        _JIEBA = jieba
    return _JIEBA


def emf1_segments(text, rm_punc=False):
    s = str(text).lower().strip()
    segs, run = [], ""
    for ch in s:
        if rm_punc and ch in EMF1_PUNCT:
            continue
        if _CJK_EMF1_RE.search(ch) or ch in EMF1_PUNCT:
            if run:
                segs.extend(_jieba().cut(run))
                run = ""
            segs.append(ch)
        else:
            run += ch
    if run:
        segs.extend(_jieba().cut(run))
    return segs


def emf1_strip_punct(text):
    return "".join(ch for ch in str(text).lower().strip() if ch not in EMF1_PUNCT)


def longest_common_run(a, b):
    """Length of the longest common contiguous run of two sequences."""
    best = 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b):
            if x == y:
                cur[j + 1] = prev[j] + 1
                if cur[j + 1] > best:
                    best = cur[j + 1]
        prev = cur
    return best


def emf1_prepare_prediction(pred):
    """What EmF1Metric.update does to a generated text before scoring it."""
    return str(pred).strip().split("\n")[0]


def emf1_pair(pred, label):
    """(f1, em) in [0, 1] for one already-prepared prediction and one label, as EmF1Metric computes them."""
    label_segs = emf1_segments(label, rm_punc=True)
    pred_segs = emf1_segments(pred, rm_punc=True)
    lcs = longest_common_run(label_segs, pred_segs)
    if lcs == 0:
        f1 = 0
    else:
        precision = 1.0 * lcs / len(pred_segs)
        recall = 1.0 * lcs / len(label_segs)
        f1 = (2 * precision * recall) / (precision + recall)
    em = 1 if emf1_strip_punct(label) == emf1_strip_punct(pred) else 0
    return f1, em


def emf1_score(preds, labels):
    """{'F1', 'Em'} in percent over pairs, exactly as EmF1Metric.update(...) then eval() reports them."""
    f1 = em = 0
    n = 0
    for p, lab in zip(preds, labels):
        a, b = emf1_pair(emf1_prepare_prediction(p), lab)
        f1 += a
        em += b
        n += 1
    if not n:
        return {}
    return {"F1": 100.0 * f1 / n, "Em": 100.0 * em / n}


# --------------------------------------------------------------------------------------------------------------
# Official SQuAD v1.1 EM/F1 (evaluate-v1.1.py semantics): lower-case, drop ASCII punctuation and the articles
# a/an/the, collapse whitespace; F1 over the bag of whitespace tokens; max over the question's gold answers.

_ASCII_PUNCT = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
_ARTICLES_RE = re.compile(r"\b(a|an|the)\b")


def squad_normalize(text):
    s = str(text).lower()
    s = "".join(ch for ch in s if ch not in _ASCII_PUNCT)
    s = _ARTICLES_RE.sub(" ", s)
    return " ".join(s.split())


def squad_f1(pred, gold):
    p = squad_normalize(pred).split()
    g = squad_normalize(gold).split()
    common = {}
    for tok in p:
        common[tok] = common.get(tok, 0) + 1
    same = 0
    gcount = {}
    for tok in g:
        gcount[tok] = gcount.get(tok, 0) + 1
    for tok, c in common.items():
        same += min(c, gcount.get(tok, 0))
    if same == 0:
        return 0.0
    precision = same / len(p)
    recall = same / len(g)
    return 2 * precision * recall / (precision + recall)


def squad_em(pred, gold):
    return float(squad_normalize(pred) == squad_normalize(gold))


def squad_v11_score(preds, answers_lists):
    """{'exact_match', 'f1'} in percent; each prediction scored against the best of its gold answers."""
    em = f1 = 0.0
    n = 0
    for p, answers in zip(preds, answers_lists):
        answers = list(answers) or [""]
        em += max(squad_em(p, a) for a in answers)
        f1 += max(squad_f1(p, a) for a in answers)
        n += 1
    if not n:
        return {"exact_match": 0.0, "f1": 0.0}
    return {"exact_match": 100.0 * em / n, "f1": 100.0 * f1 / n}

# ---------------------------------------------------------------------------------------------- SQuAD report


def score_squad(records, preds, rec_name="records", pred_name="predictions", allow_missing=False):
    """The report dict for record rows and prediction rows (matched by id)."""
    by_id = {}
    for k, (ln, r) in enumerate(records, 1):
        rid = record_id(r, k)
        if rid in by_id:
            raise KitError("%s:%d: duplicate id %r" % (rec_name, ln, rid))
        for key in ("answer", "answers"):
            if key not in r:
                raise KitError("%s:%d: missing field %r (make records with `squad.py prepare`)" % (rec_name, ln, key))
        by_id[rid] = r
    got = {}
    for ln, p in preds:
        rid = p.get("id")
        if rid in (None, ""):
            raise KitError("%s:%d: missing field 'id'" % (pred_name, ln))
        rid = str(rid)
        if rid in got:
            raise KitError("%s:%d: duplicate id %r" % (pred_name, ln, rid))
        if rid not in by_id:
            raise KitError("%s:%d: id %r is not in %s" % (pred_name, ln, rid, rec_name))
        comp = p.get("completion")
        if not isinstance(comp, str):
            raise KitError("%s:%d: field 'completion' missing or not a string" % (pred_name, ln))
        got[rid] = comp
    missing = [rid for rid in by_id if rid not in got]
    if missing and not allow_missing:
        raise KitError("%s: %d of %d records have no prediction, e.g. %s" % (pred_name, len(missing), len(by_id),
                                                                             missing[0]))
    ids = list(by_id)
    completions = [got.get(rid, "") for rid in ids]
    # the stock eval scores tokenizer.decode(ids(answer)): the contest's Llama3Tokenizer NFC-normalises on encode
    labels = [unicodedata.normalize("NFC", str(by_id[rid]["answer"])) for rid in ids]
    emf1 = emf1_score(completions, labels)
    # the official script scores the raw answer string; use the same first line EmF1 scores, so the two
    # metrics differ only in normalisation and token matching
    firsts = [emf1_prepare_prediction(c) for c in completions]
    official = squad_v11_score(firsts, [by_id[rid]["answers"] for rid in ids])
    empty = sum(1 for f in firsts if not f.strip())
    samples = []
    for rid, f, lab in zip(ids, firsts, labels):
        if len(samples) >= 10:
            break
        samples.append({"id": rid, "prediction": f, "answer": lab})
    return {"total": len(ids), "emf1": {"F1": emf1.get("F1", 0.0), "Em": emf1.get("Em", 0.0)},
            "squad_v1.1": official, "empty_predictions": empty, "missing_predictions": len(missing),
            "emf1_note": "MindFormers EmF1Metric: first line of the stripped prediction vs the first answer; "
                         "F1 over jieba segments by longest common contiguous run",
            "squad_note": "official SQuAD v1.1 EM/F1 of the same first line against every gold answer",
            "samples": samples}


def _emf1_of(report, name):
    try:
        f1, em = float(report["emf1"]["F1"]), float(report["emf1"]["Em"])
    except (KeyError, TypeError, ValueError):
        raise KitError(f"{name}: not a squad report (needs emf1.F1 and emf1.Em)") from None
    return f1, em


def squad_gate(report, base=None, f1_min=SQUAD_GATE_F1, em_min=SQUAD_GATE_EM, fraction=SQUAD_FRACTION,
               base_name="base"):
    """Pass when the report's EmF1 F1 and Em reach the thresholds, or `fraction` of a base run's report."""
    f1, em = _emf1_of(report, "report")
    if base is not None:
        bf1, bem = _emf1_of(base, base_name)
        f1_min, em_min = fraction * bf1, fraction * bem
        basis = f"{fraction:g} x base run {base_name} (F1 {bf1:.4f}, Em {bem:.4f})"
    else:
        basis = f"thresholds F1 {f1_min:.4f}, Em {em_min:.4f}"
    return {"pass": gate_passes(f1, em, f1_min, em_min), "f1": f1, "em": em, "f1_min": f1_min, "em_min": em_min,
            "basis": basis}
