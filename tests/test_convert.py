"""Templates (stock Vicuna masking), MindRecord I/O, and tools/convert_dataset.py stages, bad input and reports."""

import json

import jsonschema
import numpy as np
import pytest

import convert_dataset as C
from conftest import run_tool
from lorakit import templates as T
from lorakit import tokenizer as TK
from lorakit.io import KitError

RECORDS = [
    {"problem": "计算 -3828.45 - 756.08 等于多少？", "solution": "-3828.45 - 756.08 = -4584.53"},
    {"problem": "计算 8.00 * 0.50 等于多少？", "solution": "8.00 * 0.50 = 4.0000"},
    {"problem": "解方程 -2x + 5 = 0", "solution": "方程的解为：2.5"},
    {"problem": "求以下数据的平均值：[58, 58, 58]", "solution": "平均值为 58.0"},
    {"problem": "一个长方形的长为 3 厘米，宽为 4 厘米，请计算其面积。", "solution": "面积为 12 平方厘米"},
]

CONVERSATION_SCHEMA = {
    "type": "array",
    "items": {
        "type": "object", "required": ["id", "conversations"], "additionalProperties": False,
        "properties": {
            "id": {"type": "string", "pattern": "^[1-9][0-9]*$"},
            "conversations": {
                "type": "array", "minItems": 2, "maxItems": 2,
                "prefixItems": [
                    {"type": "object", "properties": {"from": {"const": "human"}, "value": {"type": "string"}},
                     "required": ["from", "value"], "additionalProperties": False},
                    {"type": "object", "properties": {"from": {"const": "gpt"}, "value": {"type": "string"}},
                     "required": ["from", "value"], "additionalProperties": False},
                ],
            },
        },
    },
}


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    return TK.tiny_tokenizer_path(tmp_path_factory.mktemp("tokcache"))


@pytest.fixture(scope="module")
def tok(tiny_file):
    return TK.Llama3Tokenizer(tiny_file)


def stock_vicuna_row(tok, problem, answer, width):
    """What research/llama3/llama_preprocess.py computes (its algorithm restated, not its code)."""
    system = T.VICUNA_SYSTEM
    rou = system + " USER: " + problem + " ASSISTANT: " + answer  # conv.get_prompt() split at "</s>"
    full = [tok.bos_id] + tok.encode(rou) + [tok.eos_id]  # tokenizer() adds BOS and EOS
    ids = full + [tok.pad_id] * (width - len(full))
    target = list(ids)
    target[0] = -100
    parts0 = rou.split(" ASSISTANT: ")[0] + " ASSISTANT: "
    instruction_len = len([tok.bos_id] + tok.encode(parts0) + [tok.eos_id]) - 3
    round_len = len(full) - 1
    for i in range(1, 1 + instruction_len):
        target[i] = -100
    cur = 1 + round_len
    for i in range(cur, len(target)):
        target[i] = -100
    return ids[:width], target[:width]


# ------------------------------------------------------------------------------------------- templates

def test_vicuna_masking_equals_the_stock_algorithm(tok):
    for rec in RECORDS + [{"problem": "What is $1+1$?", "solution": "It is $\\boxed{2}$."}]:
        got = T.encode_example(tok, "vicuna", rec["problem"], rec["solution"], 96)
        want_ids, want_labels = stock_vicuna_row(tok, rec["problem"], rec["solution"], 97)
        assert got[0].dtype == np.int32 and got[0].shape == (97,)
        assert got[0].tolist() == want_ids
        assert got[1].tolist() == want_labels


