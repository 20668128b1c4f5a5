"""tools/score_math.py end to end: the acceptance checks on the contest sample, reports, and bad input."""

import json
import re

from conftest import REPO, run_tool

SAMPLE = REPO / "tests" / "data" / "contest_sample.jsonl"


def run(*args):
    return run_tool("score_math", *args, timeout=120)


def sample_rows():
    assert SAMPLE.is_file(), f"contest sample missing: {SAMPLE}"
    return [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def bump_last_digit(text):
    idx = max(i for i, c in enumerate(text) if c.isdigit())
    return text[:idx] + str((int(text[idx]) + 1) % 10) + text[idx + 1:]


def mutate_answer(solution):
    """Change the last digit of the solution's *answer* (inside \\boxed{} for English items)."""
    m = list(re.finditer(r"\\boxed\{", solution))
    if m:
        start = m[-1].end()
        depth, j = 1, start
        while depth:
            depth += {"{": 1, "}": -1}.get(solution[j], 0)
            j += 1
        inner = solution[start:j - 1]
        inner = bump_last_digit(inner) if any(c.isdigit() for c in inner) else inner + "9"
        return solution[:start] + inner + solution[j - 1:]
    return bump_last_digit(solution)


def test_sample_as_gold_and_prediction_scores_100(tmp_path):
    rows = sample_rows()
    pred = write_jsonl(tmp_path / "pred.jsonl", [{"id": str(k), "family": "", "prompt": r["problem"],
                                                  "completion": r["solution"]} for k, r in enumerate(rows, 1)])
    res = run("--gold", SAMPLE, "--pred", pred, "--json", "--ratio", "0.000424393", "--out-dir", tmp_path / "out")
    assert res.returncode == 0, res.stderr
    rep = json.loads(res.stdout)
    assert rep["total"] == len(rows) == 996
    assert rep["matched_by"].startswith("gold line order")
    for name, pol in rep["policies"].items():
        assert pol["correct"] == 996 and pol["accuracy"] == 1.0, name
    assert len(rep["families"]) >= 12 and all(
        f["policies"]["exact"]["accuracy"] == 1.0 for f in rep["families"].values())
    assert rep["score"]["by_policy"]["exact"] == (1 - 0.000424393) * 0.3 + 0.7
    for name in ("math_report.json", "math_report.md", "math_report.png"):
        assert (tmp_path / "out" / name).stat().st_size > 100
    assert (tmp_path / "out" / "math_report.png").read_bytes()[:4] == b"\x89PNG"
    assert "| exact | 996 | 100.00 % |" in (tmp_path / "out" / "math_report.md").read_text(encoding="utf-8")
    # the gold file itself as predictions ('solution' scored as the completion), matched by line order
    res = run("--gold", SAMPLE, "--pred", SAMPLE, "--json")
    rep = json.loads(res.stdout)
    assert all(p["accuracy"] == 1.0 for p in rep["policies"].values()) and "solution" in rep["note"]


def test_last_digit_changed_scores_zero_exact(tmp_path):
    rows = sample_rows()
    pred = write_jsonl(tmp_path / "pred.jsonl", [{"id": str(k), "prompt": r["problem"],
                                                  "completion": mutate_answer(r["solution"])}
                                                 for k, r in enumerate(rows, 1)])
    res = run("--gold", SAMPLE, "--pred", pred, "--json")
    assert res.returncode == 0, res.stderr
    rep = json.loads(res.stdout)
    assert rep["policies"]["exact"]["correct"] == 0
    # the tolerance policy forgives a changed 28th significant digit, so it stays high: the policies differ
    assert rep["policies"]["tolerance"]["accuracy"] > 0.5


def test_ids_errors_one_line(tmp_path):
    gold = write_jsonl(tmp_path / "gold.jsonl", [
        {"id": "a", "problem": "计算 1.00 + 2.00 等于多少？", "solution": "1.00 + 2.00 = 3.00"},
        {"id": "b", "problem": "计算 2.00 + 2.00 等于多少？", "solution": "2.00 + 2.00 = 4.00"}])
    dup = write_jsonl(tmp_path / "dup.jsonl", [{"id": "a", "completion": "3"}, {"id": "a", "completion": "3"}])
    res = run("--gold", gold, "--pred", dup, "--out-dir", tmp_path / "out")
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "dup.jsonl:2: duplicate id 'a'" in res.stderr
    assert not (tmp_path / "out").exists()                       # nothing written on error
    miss = write_jsonl(tmp_path / "miss.jsonl", [{"id": "a", "completion": "3"}])
    res = run("--gold", gold, "--pred", miss)
    assert res.returncode == 2 and "1 of 2 gold ids have no prediction, e.g. b" in res.stderr
    res = run("--gold", gold, "--pred", miss, "--allow-missing", "--json")
    assert res.returncode == 0 and json.loads(res.stdout)["policies"]["exact"]["correct"] == 1
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "completion": "3"}\n{"id": "b", "compl\n', encoding="utf-8")
    res = run("--gold", gold, "--pred", bad)
    assert res.returncode == 2 and "bad.jsonl:2: not JSON" in res.stderr
    params = tmp_path / "params.json"
    # as count_params.py writes it; a model other than Llama3-8B scores with the exact ratio (1 / 4)
    params.write_text(json.dumps({"trainable": 1, "total": 4, "ratio_contest": 1 / 8.03e9, "ratio_exact": 0.25}),
                      encoding="utf-8")
    res = run("--gold", gold, "--pred", miss, "--allow-missing", "--json", "--params", params)
    assert json.loads(res.stdout)["score"]["by_policy"]["exact"] == 0.75 * 0.3 + 0.5 * 0.7
    params.write_text("{}", encoding="utf-8")
    res = run("--gold", gold, "--pred", miss, "--allow-missing", "--params", params)
    assert res.returncode == 2 and "no 'total' / 'ratio_contest' / 'ratio_exact'" in res.stderr
    res = run("--gold", gold, "--pred", tmp_path / "nope.jsonl")
    assert res.returncode == 2 and "nope.jsonl: cannot read" in res.stderr


def test_help():
    res = run("--help")
    assert res.returncode == 0 and "--tolerance" in res.stdout and "--ratio" in res.stdout
