"""Hostile submissions: the red team's findings of issue 13, each built here from a real fixture submission.

Three groups: submissions verify.py used to pass (each must now FAIL, in the check that owns it); inputs that made
it hang or eat memory (each must finish in < 30 s and < 1 GB with a clear FAIL line: they run in a subprocess whose
time and peak RSS are measured); inputs that made a tool print a traceback (each must be one line). Big inputs are
built sparse (truncate) or as a lying zip header, never by writing gigabytes. Judge- and user-facing behaviour of the
Makefile and the tools closes the file.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

import submission_fixtures as sf
import verify
from lorakit import ckpt_io
from lorakit import manifest as mf
from lorakit.io import KitError

REPO = Path(__file__).resolve().parents[1]
VERIFY = str(REPO / "tools" / "verify.py")
GATE = sf.FIXTURE_GATE
TIME_LIMIT_S = 30.0
MEMORY_LIMIT_MB = 1024.0
MEASURED = []  # (case, seconds, peak MB) of every subprocess run, printed at the end (pytest -s)


# `built` (the packaged fixture submission) and `sub` (a private copy of it) come from conftest.py
failed = sf.failed


def run_verify(capsys, target, *extra):
    rc, _, checks = sf.run_verify(capsys, target, *extra)
    return rc, checks


# runs verify.py as __main__ and, at exit, writes its peak RSS (VmHWM of its own address space: not the forked
# test process's, which os.wait4's ru_maxrss would report) to $HWM_FILE
_MEASURE = """
import atexit, os, runpy, sys
def _hwm():
    with open('/proc/self/status') as fh:
        kb = [ln.split()[1] for ln in fh if ln.startswith('VmHWM:')]
    with open(os.environ['HWM_FILE'], 'w') as out:
        out.write(kb[0] if kb else '0')
atexit.register(_hwm)
sys.argv = sys.argv[1:]
sys.path.insert(0, os.path.dirname(sys.argv[0]))
runpy.run_path(sys.argv[0], run_name='__main__')
"""


def measured_verify(case, target, *extra, env=None):
    """Run verify.py on `target` in a subprocess: (exit code, stdout, stderr, seconds, peak RSS in MB); killed
    after 2 x TIME_LIMIT_S."""
    hwm = Path(str(target) + ".hwm")
    cmd = [sys.executable, "-c", _MEASURE, VERIFY, str(target)] + list(extra) + (
        GATE if "--squad-thresholds" not in extra else [])
    t0 = time.monotonic()
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=2 * TIME_LIMIT_S,
                         env=dict(os.environ, HWM_FILE=str(hwm), **(env or {})))
    seconds = time.monotonic() - t0
    peak_mb = int(hwm.read_text() or 0) / 1024.0 if hwm.is_file() else float("nan")
    MEASURED.append((case, seconds, peak_mb))
    return res.returncode, res.stdout, res.stderr, seconds, peak_mb


def assert_quick_clear_fail(case, target, phrase, *extra, env=None):
    """verify must exit 1 within the time and memory limits, without a traceback, with a FAIL line naming the
    cause (`phrase`); returns that line."""
    rc, out, err, seconds, peak = measured_verify(case, target, *extra, env=env)
    assert "Traceback" not in err and "Traceback" not in out, err[-2000:]
    assert rc == 1, (rc, out[-2000:], err[-2000:])
    assert seconds < TIME_LIMIT_S and peak < MEMORY_LIMIT_MB, (case, seconds, peak)
    lines = [ln for ln in out.splitlines() if ln.startswith("FAIL") and phrase in ln]
    assert lines, out
    return lines[0]


def write_manifest_text(sub, text):
    (sub / "manifest.json").write_text(text, encoding="utf-8")


def set_yaml(sub, rel, fn):
    """Edit a yaml of the submission as data (what a forger can write), then re-hash."""
    import yaml

    path = sub / rel
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    fn(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def set_adapter_tensor(sub, name, fn):
    path = sub / "adapter" / "adapter.ckpt"
    tensors = ckpt_io.read_ckpt(path)
    tensors[name] = ckpt_io.NpTensor(fn(tensors[name].array.copy()).astype(np.float32), "Float32")
    ckpt_io.write_ckpt(path, tensors)


# ================================================================ verify MISSED these: each must FAIL now

def test_zero_e_notation_completions_score_nothing(sub, capsys):
    """`0e1000` / `0e5` as every completion: the exponent used to give -1000 decimals, i.e. any gold within
    0.5e1000 was 'correct' under prediction-precision (100 %). Now E-notation never widens the precision."""
    from lorakit.metrics import gold_answer, score_predictions

    gold = [json.loads(ln) for ln in (sub / "eval" / "math_gold.jsonl").read_text(encoding="utf-8").splitlines()]
    near_zero = sum(1 for r in gold if abs(gold_answer(r["problem"], r["solution"])[2].value) <= 0.5)
    assert near_zero < 3  # what a plain "0" may round to
    for garbage in ("0e1000", "0e5", "0E+9"):
        rep = score_predictions(gold, [{"id": str(k), "completion": garbage} for k in range(1, len(gold) + 1)])
        assert rep["policies"]["prediction-precision"]["correct"] == near_zero, garbage
    # the forger's submission: every completion 0e1000, every claim 24/24
    sf.edit_lines(sub / "eval" / "predictions.jsonl", lambda lines: [
        json.dumps(dict(json.loads(ln), completion="= 0e1000")) + "\n" for ln in lines])
    m = sf.load_manifest(sub)
    m["metrics"]["math"]["policies"]["prediction-precision"] = {"accuracy": 1.0, "correct": 24}
    sf.save_manifest(sub, m)
    sf.rehash(sub)
    rc, checks = run_verify(capsys, sub)
    assert rc == 1 and "policies.prediction-precision.correct=24, recomputed %d" % near_zero in \
        checks["math"]["detail"]


def test_squad_gate_is_the_judges(sub, capsys):
    """Thresholds written in the submission (here 0 / 0) are never the verdict: the default is the contest's."""
    m = sf.load_manifest(sub)
    m["metrics"]["squad"]["thresholds"] = {"f1": 0.0, "em": 0.0}
    sf.save_manifest(sub, m)
    rc, checks = run_verify(capsys, sub, "--squad-thresholds", "53.8832", "39.7533")
    assert rc == 1
    rc = verify.main([str(sub), "--json"])  # no thresholds given: the contest's
    detail = {c["check"]: c for c in json.loads(capsys.readouterr().out)["checks"]}["squad"]["detail"]
    assert rc == 1 and "below the contest's thresholds F1 53.8832 / EM 39.7533 (the default" in detail
    # `make verify SQUAD_THRESHOLDS=` reaches verify.py
    res = subprocess.run(["make", "-n", "verify", "SUBMISSION=x.zip", "SQUAD_THRESHOLDS=1 2", "POLICY=exact"],
                         cwd=str(REPO), capture_output=True, text=True)
    assert "--squad-thresholds 1 2" in res.stdout and "--policy exact" in res.stdout