def test_vicuna_row_by_hand(tok):
    problem, answer = "计算 1 + 2 等于多少？", "1 + 2 = 3"
    ids, labels = T.encode_example(tok, "vicuna", problem, answer, 80)
    prompt = T.encode_prompt(tok, "vicuna", problem)
    body = tok.encode(" " + answer)
    n_p, n = len(prompt), len(prompt) + len(body) + 1
    assert prompt[0] == tok.bos_id and tok.decode(prompt[1:]).endswith("等于多少？ ASSISTANT:")
    assert ids[:n_p].tolist() == prompt                    # the inference prompt is the row's prefix
    assert ids[n_p:n - 1].tolist() == body and ids[n - 1] == tok.eos_id
    assert (ids[n:] == tok.pad_id).all()
    assert (labels[:n_p] == -100).all()                   # BOS + system + user turn + "ASSISTANT:"
    assert labels[n_p:n].tolist() == ids[n_p:n].tolist()  # " " + answer + EOS are targets
    assert tok.decode([labels[n_p]]) == " "               # the space before a number is its own token
    assert (labels[n:] == -100).all()


def test_every_template_prompt_is_the_row_prefix(tok):
    for name in T.TEMPLATES:
        problem = {"context": "The sky is blue.", "question": "What colour?"} if name == "squad" else RECORDS[0][
            "problem"]
        if name == T.CHAT:  # a tiktoken file has no chat template (tests/test_gguf.py tests `chat` rows)
            with pytest.raises(KitError, match="has no chat template"):
                T.encode_prompt(tok, name, problem)
            continue
        ids, labels = T.encode_example(tok, name, problem, "blue", 400)
        prompt = T.encode_prompt(tok, name, problem)
        assert ids[:len(prompt)].tolist() == prompt
        assert (labels[:len(prompt)] == -100).all() and labels[len(prompt)] != -100
        assert tok.decode(prompt[1:]) == T.render_prompt(name, problem)
    assert T.render_prompt("alpaca", "Q").startswith("Below is an instruction that describes a task.")
    assert T.render_prompt("alpaca", "Q").endswith("### Instruction:\nQ\n\n### Response:\n")
    assert T.render_prompt("squad", ("C", "Q")) == (
        "Read the passage and answer the question below.\n\n### Instruction:\nC\n\n### Input:\nQ\n\n### Response:")
    with pytest.raises(KitError, match="unknown template"):
        T.render_prompt("chatml", "x")


def test_overlong_drop_truncate_and_no_target(tok):
    p = T.encode_prompts(tok, "plain", ["x" * 5])[0]
    prompts = [p, p, p * 10]
    answers = [tok.encode("short"), tok.encode(" long answer" * 20), tok.encode("a")]
    st, total, ids, labels = T.pack_rows(tok, prompts, answers, 31)
    assert st == ["ok", "overlong", "overlong"] and ids.shape == (1, 32)
    st, total, ids, labels = T.pack_rows(tok, prompts, answers, 31, truncate=True)
    assert st == ["ok", "truncated", "no_target"] and ids.shape == (2, 32)
    assert total[1] > 32 and tok.eos_id not in ids[1].tolist() and tok.pad_id not in ids[1].tolist()
    assert (labels[1][:1 + len(p)] == -100).all() and (labels[1][1 + len(p):] != -100).all()
    assert T.encode_example(tok, "plain", "x" * 5, " long answer" * 20, 31) is None


# ------------------------------------------------------------------------------------------- MindRecord I/O

def test_mindrecord_round_trip_fast_public_and_process(tmp_path):
    from lorakit import mindrecord_io as M

    rng = np.random.default_rng(0)
    ids = rng.integers(0, 1280, (300, 17)).astype(np.int32)
    labels = np.where(rng.random((300, 17)) < 0.3, -100, ids).astype(np.int32)
    M.write_rows(tmp_path / "fast.mindrecord", ids, labels, 16, fast=True, batch=128)
    M.write_rows(tmp_path / "public.mindrecord", ids, labels, 16, fast=False, batch=128)
    with M.MindRecordRowsProcess(tmp_path / "proc.mindrecord", 16) as w:
        w.write(ids[:100], labels[:100])
        w.write(ids[100:], labels[100:])
    for name in ("fast", "public", "proc"):
        rows = M.read_rows(tmp_path / (name + ".mindrecord"))
        assert len(rows) == 300
        assert np.array_equal(np.stack([r[0] for r in rows]), ids)
        assert np.array_equal(np.stack([r[1] for r in rows]), labels)
        assert rows[0][0].dtype == np.int32
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        n + s for n in ("fast.mindrecord", "public.mindrecord", "proc.mindrecord") for s in ("", ".db"))


