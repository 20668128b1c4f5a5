"""lorakit.families (classify / parse / solve / final_answer / generate), tools/gen_math.py, lorakit.audit."""

import json
import random
import re
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

import gen_math
from conftest import run_tool
from lorakit import families as F
from lorakit.audit import audit_file, audit_markdown
from lorakit.io import KitError

SAMPLE = Path(__file__).resolve().parent / "data" / "contest_sample.jsonl"
CHINESE = [f for f in F.FAMILIES if f != "english"]


def _sample():
    with open(SAMPLE, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


# ------------------------------------------------------------------------------------------ real data

def test_every_sample_record_classified_parsed_and_reproduced():
    recs = _sample()
    assert len(recs) == 996
    counts = Counter()
    failures = []
    for i, r in enumerate(recs, 1):
        fam = F.classify(r["problem"])
        counts[fam] += 1
        p = F.parse(r["problem"])
        assert p is not None, (i, r["problem"])
        assert p.family == fam
        if fam == "english":
            assert p.args == {}
            with pytest.raises(ValueError):
                F.solve(p)
            continue
        got = F.solve(p)
        if got != r["solution"]:
            failures.append((i, r["problem"], r["solution"], got))
    # No exception to explain: every Chinese record of the sample is reproduced character for character.
    assert failures == []
    for r in recs:
        p = F.parse(r["problem"])
        if p.family != "english":
            assert F.render_problem(p) == r["problem"]
    assert counts["unknown"] == 0
    assert counts["english"] == 20
    assert sum(counts.values()) - counts["english"] == 976
    # the sample covers every family except the two tiny ones (mass: 100 unique, fraction: 45 unique)
    assert set(counts) == set(F.FAMILIES) - {"mass", "fraction"}


# Real train.json records quoted verbatim in public team reports of the contest (covers mass and fraction,
# which the 996-record sample lacks, and more float-artefact cases).
QUOTED = [
    ("去年销售额为 90 万元，今年销售额增加了 65%，请计算今年的销售额。", "148.5"),
    ("去年销售额为 32 万元，今年销售额增加了 28%，请计算今年的销售额。", "40.96"),
    ("商品原价为 72 元，打折后的价格为 2 元，请计算打折的折扣比例。", "97.22222222222221"),
    ("商品原价为 60 元，打折后的价格为 24 元，请计算打折的折扣比例。", "60.0"),
    ("商品原价为 51 元，打折后的价格为 28 元，请计算打折的折扣比例。", "45.09803921568628"),
    ("计算 -711.31 的 4 次方？", "-711.31^4 = 255997460543.58343921"),
    ("计算 -787.36 的 4 次方？", "-787.36^4 = 384320358429.54428416"),
    ("计算 6145.00 的平方根？", "√6145.00 = 78.39005038906404479030928703"),
    ("当 x = 4.03 时，求函数 y = 57x^54 的值", "函数的值为：2.769155521409239378157128235E+34"),
    ("当 x = 2.50 时，求函数 y = 9x^49 的值", "函数的值为：283989925879564249948.2222835"),
    ("计算 -7431.41 / 6769.29 等于多少？", "-7431.41 / 6769.29 = -1.097812325960329665297246831"),
    ("计算 7469.98 * -2455.65 等于多少？", "7469.98 * -2455.65 = -18343656.3870"),
    ("计算 967.09 - -688.16 等于多少？", "967.09 - -688.16 = 1655.25"),
    ("解方程 -1x + -17 = 0", "方程的解为：-17.0"),
    ("解方程 -81x + -45 = 0", "方程的解为：-0.5555555555555556"),
    ("求以下数据的平均值：[79, 69, 19, 3, 23, 93]", "平均值为 47.666666666666664"),
    ("求以下数据的平均值：[70, 18, 94]", "平均值为 60.666666666666664"),
    ("将分数 5/6 进行简化。", "最简化的形式为：5/6"),
    ("某物体的密度为 10 克/立方厘米，体积为 3 立方厘米，请计算该物体的质量。", "30 克"),
    ("某物体的密度为 9 克/立方厘米，体积为 3 立方厘米，请计算该物体的质量。", "27 克"),
    ("一个长方形的长为 57 厘米，宽为 84 厘米，请计算其面积。", "面积为 4788 平方厘米"),
    ("一个长方形的长为 74 厘米，宽为 40 厘米，请计算其面积。", "面积为 2960 平方厘米"),
]


@pytest.mark.parametrize("problem,solution", QUOTED)
def test_quoted_real_records(problem, solution):
    assert F.solve(F.parse(problem)) == solution


def test_parse_args_exact_shapes():
    assert F.parse("计算 6874.58 - -2728.62 等于多少？") == F.Parsed("sub", {"a": "6874.58", "b": "-2728.62"})
    assert F.parse("计算 -12.34 的 3 次方？") == F.Parsed("power", {"x": "-12.34", "n": 3})
    assert F.parse("计算 6145.00 的平方根？") == F.Parsed("sqrt", {"x": "6145.00"})
    assert F.parse("解方程 -1x + 0 = 0") == F.Parsed("equation", {"a": -1, "b": 0})
    assert F.parse("当 x = 5.00 时，求函数 y = 44x^11 的值") == F.Parsed("function", {"x": "5.00", "c": "44", "n": 11})
    assert F.parse("求以下数据的平均值：[1, 2, 3]") == F.Parsed("mean", {"values": [1, 2, 3]})
    assert F.parse("一个长方形的长为 3 厘米，宽为 4 厘米，请计算其面积。").args == {"length": 3, "width": 4}
    assert F.parse("某物体的密度为 2 克/立方厘米，体积为 5 立方厘米，请计算该物体的质量。").args == {"density": 2, "volume": 5}
    assert F.parse("商品原价为 4 元，打折后的价格为 52 元，请计算打折的折扣比例。").args == {"original": "4", "discounted": "52"}
    assert F.parse("去年销售额为 12 万元，今年销售额增加了 77%，请计算今年的销售额。").args == {"last_year": "12", "percent": "77"}
    assert F.parse("将分数 4/8 进行简化。").args == {"numerator": 4, "denominator": 8}
    assert F.parse("What is $1+1$?") == F.Parsed("english", {})


def test_negative_base_power_means_power_of_negative_number():
    assert F.solve(F.parse("计算 -2.00 的 3 次方？")) == "-2.00^3 = -8.000000"
    assert F.solve(F.parse("计算 -2.00 的 2 次方？")) == "-2.00^2 = 4.0000"
    assert F.solve(F.parse("计算 -2.50 的 0 次方？")) == "-2.50^0 = 1"


def test_float_artefacts_and_formats():
    assert F.solve(F.parse("去年销售额为 12 万元，今年销售额增加了 77%，请计算今年的销售额。")) == "21.240000000000002"
    assert F.solve(F.parse("商品原价为 4 元，打折后的价格为 52 元，请计算打折的折扣比例。")) == "-1200.0"
    assert F.solve(F.parse("将分数 4/8 进行简化。")) == "最简化的形式为：1/2"
    assert F.solve(F.parse("计算 1.25 + 1.75 等于多少？")) == "1.25 + 1.75 = 3.00"
    assert F.solve(F.parse("计算 0.10 * 0.20 等于多少？")) == "0.10 * 0.20 = 0.0200"


def test_unknown_and_loose_classification():
    assert F.classify("今天天气怎么样？") == "unknown"
    assert F.parse("今天天气怎么样？") is None
    # right family words, wrong format: classified, but not parsed
    assert F.classify("计算 1.5 + 2 等于多少?") == "add"
    assert F.parse("计算 1.5 + 2 等于多少?") is None
    assert F.classify("解方程 x + 1 = 0") == "equation"
    assert F.parse("计算 １.00 + 2.00 等于多少？") is None  # full-width digit: not the real format
    assert F.classify("计算 １.00 + 2.00 等于多少？") == "add"
    assert F.parse("解方程 x + 1 = 0") is None


def test_solver_rejects_impossible_args():
    with pytest.raises(ValueError):
        F.solve(F.Parsed("div", {"a": "1.00", "b": "0.00"}))
    with pytest.raises(ValueError):
        F.solve(F.Parsed("equation", {"a": 0, "b": 3}))
    with pytest.raises(ValueError):
        F.solve(F.Parsed("english", {}))
    with pytest.raises(ValueError):  # decimal Overflow surfaces as ValueError too
        F.solve(F.parse("当 x = 9.99 时，求函数 y = 5x^99999999 的值"))
    with pytest.raises(ValueError):
        F.solve(F.parse("计算 -4.00 的平方根？"))


def test_final_answer():
    fa = F.final_answer
    assert fa("-3828.45 - 756.08 = -4584.53", "sub") == "-4584.53"
    assert fa("平均值为 58.0", "mean") == "58.0"
    assert fa("最简化的形式为：1/2", "fraction") == "1/2"
    assert fa("函数的值为：2.854155448324274205322988364E+85", "function") == "2.854155448324274205322988364E+85"
    assert fa("方程的解为：-0.425", "equation") == "-0.425"
    assert fa("面积为 2376 平方厘米", "area") == "2376"
    assert fa("30 克", "mass") == "30"
    assert fa("21.240000000000002", "sales") == "21.240000000000002"
    assert fa("-1200.0", "discount") == "-1200.0"
    assert fa("√6489.72 = 80.55879840216089022496722440", "sqrt") == "80.55879840216089022496722440"
    assert fa("so the answer is $\\boxed{\\frac{1}{2}}$.", "english") == "\\frac{1}{2}"
    # model-style outputs: the form on the last line, else the last number
    assert fa("2 * 3 = 6\n答案：6", "mul") == "6"
    assert fa("答案：0.5\n(checked)", "div") == "0.5"   # the final-answer marker wins over the last line
    assert fa("-1.50 + 2.00 = 0.50\n", "add") == "0.50"
    assert fa("blah", "mul") == ""
    for r in _sample():
        fam = F.classify(r["problem"])
        ans = F.final_answer(r["solution"], fam)
        assert ans, r
        if fam != "english":
            assert r["solution"].endswith(ans) or fam in ("area", "mass"), (r, ans)


# ------------------------------------------------------------------------------------------ generator

@pytest.mark.parametrize("family", CHINESE)
def test_generate_parse_solve_round_trip(family):
    for seed in range(10):
        rng = random.Random(seed)
        for _ in range(200):
            rec = F.generate(family, rng)
            assert set(rec) == {"problem", "solution"}
            p = F.parse(rec["problem"])
            assert p is not None and p.family == family, rec
            assert F.classify(rec["problem"]) == family
            assert F.solve(p) == rec["solution"], rec
            assert F.final_answer(rec["solution"], family)


def _two_dec(text, bound):
    assert re.fullmatch(r"-?\d+\.\d\d", text), text
    assert abs(Decimal(text)) < bound


def test_generate_number_ranges_and_formats():
    rng = random.Random(123)
    ns = Counter()
    for _ in range(3000):
        for fam in ("add", "sub", "mul", "div"):
            a = F.parse(F.generate(fam, rng)["problem"]).args
            _two_dec(a["a"], 10000)
            _two_dec(a["b"], 10000)
            if fam == "div":
                assert Decimal(a["b"]) != 0
        a = F.parse(F.generate("power", rng)["problem"]).args
        _two_dec(a["x"], 1000)
        ns[a["n"]] += 1
        a = F.parse(F.generate("sqrt", rng)["problem"]).args
        _two_dec(a["x"], 10000)
        assert Decimal(a["x"]) > 0
        a = F.parse(F.generate("equation", rng)["problem"]).args
        assert a["a"] != 0 and -100 <= a["a"] <= 100 and -100 <= a["b"] <= 100
        a = F.parse(F.generate("function", rng)["problem"]).args
        assert Decimal("0.10") <= Decimal(a["x"]) <= 10 and 1 <= int(a["c"]) <= 100 and 1 <= a["n"] <= 100
        v = F.parse(F.generate("mean", rng)["problem"]).args["values"]
        assert 3 <= len(v) <= 10 and all(1 <= x <= 100 for x in v)
        a = F.parse(F.generate("fraction", rng)["problem"]).args
        assert 1 <= a["numerator"] < a["denominator"] <= 10
    assert set(ns) == {0, 1, 2, 3, 4, 5}
    # negative B is written "op -B" and both signs occur
    probs = [F.generate("sub", rng)["problem"] for _ in range(200)]
    assert any(" - -" in p for p in probs) and any(re.search(r" - \d", p) for p in probs)


def test_draw_weights_reproduce_real_unique_counts():
    # The small-space families decide train.json's 261,051 duplicates; drawing them DRAW_WEIGHTS times must
    # give the real unique counts (within sampling noise).
    real = {"equation": 40080, "area": 8665, "mass": 100, "discount": 6275, "sales": 6266, "fraction": 45}
    rng = random.Random(2024)
    for fam, want in real.items():
        got = len({F.generate(fam, rng)["problem"] for _ in range(F.DRAW_WEIGHTS[fam])})
        assert abs(got - want) <= max(2, 0.015 * want), (fam, got, want)
    assert sum(F.DRAW_WEIGHTS.values()) == 800000
    assert set(F.DEFAULT_WEIGHTS) == set(CHINESE)


def test_gen_math_deterministic_and_valid(tmp_path):
    a, b, c = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    args = ["--n", "3000", "--english-from", str(SAMPLE), "--weights", "english=500"]
    assert gen_math.main(args + ["--seed", "5", "--out", str(a)]) == 0
    assert gen_math.main(args + ["--seed", "5", "--out", str(b)]) == 0
    assert gen_math.main(args + ["--seed", "6", "--out", str(c)]) == 0
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()
    rep = audit_file(a)
    assert rep["records"] == 3000 and rep["bad_lines"] == []
    assert rep["english"] > 0 and rep["unrecognised_count"] == 0
    assert rep["reproduced"] == rep["reproducible"] == 3000 - rep["english"]


def test_gen_math_families_and_weights(tmp_path, capsys):
    out = tmp_path / "o.jsonl"
    assert gen_math.main(["--n", "400", "--seed", "1", "--out", str(out), "--families", "mul,div",
                          "--weights", "mul=0", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["families"] == {"div": 400}
    fams = {F.classify(json.loads(line)["problem"]) for line in out.read_text(encoding="utf-8").splitlines()}
    assert fams == {"div"}
    for bad in (["--families", "nope"], ["--weights", "add=x"], ["--weights", "add"], ["--weights", "add=-1"],
                ["--families", "english"], ["--families", "add", "--weights", "mul=1"], ["--weights", "add=0,sub=0,"
                "mul=0,div=0,power=0,sqrt=0,equation=0,function=0,mean=0,area=0,mass=0,discount=0,sales=0,"
                "fraction=0"]):
        with pytest.raises(KitError):
            gen_math.main(["--n", "10", "--out", str(tmp_path / "x.jsonl")] + bad)
    assert not (tmp_path / "x.jsonl").exists()


# ------------------------------------------------------------------------------------------ audit

def test_audit_sample_is_clean():
    rep = audit_file(SAMPLE)
    assert rep["records"] == 996 and rep["chinese"] == 976 and rep["english"] == 20
    assert rep["bad_lines"] == [] and rep["duplicates"] == 0 and rep["conflicting_duplicates"] == 0
    assert rep["unrecognised"] == [] and rep["mismatches"] == []
    assert rep["reproduced"] == 976 and rep["reproduction_rate"] == 1.0
    for fam, st in rep["families"].items():
        if fam != "english":
            assert st["records"] == st["parsed"] == st["reproduced"], fam
    json.dumps(rep)  # JSON-ready
    md = audit_markdown(rep)
    assert "| div | 173 | 173 | 173 | 173 | 100.00 % |" in md


def test_audit_reports_every_bad_input_with_line_numbers(tmp_path):
    good = {"problem": "计算 1.00 + 2.00 等于多少？", "solution": "1.00 + 2.00 = 3.00"}
    lines = [
        json.dumps(good, ensure_ascii=False).encode(),                                      # 1 ok
        b'{"problem": "\xff\xfe bad bytes", "solution": "x"}',                             # 2 not UTF-8
        b"this is not json",                                                               # 3 not JSON
        json.dumps({"solution": "1"}).encode(),                                            # 4 missing problem
        json.dumps({"problem": "p", "solution": 3}).encode(),                              # 5 non-string
        json.dumps({"problem": "p", "solution": "  "}).encode(),                           # 6 empty
        json.dumps(good, ensure_ascii=False).encode(),                                     # 7 duplicate of 1
        json.dumps({"problem": good["problem"], "solution": "1.00 + 2.00 = 3.0"}, ensure_ascii=False).encode(),
        json.dumps({"problem": "今天天气怎么样？", "solution": "晴"}, ensure_ascii=False).encode(),  # 9 unknown
        json.dumps({"problem": "What is $1+1$?", "solution": "$\\boxed{2}$"}).encode(),    # 10 english
        json.dumps({"problem": "计算 1.5 + 2 等于多少?", "solution": "3.5"}, ensure_ascii=False).encode(),  # 11
        b"[1, 2]",                                                                         # 12 not an object
    ]
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\n".join(lines) + b'\n{"problem": "trunc')                          # 13 truncated
    rep = audit_file(path)
    reasons = {b["line"]: b["reason"] for b in rep["bad_lines"]}
    assert set(reasons) == {2, 3, 4, 5, 6, 12, 13}
    assert "UTF-8" in reasons[2]
    assert "not JSON" in reasons[3]
    assert "missing" in reasons[4] and "problem" in reasons[4]
    assert "not a string" in reasons[5]
    assert "empty" in reasons[6]
    assert "object" in reasons[12]
    assert "truncated" in reasons[13]
    assert all(b["path"] == str(path) for b in rep["bad_lines"])
    assert rep["records"] == 6
    assert rep["duplicates"] == 1
    assert rep["conflicting_duplicates"] == 1 and rep["conflict_samples"][0]["line"] == 8
    assert rep["unrecognised_count"] == 1 and rep["unrecognised"][0]["line"] == 9
    assert rep["english"] == 1
    add = rep["families"]["add"]
    assert add == {"records": 4, "unique": 3, "parsed": 3, "reproduced": 2}
    mm = {m["line"]: m for m in rep["mismatches"]}
    assert mm[8]["expected"] == "1.00 + 2.00 = 3.00" and mm[8]["got"] == "1.00 + 2.00 = 3.0"
    assert mm[11]["expected"] is None and "not parsed" in mm[11]["error"]
    md = audit_markdown(rep)
    assert f"{path}:13: truncated" in md and f"{path}:2: not UTF-8" in md
    assert "line 9" in md


def test_audit_solver_error_is_a_mismatch(tmp_path):
    path = tmp_path / "z.jsonl"
    path.write_text(json.dumps({"problem": "计算 1.00 / 0.00 等于多少？", "solution": "inf"}, ensure_ascii=False)
                    + "\n", encoding="utf-8")
    rep = audit_file(path)
    assert rep["families"]["div"] == {"records": 1, "unique": 1, "parsed": 1, "reproduced": 0}
    assert "division by zero" in rep["mismatches"][0]["error"]


def test_gen_math_cli_errors_and_help(tmp_path):
    out = tmp_path / "o.jsonl"
    r = run_tool("gen_math", "--n", "5", "--out", out, "--families", "nope")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["gen_math.py: error: --families: unknown family 'nope' (choose from "
                                             + ", ".join(CHINESE) + ")"]
    assert not out.exists()
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"problem": "What?", "solution": "1"}\n{"problem": "x"\n')
    r = run_tool("gen_math", "--n", "5", "--out", out, "--english-from", bad)
    assert r.returncode == 2 and f"{bad}:2: not JSON" in r.stderr
    r = run_tool("gen_math", "--help")
    assert r.returncode == 0 and "--english-from" in r.stdout