@pytest.mark.parametrize("literal", ["Infinity", "-Infinity", "NaN", "1e999"])
def test_non_finite_manifest_numbers(sub, capsys, literal):
    text = (sub / "manifest.json").read_text(encoding="utf-8")
    write_manifest_text(sub, re.sub(r'"value": [0-9.e-]+', '"value": %s' % literal, text, count=1))
    rc, checks = run_verify(capsys, sub)
    assert rc == 1 and list(failed(checks)) == ["manifest"]
    assert "not a JSON number" in checks["manifest"]["detail"] or "not finite" in checks["manifest"]["detail"]


def test_report_numbers_match_whole_tokens(sub, capsys):
    """REPORT.md must state the score as a number of its own: not inside a longer one (nor `inf` in `inference`)."""
    m = sf.load_manifest(sub)
    score = "%.6f" % m["metrics"]["score"]["value"]
    sf.edit_lines(sub / "REPORT.md", lambda lines: [ln.replace(score, score + "9") for ln in lines])
    sf.rehash(sub)
    rc, checks = run_verify(capsys, sub)
    assert rc == 1 and "REPORT.md does not state the manifest's score %s" % score in checks["report"]["detail"]
    assert re.search(verify_token(score), "score 0.820805.") and not re.search(verify_token("inf"), "inference")


def verify_token(token):
    return r"(?<![\w.])%s(?![\w]|\.\d)" % re.escape(token)


def test_ratio_compared_relatively(sub, capsys):
    """ratio_contest 0.0 (off by 4.5e-7 absolute: passed the old 1e-5 absolute tolerance) fails now."""
    m = sf.load_manifest(sub)
    m["params"]["ratio_contest"] = 0.0
    m["params"]["ratio_contest_full"] = 0.0
    sf.save_manifest(sub, m)
    rc, checks = run_verify(capsys, sub)
    assert rc == 1 and "manifest params.ratio_contest=0.0, recomputed 4.46326276e-07" in checks["ratio"]["detail"]
    # 1e-6 relative: a ratio off by 2e-6 relative fails, the leaderboard's 6-digit rounding passes
    assert not verify.ratio_matches(0.0139825218477 * (1 + 2e-6), 0.0139825218477)
    assert verify.ratio_matches(0.000424393, 3407872 / 8.03e9) and verify.ratio_matches(4.46326e-07, 3584 / 8.03e9)