@pytest.mark.slow
def test_mindrecord_failure_leaves_nothing(tmp_path):
    from lorakit import mindrecord_io as M

    ids = np.zeros((4, 9), np.int32)
    for cls in (M.MindRecordRows, M.MindRecordRowsProcess):
        with pytest.raises(RuntimeError):
            with cls(tmp_path / "x.mindrecord", 8) as w:
                w.write(ids, ids)
                raise RuntimeError("boom")
        with pytest.raises(KitError, match="expected"):
            with cls(tmp_path / "x.mindrecord", 8) as w:
                w.write(np.zeros((4, 5), np.int32), np.zeros((4, 5), np.int32))
        with pytest.raises(KitError, match="no rows"):
            with cls(tmp_path / "x.mindrecord", 8):
                pass
        assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------- stages in-process

def _records(tmp_path, recs, name="in.jsonl"):
    p = tmp_path / name
    p.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs), encoding="utf-8")
    return p


def test_clean_dedup_verify_and_sample(tmp_path):
    wrong = {"problem": "计算 1.00 + 2.00 等于多少？", "solution": "1.00 + 2.00 = 4.00"}
    unknown = {"problem": "今天天气怎么样？", "solution": "晴"}
    path = _records(tmp_path, RECORDS + RECORDS[:2] + [wrong, unknown])
    rep = C.Report()
    out = list(C.clean(C.read_records(path, rep, progress=False), rep))
    assert [r.problem for r in out] == [r["problem"] for r in RECORDS]
    assert rep.excluded["duplicate"]["count"] == 2
    assert rep.excluded["gold solution not reproduced"]["samples"][0]["line"] == 8
    assert rep.excluded["unrecognised or unparsed problem (cannot verify)"]["count"] == 1
    assert rep.counts["read"]["unknown"] == 1 and rep.counts["read"]["add"] == 1
    assert "add" not in rep.counts["verified"] and rep.counts["verified"]["sub"] == 1
    rep2 = C.Report()
    recs = [C.Record(i, "add" if i % 2 else "mul", "p%d" % i, "s") for i in range(1, 101)]
    got = list(C.sample(iter(recs), rep2, {"add": 10, "*": 3}, seed=5))
    again = [r.line for r in C.sample(iter(recs), C.Report(), {"add": 10, "*": 3}, seed=5)]
    assert [r.line for r in got] == again == sorted(again)
    assert sum(r.family == "add" for r in got) == 10 and sum(r.family == "mul" for r in got) == 3
    assert rep2.excluded["not sampled (cap)"]["count"] == 87


def test_corrupted_cot_step_is_excluded(monkeypatch):
    from lorakit import cot
    from lorakit.families import parse

    real = cot.rewrite

    def corrupt(recipe, record, parsed):
        target = real(recipe, record, parsed)
        lines = target.split("\n")
        lines[0] = lines[0].replace("4", "5", 1) if "4" in lines[0] else lines[0] + "1"
        return "\n".join(lines)

    rec = RECORDS[1]
    good = C.Record(1, "mul", rec["problem"], rec["solution"], parse(rec["problem"]))
    rep = C.Report()
    assert [r.target for r in C.rewrite(iter([good]), rep, "cot")][0].endswith(cot.FINAL_MARKER + "4.0000")
    monkeypatch.setattr(cot, "rewrite", corrupt)
    bad = C.Record(1, "mul", rec["problem"], rec["solution"], parse(rec["problem"]))
    rep = C.Report()
    assert list(C.rewrite(iter([bad]), rep, "cot")) == []
    assert rep.excluded["recipe target failed verification"]["count"] == 1


