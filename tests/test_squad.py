"""tools/squad.py: prepare (stock record selection and prompt), score (EmF1 == MindFormers, SQuAD v1.1), gate."""

import json

import pytest

from conftest import REPO, run_tool

TINY = REPO / "tests" / "data" / "squad_tiny.json"


def run(*args):
    return run_tool("squad", *args, timeout=120)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture()
def records(tmp_path):
    out = tmp_path / "records.jsonl"
    res = run("prepare", "--dev", TINY, "--out", out, "--json")
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["records"] == 6 and info["paragraphs"] == 6 and info["articles"] == 3 and info["skipped"] == 0
    return out


def test_prepare_first_question_first_answer_contest_prompt(records):
    rows = [json.loads(x) for x in records.read_text(encoding="utf-8").splitlines()]
    dev = json.loads(TINY.read_text(encoding="utf-8"))
    expected = []
    for article in dev["data"]:
        for para in article["paragraphs"]:
            qa = para["qas"][0]
            expected.append((qa["id"], "Read the passage and answer the question below.\n\n### Instruction:\n"
                             + para["context"] + "\n\n### Input:\n" + qa["question"] + "\n\n### Response:",
                             qa["answers"][0]["text"], [a["text"] for a in qa["answers"]]))
    from lorakit.templates import render_prompt

    got = [(r["id"], render_prompt("squad", {"context": r["context"], "question": r["question"]}), r["answer"],
            r["answers"]) for r in rows]
    assert got == expected
    assert [r["id"] for r in rows] == ["rh1", "da1", "sb1", "sb3", "zz1", "ph1"]
    assert all(r["family"] == "squad" for r in rows)


def test_prepare_bad_input(tmp_path):
    bad = json.loads(TINY.read_text(encoding="utf-8"))
    del bad["data"][0]["paragraphs"][1]["context"]
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(bad), encoding="utf-8")
    res = run("prepare", "--dev", p, "--out", tmp_path / "r.jsonl")
    assert res.returncode == 2 and "data[0].paragraphs[1]: missing 'context'" in res.stderr
    assert res.stderr.count("\n") == 1 and not (tmp_path / "r.jsonl").exists()
    p.write_text("{not json", encoding="utf-8")
    res = run("prepare", "--dev", p, "--out", tmp_path / "r.jsonl")
    assert res.returncode == 2 and "not valid JSON" in res.stderr
    ok = json.loads(TINY.read_text(encoding="utf-8"))
    ok["data"][0]["paragraphs"][1]["qas"] = []
    p.write_text(json.dumps(ok), encoding="utf-8")
    res = run("prepare", "--dev", p, "--out", tmp_path / "r.jsonl", "--json")
    assert res.returncode == 0 and json.loads(res.stdout)["skipped"] == 1
    assert len((tmp_path / "r.jsonl").read_text(encoding="utf-8").splitlines()) == 5


PREDS = {"rh1": " Swiss Alps.\nThe Rhine rises there.", "da1": "the Black Sea", "sb1": "Broncos",
         "sb3": "February 7, 2016", "zz1": "郑州。", "ph1": ""}


def test_score_matches_mindformers_and_official(records, tmp_path, capsys):
    pred = write_jsonl(tmp_path / "pred.jsonl", [{"id": k, "completion": v} for k, v in PREDS.items()])
    res = run("score", "--records", records, "--pred", pred, "--json", "--out-dir", tmp_path / "eval")
    assert res.returncode == 0, res.stderr
    rep = json.loads(res.stdout)
    assert rep["total"] == 6 and rep["empty_predictions"] == 1
    from mindformers.core.metric import EmF1Metric

    rows = [json.loads(x) for x in records.read_text(encoding="utf-8").splitlines()]
    m = EmF1Metric()
    m.clear()
    for r in rows:
        m.update([PREDS[r["id"]]], [r["answer"]])
    theirs = m.eval()
    capsys.readouterr()
    assert abs(rep["emf1"]["F1"] - theirs["F1"]) <= 1e-9 and abs(rep["emf1"]["Em"] - theirs["Em"]) <= 1e-9
    # hand-computed: EM hits da1 and sb3 (rh1 lacks "the", zz1 lacks 市), so 2/6
    assert rep["emf1"]["Em"] == pytest.approx(100 * 2 / 6)
    # official: rh1 "Swiss Alps" = 2nd gold answer, da1, sb3 exact; sb1 F1 2/3 vs "Denver Broncos"
    assert rep["squad_v1.1"]["exact_match"] == pytest.approx(100 * 3 / 6)
    assert rep["squad_v1.1"]["f1"] == pytest.approx(100 * (3 + 2 / 3 + 0 + 0) / 6)
    assert (tmp_path / "eval" / "squad_report.json").is_file()
    assert "EmF1Metric (contest)" in (tmp_path / "eval" / "squad_report.md").read_text(encoding="utf-8")


def test_score_errors(records, tmp_path):
    rows = [{"id": k, "completion": v} for k, v in PREDS.items()]
    res = run("score", "--records", records, "--pred", write_jsonl(tmp_path / "d.jsonl", rows + [rows[0]]))
    assert res.returncode == 2 and "d.jsonl:7: duplicate id 'rh1'" in res.stderr
    res = run("score", "--records", records, "--pred", write_jsonl(tmp_path / "m.jsonl", rows[:5]))
    assert res.returncode == 2 and "1 of 6 records have no prediction, e.g. ph1" in res.stderr
    res = run("score", "--records", records, "--pred", write_jsonl(tmp_path / "u.jsonl", [{"id": "x", "completion": ""}]))
    assert res.returncode == 2 and "id 'x' is not in" in res.stderr


def test_gate(tmp_path):
    rep = tmp_path / "squad_report.json"
    rep.write_text(json.dumps({"emf1": {"F1": 55.0, "Em": 40.0}}), encoding="utf-8")
    res = run("gate", "--report", rep, "--json")
    assert res.returncode == 0 and json.loads(res.stdout)["pass"] is True
    assert json.loads(res.stdout)["f1_min"] == 53.8832 and json.loads(res.stdout)["em_min"] == 39.7533
    low = tmp_path / "low.json"
    low.write_text(json.dumps({"emf1": {"F1": 55.0, "Em": 39.0}}), encoding="utf-8")
    res = run("gate", "--report", low)
    assert res.returncode == 1 and res.stdout.startswith("SQuAD gate FAIL")
    base = tmp_path / "base.json"
    base.write_text(json.dumps({"emf1": {"F1": 70.0, "Em": 50.0}}), encoding="utf-8")
    res = run("gate", "--report", rep, "--base-report", base, "--json", "--write")
    g = json.loads(res.stdout)
    assert res.returncode == 1 and g["f1_min"] == pytest.approx(63.0) and g["em_min"] == pytest.approx(45.0)
    assert json.loads(rep.read_text(encoding="utf-8"))["gate"]["pass"] is False
    res = run("gate", "--report", base, "--base-report", base)
    assert res.returncode == 0
    base.write_text("{}", encoding="utf-8")
    res = run("gate", "--report", rep, "--base-report", base)
    assert res.returncode == 2 and "not a squad report" in res.stderr