def test_freeze_rules_cannot_shrink_the_trainable_count(sub, capsys):
    """A config that 'freezes' half the LoRA tensors (freeze_include) with every claim halved to match: the count
    is taken from the tensors in the adapter, and frozen-yet-non-zero LoRA tensors fail."""
    set_yaml(sub, "config/train.yaml", lambda d: d["model"]["model_config"]["pet_config"].update(
        freeze_include=["*layers.1.*"]))
    m = sf.load_manifest(sub)
    for key, value in (("trainable", 1792), ("ratio_exact", 1792 / 256320.0),
                       ("ratio_contest", float("%.6g" % (1792 / 8.03e9))), ("ratio_contest_full", 1792 / 8.03e9)):
        m["params"][key] = value
    sf.save_manifest(sub, m)
    sf.rehash(sub)
    rc, checks = run_verify(capsys, sub)
    assert rc == 1
    assert "freeze 4 LoRA tensor(s) that are non-zero in the adapter" in checks["ratio"]["detail"]
    assert "params.trainable=1792, recomputed 3584" in checks["ratio"]["detail"]


@pytest.mark.parametrize("where, edit, check, message", [
    ("manifest", lambda m: m["metrics"]["squad"]["official"].update(f1=99.0), "squad",
     "metrics.squad.official.f1=99.0, recomputed 75"),
    ("manifest", lambda m: m["params"].update(lora_params=1), "ratio", "params.lora_params=1, recomputed 3584"),
    ("manifest", lambda m: m["params"].update(bonus=7), "ratio", "params.bonus=7: not a number verify can"),
    ("manifest", lambda m: m["metrics"]["math"]["gold"].update(records=99), "math", "gold.records=99, recomputed 24"),
    ("manifest", lambda m: m.update(created="last tuesday"), "schema", "created 'last tuesday' is not an RFC 3339"),
    ("manifest", lambda m: m.update(created="2999-01-01T00:00:00Z"), "schema", "is in the future"),
    ("eval/squad_report.json", lambda r: r["emf1"].update(F1=99.0), "squad", "emf1.F1=99.0, recomputed 65.2"),
    ("eval/squad_report.json", lambda r: r["gate"].update(em=99.0), "squad", "gate.em=99.0, recomputed 25"),
    ("eval/math_report.json", lambda r: r["families"]["add"]["policies"]["exact"].update(correct=6), "math",
     "families.add.policies.exact.correct=6, recomputed 5"),
    ("eval/params.json", lambda r: r.update(network_total=1), "ratio", "network_total=1, recomputed 259904"),
    ("adapter/adapter_config.json", lambda r: r["tensors"][0].update(norm=9.0), "adapter", "tensors[0].norm=9.0"),
])
def test_every_claimed_number_is_rederived(sub, capsys, where, edit, check, message):
    if where == "manifest":
        m = sf.load_manifest(sub)
        edit(m)
        sf.save_manifest(sub, m)
    else:
        obj = json.loads((sub / where).read_text(encoding="utf-8"))
        edit(obj)
        (sub / where).write_text(json.dumps(obj), encoding="utf-8")
        sf.rehash(sub)
    rc, checks = run_verify(capsys, sub)
    assert rc == 1 and message in checks[check]["detail"], failed(checks)


@pytest.mark.parametrize("rel, value", [("eval/params.json", []), ("eval/math_report.json", "x"),
                                        ("eval/squad_report.json", 3)])
def test_a_report_that_is_not_an_object_fails(sub, capsys, rel, value):
    (sub / rel).write_text(json.dumps(value), encoding="utf-8")
    sf.rehash(sub)
    rc, checks = run_verify(capsys, sub)
    assert rc == 1 and any("%s: top level is" % rel in d and "not a JSON object" in d for d in failed(checks).values())


def test_duplicate_json_keys_are_refused(sub, capsys):
    # manifest: a second "metrics" object, which json.load would silently keep
    text = (sub / "manifest.json").read_text(encoding="utf-8")
    write_manifest_text(sub, text.replace('"metrics": {', '"metrics": {"math": {}}, "metrics": {', 1))
    rc, checks = run_verify(capsys, sub)
    assert rc == 1 and "duplicate key 'metrics'" in checks["manifest"]["detail"]
    # a JSONL line with two completions
    write_manifest_text(sub, text)
    sf.edit_lines(sub / "eval" / "predictions.jsonl",
                  lambda lines: [lines[0].replace('"completion":', '"completion": "0", "completion":')] + lines[1:])
    sf.rehash(sub)
    rc, checks = run_verify(capsys, sub)
    assert rc == 1 and "eval/predictions.jsonl:1: duplicate key 'completion'" in checks["math"]["detail"]