def test_streaming_json_array_reader(tmp_path):
    items = [{"id": str(i), "conversations": [{"from": "human", "value": "q%d \u00e9\n" % i},
                                              {"from": "gpt", "value": "a" * (i * 37)}]} for i in range(1, 60)]
    p = tmp_path / "c.json"
    p.write_text(json.dumps(items, indent=2, ensure_ascii=False), encoding="utf-8")
    got = [it for _, _, it in C.iter_json_array(p, chunk=64)]
    assert got == items
    p.write_text('[{"id": "1"},\n{"id": "2" "x"}]', encoding="utf-8")
    with pytest.raises(KitError, match=r"c.json:2"):
        list(C.iter_json_array(p))
    p.write_text('[{"id": "1"},\n', encoding="utf-8")
    with pytest.raises(KitError, match="truncated"):
        list(C.iter_json_array(p))


# ------------------------------------------------------------------------------------------- the CLI

def run(*args):
    return run_tool("convert_dataset", *args, timeout=300, env={"GLOG_v": "3"})


BAD_LINES = [
    b'{"problem": "\xe8\xae\xa1\xe7\xae\x97 1.00 + 2.00 \xe7\xad\x89\xe4\xba\x8e\xe5\xa4\x9a\xe5\xb0\x91\xef\xbc\x9f", '
    b'"solution": "1.00 + 2.00 = 3.00"}',  # 1 good
    b'this is not json',  # 2
    b'{"problem": "x"}',  # 3 missing solution
    b'{"problem": "x", "solution": 3}',  # 4 not a string
    b'{"problem": "x", "solution": "  "}',  # 5 empty
    b'{"problem": "\xff\xfe", "solution": "y"}',  # 6 not UTF-8
    b'{"problem": "\xe8\xae\xa1\xe7\xae\x97 2.00 + 2.00 \xe7\xad\x89\xe4\xba\x8e\xe5\xa4\x9a\xe5\xb0\x91\xef\xbc\x9f", '
    b'"solution": "2.00 + 2.00 = 4.00"}',  # 7 good
    b'{"problem": "truncated',  # 8 truncated last line, no newline
]


def test_cli_bad_input_convert_and_audit(tmp_path, tiny_file):
    src = tmp_path / "bad.jsonl"
    src.write_bytes(b"\n".join(BAD_LINES))
    out = tmp_path / "data"
    r = run("convert", src, "--out-dir", out, "--tokenizer", tiny_file, "--seq-length", 64, "--json",
            "--no-progress")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    bad = rep["excluded"]["bad line"]
    assert bad["count"] == 6
    assert [s["line"] for s in bad["samples"]] == [2, 3, 4, 5, 6, 8]
    reasons = " | ".join(s["reason"] for s in bad["samples"])
    for word in ("not JSON", "missing field", "not a string", "empty", "not UTF-8", "truncated"):
        assert word in reasons
    assert "%s:8: truncated last line" % src in r.stderr
    assert rep["rows_written"] == 2 and rep["stage_totals"]["read"] == 2
    conv = json.loads((out / "conversation.json").read_text(encoding="utf-8"))
    jsonschema.validate(conv, CONVERSATION_SCHEMA)
    assert [c["id"] for c in conv] == ["1", "2"]
    assert sorted(p.name for p in out.iterdir()) == ["conversation.json", "data_report.json", "data_report.md",
                                                     "data_report.png", "train.mindrecord", "train.mindrecord.db"]
    assert (out / "data_report.png").read_bytes()[:4] == b"\x89PNG"
    # --strict turns unreadable lines into a failure; audit always does
    assert run("to-conversation", src, "--out", tmp_path / "c.json", "--strict", "--no-progress").returncode == 1
    a = run("audit", src, "--json", "--no-progress")
    assert a.returncode == 1 and json.loads(a.stdout)["records"] == 2
    # a failing run leaves nothing behind: a tokenizer that does not exist
    r = run("convert", src, "--out-dir", tmp_path / "none", "--tokenizer", tmp_path / "nope.model", "--no-progress")
    assert r.returncode == 2 and "nope.model" in r.stderr
    assert not (tmp_path / "none").exists() or list((tmp_path / "none").iterdir()) == []