def test_score_policy_is_the_judges(sub, capsys):
    """A submission scored under `tolerance` (its best policy), consistently: the judge's policy decides."""
    from lorakit.metrics import contest_score

    m = sf.load_manifest(sub)
    acc = m["metrics"]["math"]["policies"]["tolerance"]["accuracy"]
    m["metrics"]["math"]["primary_policy"] = "tolerance"
    m["metrics"]["score"].update(policy="tolerance", accuracy=acc,
                                 value=contest_score(acc, m["metrics"]["score"]["ratio"]))
    sf.save_manifest(sub, m)
    rc, checks = run_verify(capsys, sub)
    assert rc == 1 and set(failed(checks)) == {"score", "report"}  # REPORT.md states the old score too
    assert "the judge's policy is 'prediction-precision' (the contest's" in checks["score"]["detail"]
    assert run_verify(capsys, sub, "--policy", "tolerance")[0] == 1  # REPORT.md still states the old score
    sf.edit_lines(sub / "REPORT.md", lambda lines: lines + ["score %.6f\n" % m["metrics"]["score"]["value"]])
    sf.rehash(sub)
    rc, checks = run_verify(capsys, sub, "--policy", "tolerance")
    assert rc == 0, failed(checks)


def test_big_text_files_are_not_skipped_and_names_are_escaped(sub, tmp_path, capsys):
    # a 300 MB log (sparse): refused by size, not silently left unscanned
    with open(str(sub / "logs" / "big.log"), "wb") as fh:
        fh.truncate(300 << 20)
    rc, checks = run_verify(capsys, sub)
    assert rc == 1 and "logs/big.log: 314572800 bytes, over the 67108864-byte limit for text files" in \
        checks["layout"]["detail"]
    (sub / "logs" / "big.log").unlink()
    hits = mf.scan_absolute_paths(sub, ["REPORT.md"], max_bytes=100)
    assert hits and "too big to scan" in hits[0]
    # names with a terminal escape and a bidi override are printed escaped; long names are cut and counted
    (sub / "eval" / "\x1b[2Jgotcha.txt").write_text("x", encoding="utf-8")
    rc = verify.main([str(sub)] + GATE)
    out = capsys.readouterr().out
    assert rc == 1 and "\x1b" not in out and "eval/\\x1b[2Jgotcha.txt: control character in name" in out
    (sub / "eval" / "\x1b[2Jgotcha.txt").unlink()
    (sub / "eval" / "\u202eevil.txt").write_text("x", encoding="utf-8")
    (sub / "eval" / ("n" * 250 + ".txt")).write_text("x", encoding="utf-8")
    rc = verify.main([str(sub)] + GATE)
    out = capsys.readouterr().out
    assert rc == 1 and "\u202e" not in out and "eval/\\u202eevil.txt: undeclared file" in out
    assert "eval/" + "n" * 155 + "...(+99 chars): undeclared file" in out


def test_tiny_b_tensors_are_not_trained(sub, capsys):
    name = "model.layers.0.attention.wq.mindpet_delta_lora_b"
    set_adapter_tensor(sub, name, lambda a: np.full_like(a, 1e-40))
    sf.rehash(sub)
    rc, checks = run_verify(capsys, sub)
    assert rc == 1 and name + ": RMS 1e-40 is below 1e-06 x its A's RMS" in checks["adapter"]["detail"]


# ================================================================ hangs and memory: < 30 s, < 1 GB, one clear line

def test_yaml_alias_bomb_and_huge_yaml(sub):
    bomb = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        "a%d: &a%d [%s]\n" % (i, i, ", ".join(["*a%d" % (i - 1)] * 10)) for i in range(1, 9))
    (sub / "config" / "train.yaml").write_text(bomb + (sub / "config" / "train.yaml").read_text(), encoding="utf-8")
    sf.rehash(sub)
    line = assert_quick_clear_fail("yaml alias bomb", sub, "config/train.yaml")
    assert "alias bomb" in line or "aliases" in line
    (sub / "config" / "train.yaml").write_text("k: " + "x" * (5 << 20) + "\n", encoding="utf-8")
    sf.rehash(sub)
    assert_quick_clear_fail("5 MB yaml", sub, "config/train.yaml: 5242884 bytes, over the 1048576-byte limit")