def test_cli_stages_overlong_counts_and_multiple_of(tmp_path, tiny_file):
    recs = [dict(r) for r in RECORDS] * 3
    recs.append({"problem": "Explain it.", "solution": "word " * 200})
    src = _records(tmp_path, recs)
    conv = tmp_path / "conv.json"
    r = run("to-conversation", src, "--out", conv, "--no-dedup", "--no-verify", "--json", "--no-progress")
    assert r.returncode == 0, r.stderr
    jsonschema.validate(json.loads(conv.read_text(encoding="utf-8")), CONVERSATION_SCHEMA)
    drop = run("to-mindrecord", conv, "--out", tmp_path / "d.mindrecord", "--tokenizer", tiny_file,
               "--seq-length", 96, "--multiple-of", 4, "--json", "--no-progress")
    assert drop.returncode == 0, drop.stderr
    d = json.loads(drop.stdout)
    assert d["overlong"] == {"overlong": {"english": 1}}
    assert d["rows_written"] == 12 and d["trimmed_for_multiple_of"] == 3  # 15 fit, 12 = 3 * 4 kept
    trunc = run("to-mindrecord", conv, "--out", tmp_path / "t.mindrecord", "--tokenizer", tiny_file,
                "--seq-length", 96, "--overlong", "truncate", "--json", "--no-progress", "--png")
    t = json.loads(trunc.stdout)
    assert t["overlong"] == {"truncated": {"english": 1}} and t["rows_written"] == 16
    assert t["tokens"]["row_tokens"]["english"]["max"] > 97
    assert (tmp_path / "t_report.md").read_text(encoding="utf-8").count("| english |") == 2
    assert (tmp_path / "t_report.png").is_file() and not (tmp_path / "d_report.png").exists()

    from lorakit.mindrecord_io import read_rows

    tok = TK.Llama3Tokenizer(tiny_file)
    rows = read_rows(tmp_path / "t.mindrecord")
    ids, labels = T.encode_example(tok, "vicuna", RECORDS[2]["problem"], RECORDS[2]["solution"], 96)
    assert np.array_equal(rows[2][0], ids) and np.array_equal(rows[2][1], labels)
    assert tok.eos_id not in rows[-1][0].tolist() and rows[-1][1][-1] != -100  # truncated: no EOS, no pad


def test_cli_generated_data_cot_report(tmp_path, tiny_file):
    src = tmp_path / "gen.jsonl"
    g = run_tool("gen_math", "--n", "400", "--seed", "3", "--out", src, "--no-progress")
    assert g.returncode == 0, g.stderr
    r = run("convert", src, "--out-dir", tmp_path / "out", "--recipe", "cot", "--tokenizer", tiny_file,
            "--seq-length", 512, "--json", "--no-progress")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["stage_totals"]["read"] == rep["stage_totals"]["verified"] == rep["stage_totals"]["rewritten"]
    assert "recipe target failed verification" not in rep["excluded"]
    assert rep["tokens"]["row_tokens"]["mul"]["p50"] > rep["tokens"]["row_tokens"]["add"]["p50"]
    assert rep["seq_length_needed"]["max"] == rep["tokens"]["row_tokens"]["all"]["max"] - 1


def test_report_answer_budget_counts_only_rows_that_fit(tmp_path, tiny_file):
    """predict.py takes max_new_tokens from the report: it must come from the rows written, not the dropped ones."""
    src = tmp_path / "gen.jsonl"
    g = run_tool("gen_math", "--n", "300", "--seed", "5", "--out", src, "--no-progress")
    assert g.returncode == 0, g.stderr
    r = run("convert", src, "--out-dir", tmp_path / "out", "--recipe", "cot", "--tokenizer", tiny_file,
            "--seq-length", 128, "--json", "--no-progress")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert sum(rep["overlong"]["overlong"].values()) > 0  # long CoT rows were dropped at 128
    assert rep["tokens"]["answer_tokens"]["all"]["max"] > rep["max_new_tokens"]
    assert 0 < rep["max_new_tokens"] < 128