@pytest.mark.parametrize("where", ["target_modules", "exclude_layers"])
def test_regex_backtracking_is_bounded(sub, where):
    redos = "(.|.|.|.)*!"  # 4^16 steps on the cell name `apply_rotary_emb`: hours with re.match
    if where == "target_modules":
        set_yaml(sub, "config/train.yaml", lambda d: d["model"]["model_config"]["pet_config"].update(
            target_modules=redos))
        set_yaml(sub, "config/eval.yaml", lambda d: d["model"]["model_config"]["pet_config"].update(
            target_modules=redos))
        cfg = json.loads((sub / "adapter" / "adapter_config.json").read_text(encoding="utf-8"))
        cfg["target_modules"] = redos
        (sub / "adapter" / "adapter_config.json").write_text(json.dumps(cfg), encoding="utf-8")
        m = sf.load_manifest(sub)
        m["lora"]["target_modules"] = redos
        sf.save_manifest(sub, m)
    else:
        set_yaml(sub, "config/train.yaml", lambda d: d["model"]["model_config"]["pet_config"].update(
            exclude_layers=[redos]))
    sf.rehash(sub)
    assert_quick_clear_fail("ReDoS in " + where, sub, "took over 2 s (catastrophic backtracking?)")


def test_checkpoint_varint_and_packed_dims(sub):
    path = sub / "adapter" / "adapter.ckpt"
    path.write_bytes(b"\x0a" + b"\xff" * (1 << 20) + b"\x01")  # a 1 MB varint as the first entry's length
    sf.rehash(sub)
    assert_quick_clear_fail("1 MB varint", sub, "FAIL adapter   adapter/adapter.ckpt: varint longer than 10 bytes")
    # one entry whose packed dims field claims 10^8 bytes; the file is sparse (zeros = 10^8 one-byte dims)
    n = 10 ** 8
    tensor = b"\x0a" + ckpt_io._enc_varint(n)
    value = b"\x0a\x01t" + b"\x12" + ckpt_io._enc_varint(len(tensor) + n)
    with open(str(path), "wb") as fh:
        fh.write(b"\x0a" + ckpt_io._enc_varint(len(value) + len(tensor) + n) + value + tensor)
        fh.truncate(fh.tell() + n)
    sf.rehash(sub)
    assert_quick_clear_fail("10^8 packed dims", sub, "FAIL adapter   adapter/adapter.ckpt: packed dims of 100000000 bytes")


def test_billion_layers(sub):
    set_yaml(sub, "config/train.yaml", lambda d: d["model"]["model_config"].update(num_layers=10 ** 9))
    set_yaml(sub, "config/eval.yaml", lambda d: d["model"]["model_config"].update(num_layers=10 ** 9))
    m = sf.load_manifest(sub)
    m["model"]["num_layers"] = 10 ** 9
    sf.save_manifest(sub, m)
    sf.rehash(sub)
    assert_quick_clear_fail("num_layers 10^9", sub, "model_config.num_layers 1000000000: must be an integer in")


def test_huge_completions(sub):
    path = sub / "eval" / "predictions.jsonl"
    with open(str(path), "w", encoding="utf-8") as fh:  # one 100 MB completion
        fh.write('{"id": "1", "completion": "' + "1" * (100 << 20) + '"}\n')
    sf.rehash(sub)
    assert_quick_clear_fail("100 MB completion", sub, "eval/predictions.jsonl: %d bytes, over the 67108864-byte "
                            "limit for text files" % path.stat().st_size)
    with open(str(path), "w", encoding="utf-8") as fh:  # under the file limit, one line over the line limit
        fh.write('{"id": "1", "completion": "' + "1" * (3 << 20) + '"}\n')
    sf.rehash(sub)
    assert_quick_clear_fail("3 MB line", sub, "eval/predictions.jsonl:1: line longer than 1048576 bytes")


def test_huge_manifest_and_report(sub):
    shutil.copyfile(str(sub / "manifest.json"), str(sub.parent / "manifest.keep"))
    with open(str(sub / "manifest.json"), "ab") as fh:
        fh.truncate(261 * 1000 * 1000)  # 261 MB (sparse)
    assert_quick_clear_fail("261 MB manifest", sub, "manifest.json: 261000000 bytes, over the")
    shutil.copyfile(str(sub.parent / "manifest.keep"), str(sub / "manifest.json"))
    with open(str(sub / "REPORT.md"), "ab") as fh:
        fh.write(b"\n" + b"x" * (60 << 20))  # under the 64 MiB text limit, over REPORT.md's own
    sf.rehash(sub)
    assert_quick_clear_fail("60 MB REPORT.md", sub, "REPORT.md: 62", "--squad-thresholds", "40", "20")


def lying_zip(src_folder, zpath, member, claimed_size, data=b"x"):
    """The submission zipped, plus `member` whose central-directory header claims `claimed_size` bytes (zip64)
    while holding only `data`: a 4 GiB member without writing 4 GiB."""
    with zipfile.ZipFile(str(zpath), "w") as zf:
        for p in sorted(Path(src_folder).rglob("*")):
            if p.is_file():
                zf.write(str(p), "fx/" + p.relative_to(src_folder).as_posix())
        zf.writestr(member, data)
        zf.infolist()[-1].file_size = claimed_size
    return zpath


def test_zip_member_sizes_checked_before_extraction(sub, tmp_path):
    env = {"TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir()
    z = lying_zip(sub, tmp_path / "claims4g.zip", "fx/adapter/extra.ckpt", 4 << 30)
    line = assert_quick_clear_fail("zip member claiming 4 GiB", z, "fx/adapter/extra.ckpt: 4294967296 bytes, over "
                                   "the per-file limit", env=env)
    assert "refused" in line
    # a real 300 MB member (deflated to 300 KB) the manifest does not declare: refused before anything is written
    z2 = tmp_path / "bomb.zip"
    shutil.copyfile(str(lying_zip(sub, tmp_path / "base.zip", "fx/x.txt", 1)), str(z2))
    with zipfile.ZipFile(str(z2), "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(Path(sub).rglob("*")):
            if p.is_file():
                zf.write(str(p), "fx/" + p.relative_to(sub).as_posix())
        with zf.open(zipfile.ZipInfo("fx/adapter/blob.bin"), "w", force_zip64=True) as dst:
            block = b"\0" * (1 << 20)
            for _ in range(300):
                dst.write(block)
    assert_quick_clear_fail("undeclared 300 MB member", z2, "fx/../adapter/blob.bin" if False else
                            "adapter/blob.bin: not declared in manifest.json (not extracted)", env=env)
    assert list((tmp_path / "tmp").iterdir()) == []  # nothing left behind either


# ================================================================ tracebacks that must be one line

def test_invalid_utf8_and_over_long_zip_names(sub, tmp_path, capsys):
    z = tmp_path / "badname.zip"
    with zipfile.ZipFile(str(z), "w") as zf:
        zf.write(str(sub / "manifest.json"), "fx/manifest.json")
        zf.writestr("fx/\u00c4\u00c4.txt", "x")  # non-ASCII: zipfile flags the name as UTF-8
    z.write_bytes(z.read_bytes().replace("\u00c4\u00c4".encode("utf-8"), b"\xff\xfe\xff\xfe"))  # not UTF-8
    rc, checks = run_verify(capsys, z)
    assert rc == 1 and "not a readable zip: UnicodeDecodeError" in checks["input"]["detail"]
    z2 = tmp_path / "longname.zip"
    with zipfile.ZipFile(str(z2), "w") as zf:
        zf.write(str(sub / "manifest.json"), "fx/manifest.json")
        zf.writestr("fx/" + "a" * 5000, "x")
    rc, checks = run_verify(capsys, z2)
    assert rc == 1 and "name of 5003 characters (at most 512)" in checks["input"]["detail"]
    deep = sub / "eval"
    for _ in range(5):
        deep = deep / ("d" * 120)
    deep.mkdir(parents=True)
    (deep / "x.txt").write_text("x", encoding="utf-8")
    rc, checks = run_verify(capsys, sub)
    assert rc == 1 and "characters (at most 512)" in checks["layout"]["detail"]


def test_deep_nesting(sub, capsys):
    text = (sub / "manifest.json").read_text(encoding="utf-8")
    write_manifest_text(sub, text.replace('"data": {', '"deep": %s1%s, "data": {' % ("[" * 100000, "]" * 100000), 1))
    rc, checks = run_verify(capsys, sub)
    assert rc == 1 and "manifest.json: nested too deeply" in checks["manifest"]["detail"]
    write_manifest_text(sub, text)
    # a million-digit plain number: refused from the event stream, before int() (quadratic on older Pythons) sees it
    (sub / "config" / "train.yaml").write_text("a: " + "1" * (1000 * 1000) + "\n", encoding="utf-8")
    sf.rehash(sub)
    rc, checks = run_verify(capsys, sub)
    assert rc == 1 and "config/train.yaml: a plain number of 1000000 characters" in checks["config"]["detail"]
    for depth in (100, 100000):  # libyaml stops the second one itself ("exceeded maximum nesting depth")
        (sub / "config" / "train.yaml").write_text("a: " + "[" * depth + "]" * depth + "\n", encoding="utf-8")
        sf.rehash(sub)
        rc, checks = run_verify(capsys, sub)
        detail = checks["config"]["detail"]
        assert rc == 1 and detail.startswith("config/train.yaml: ")
        assert "nested deeper than 64 levels" in detail or "exceeded maximum nesting depth" in detail


def test_infinite_and_zero_dims(sub, capsys):
    from lorakit import params

    for bad in (float("inf"), float("nan"), 0, -4, True, "64", 10 ** 9):
        with pytest.raises(KitError, match="hidden_size"):
            params.base_param_table({"hidden_size": bad, "num_layers": 2, "num_heads": 4, "vocab_size": 10})
    set_yaml(sub, "config/train.yaml", lambda d: d["model"]["model_config"].update(hidden_size=float("inf")))
    sf.rehash(sub)
    rc, checks = run_verify(capsys, sub)
    assert rc == 1 and "config/train.yaml: non-finite number inf" in checks["config"]["detail"]
    # num_heads 0 everywhere (the schema fails it too, the later checks must not divide by it)
    set_yaml(sub, "config/train.yaml", lambda d: d["model"]["model_config"].update(hidden_size=64, num_heads=0))
    set_yaml(sub, "config/eval.yaml", lambda d: d["model"]["model_config"].update(num_heads=0))
    m = sf.load_manifest(sub)
    m["model"]["num_heads"] = 0
    sf.save_manifest(sub, m)
    sf.rehash(sub)
    rc, checks = run_verify(capsys, sub)
    assert rc == 1 and "model_config.num_heads 0: must be an integer in [1, 1024]" in checks["config"]["detail"]


def test_long_numbers(sub, tmp_path, capsys):
    text = (sub / "manifest.json").read_text(encoding="utf-8")
    write_manifest_text(sub, re.sub(r'"bytes": \d+', '"bytes": ' + "9" * 5000, text, count=1))
    rc, checks = run_verify(capsys, sub)
    assert rc == 1 and "integer with 5000 digits (at most 40)" in checks["manifest"]["detail"]
    # score_math: 5,000-digit numbers in completions are no answer, not a traceback
    import score_math

    gold = sub / "eval" / "math_gold.jsonl"
    pred = tmp_path / "pred.jsonl"
    rows = [json.loads(ln) for ln in gold.read_text(encoding="utf-8").splitlines()]
    pred.write_text("".join(json.dumps({"id": str(k), "completion": "= " + "7" * 5000 + "." + "1" * 5000}) + "\n"
                            for k in range(1, len(rows) + 1)), encoding="utf-8")
    assert score_math.main(["--gold", str(gold), "--pred", str(pred), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["policies"]["exact"]["correct"] == 0


def test_infinite_tolerance_is_one_line(sub, tmp_path):
    res = subprocess.run([sys.executable, VERIFY, str(sub), "--tolerance", "inf"], capture_output=True, text=True)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "argument --tolerance: 'inf' is not a finite number" in res.stderr
    res = subprocess.run([sys.executable, str(REPO / "tools" / "score_math.py"), "--gold", str(sub / "eval" /
                          "math_gold.jsonl"), "--pred", str(sub / "eval" / "predictions.jsonl"), "--tolerance", "1e999"],
                         capture_output=True, text=True)
    assert res.returncode == 2 and res.stderr.strip().count("\n") == 0 and "must be a number in [0, 1)" in res.stderr


def test_no_leftover_temp_folders_when_killed(sub, tmp_path):
    """SIGTERM while a zip is being extracted: the folder is removed; after a SIGKILL the next run sweeps it."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    big = sub / "logs" / "big.bin"  # 40 MB of a declared, binary member: extraction takes a moment
    big.write_bytes(os.urandom(40 << 20))
    sf.rehash(sub)
    z = tmp_path / "slow.zip"
    mf.build_zip(sub, z, "fx")
    for sig in (signal.SIGTERM, signal.SIGKILL):
        proc = subprocess.Popen([sys.executable, VERIFY, str(z)] + GATE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, env=dict(os.environ, TMPDIR=str(tmp)))
        deadline = time.time() + 20
        while time.time() < deadline and not any(tmp.glob("kit-verify-*/fx")):  # extracting (big.bin takes a while)
            time.sleep(0.002)
        assert any(tmp.glob("kit-verify-*")), "verify never started extracting"
        proc.send_signal(sig)
        proc.wait(timeout=30)
        if sig == signal.SIGTERM:
            assert proc.returncode == 128 + sig and "temporary files removed" in proc.stderr.read().decode()
            assert list(tmp.iterdir()) == []
        else:
            assert any(tmp.glob("kit-verify-%d-*" % proc.pid))  # SIGKILL: nothing could run
            res = subprocess.run([sys.executable, VERIFY, str(tmp_path / "nope")], capture_output=True,
                                 env=dict(os.environ, TMPDIR=str(tmp)))
            assert res.returncode == 2 and list(tmp.iterdir()) == []
        proc.stderr.close()


# ================================================================ judges and users

def make(*args, **kw):
    return subprocess.run(["make", "--no-print-directory"] + list(args), cwd=str(REPO), capture_output=True,
                          text=True, **kw)


def test_make_verify_needs_a_submission_and_warns_without_gold(built):
    res = make("verify")
    assert res.returncode == 2 and "make verify: name the submission: SUBMISSION=" in res.stderr
    res = make("verify", "SUBMISSION=%s" % (built / "fx"), 'SQUAD_THRESHOLDS=40 20')
    assert res.returncode == 0, res.stdout + res.stderr
    assert "warning: no GOLD=" in res.stderr and "VERIFIED" in res.stdout


def test_make_train_8b_without_base_ckpt_fails_before_building(tmp_path):
    res = make("train", "PROFILE=llama3-8b", "RUN=%s" % (tmp_path / "run"))
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.strip().endswith("make train: PROFILE=llama3-8b needs BASE_CKPT=/path/to/llama3-8B.ckpt.  Stop.")
    assert res.stderr.strip().count("\n") == 0 and not (tmp_path / "run").exists()
    res = make("train", "PROFILE=tiny", "BASE_CKPT=%s" % (tmp_path / "nope.ckpt"), "RUN=%s" % (tmp_path / "run"))
    assert res.returncode == 2 and "not found.  Stop." in res.stderr and not (tmp_path / "run").exists()


def test_make_data_with_a_missing_raw_file_is_one_line(tmp_path):
    res = make("data", "RAW=/missing/train.json", "RUN=%s" % (tmp_path / "run"))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "convert_dataset.py: error: /missing/train.json: no such file" in res.stderr


def test_unknown_set_keys_name_the_closest_one():
    from lorakit.config import load_config

    with pytest.raises(KitError, match=r"did you mean model\.model_config\.pet_config\.lora_rank\?"):
        load_config("tiny", ["model.model_config.pet_config.lora_rnak=4"])
    with pytest.raises(KitError, match=r"did you mean runner_config\.epochs\?"):
        load_config("tiny", ["runner_config.epoch=2"])
    cfg = load_config("tiny", ["+model.model_config.pet_config.exclude_layers=['1']"])  # `+` adds a key
    assert cfg["model"]["model_config"]["pet_config"]["exclude_layers"] == ["1"]


def test_steps_fit_the_warmup(tmp_path):
    import finetune

    data = tmp_path / "d.mindrecord"
    data.write_bytes(b"x")
    args = finetune.build_parser().parse_args([
        "--config", "tiny", "--train-data", str(data), "--run-dir", str(tmp_path / "r"), "--load-checkpoint", "",
        "--steps", "20", "--set", "+lr_schedule.warmup_steps=100", "--set", "lr_schedule.warmup_ratio=null",
        "--set", "lr_schedule.total_steps=5000"])
    cfg, _ = finetune.resolve(args)
    assert cfg["lr_schedule"]["total_steps"] == 20 and cfg["lr_schedule"]["warmup_steps"] == 2


def test_dry_run_fails_when_preflight_fails(tmp_path):
    res = subprocess.run([sys.executable, str(REPO / "tools" / "launch.py"), "--dry-run", "--", "tools/finetune.py",
                          "--config", "tiny", "--train-data", str(tmp_path / "missing.mindrecord")],
                         cwd=str(REPO), capture_output=True, text=True)
    assert res.returncode == 1 and "training data not found" in res.stderr and "tools/finetune.py" in res.stdout


def test_training_progress_shows_elapsed_rate_and_eta(capsys):
    import launch

    now = [100.0]
    progress = launch.Progress(quiet=False, every=0.0, clock=lambda: now[0])
    progress.tty = False
    progress.update(0, 10, 1000, 2.5, "kit")  # first step seen after 0 s (compiling is not counted)
    now[0] = 160.0
    progress.update(0, 130, 1000, 2.0, "kit")
    err = capsys.readouterr().err
    assert "launch: step 130/1000 loss 2.0000, elapsed 0:01:00, 2 steps/s, ETA 0:07:15" in err


def test_demo_times_stages_and_verifies_once(tmp_path):
    import summary

    (tmp_path / "stage_times.tsv").write_text("100.0\t[1/7] generate\n130.5\t[2/7] base\n", encoding="utf-8")
    lines = summary.stage_lines(tmp_path / "stage_times.tsv", now=250.0)
    assert lines[0] == "time per stage:" and lines[1].endswith("30.5 s") and lines[2].endswith("2m00s")
    assert lines[3].startswith("  total") and lines[3].endswith("2m30s")
    res = make("-n", "demo", "PY=true")
    assert res.stdout.count("tools/verify.py") == 1, res.stdout[-3000:]
    assert "--json-out" in res.stdout and "stage_times.tsv" in res.stdout


# ================================================================ last: the measurements

def test_zz_report_measurements():
    """Prints the time and peak memory of every subprocess case (runs last in this file: pytest -s to see it)."""
    for case, seconds, peak in sorted(MEASURED, key=lambda m: -m[1]):
        print("hostile %-34s %6.2f s  %7.1f MB peak RSS" % (case, seconds, peak))
    assert all(s < TIME_LIMIT_S and p < MEMORY_LIMIT_MB for _, s, p in MEASURED)
