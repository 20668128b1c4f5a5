"""verify.py catches each tampering of a real (fixture-built) submission, with the right check and message.

Each content tampering is tried twice: as is (the `files` check must name the changed file) and "re-hashed"
(the forger also rewrote manifest.json's sha256 list, so `files` passes and the semantic check must catch it).
"""

import json
import shutil
import stat
import zipfile
from pathlib import Path

import pytest

import submission_fixtures as sf
import verify
from lorakit import manifest as mf

FIXTURE_GATE = sf.FIXTURE_GATE
run_verify, failed = sf.run_verify, sf.failed
load_manifest, save_manifest, rehash, edit_lines = sf.load_manifest, sf.save_manifest, sf.rehash, sf.edit_lines


# ---------------------------------------------------------------- the untouched submission

def test_clean_folder_and_zip_verify(built, capsys):
    rc, out, checks = run_verify(capsys, built / "fx")
    assert rc == 0 and out["verified"], failed(checks)
    assert checks["rerun"]["status"] == "SKIP"
    for name in ("schema", "files", "paths", "patches", "config", "adapter", "base", "ratio", "math", "squad", "score"):
        assert checks[name]["status"] == "PASS", name
    assert "18/24" in checks["math"]["detail"]
    assert "3584" in checks["ratio"]["detail"]
    rc, out, checks = run_verify(capsys, built / "fx.zip")
    assert rc == 0 and out["verified"], failed(checks)
    assert "zip" in checks["input"]["detail"]


def test_human_output_one_line_per_check(built, capsys):
    rc = verify.main([str(built / "fx")] + FIXTURE_GATE)
    text = capsys.readouterr().out.strip().splitlines()
    assert rc == 0
    assert text[-1].endswith("VERIFIED") and "0 failed" in text[-1]
    assert all(line.split()[0] in ("PASS", "SKIP") for line in text[:-1])
    assert len(text) == 17  # input, layout, manifest, 13 checks incl. base, rerun + summary


# ---------------------------------------------------------------- the tamperings the issue lists

def test_one_byte_changed_in_weights(sub, capsys):
    ckpt = sub / "adapter" / "adapter.ckpt"
    data = bytearray(ckpt.read_bytes())
    data[-100] ^= 0x01  # inside the last tensor's float data
    ckpt.write_bytes(bytes(data))
    rc, _, checks = run_verify(capsys, sub)
    assert rc == 1
    assert checks["files"]["status"] == "FAIL"
    assert "adapter/adapter.ckpt: content changed" in checks["files"]["detail"]


def test_accuracy_plus_001_in_manifest(sub, capsys):
    m = load_manifest(sub)
    m["metrics"]["math"]["policies"]["prediction-precision"]["accuracy"] += 0.01
    save_manifest(sub, m)
    rc, _, checks = run_verify(capsys, sub)
    assert rc == 1
    assert set(failed(checks)) == {"math"}
    assert "manifest metrics.math.policies.prediction-precision.accuracy=0.76, recomputed 0.75" in \
        checks["math"]["detail"]


def test_prediction_removed(sub, capsys):
    edit_lines(sub / "eval" / "predictions.jsonl", lambda lines: lines[:3] + lines[4:])
    rc, _, checks = run_verify(capsys, sub)
    assert rc == 1 and "eval/predictions.jsonl: content changed" in checks["files"]["detail"]
    rehash(sub)
    rc, _, checks = run_verify(capsys, sub)
    assert rc == 1 and checks["files"]["status"] == "PASS"
    assert checks["math"]["status"] == "FAIL"
    assert "1 of 24 gold ids have no prediction, e.g. 4" in checks["math"]["detail"]


def test_id_duplicated(sub, capsys):
    edit_lines(sub / "eval" / "predictions.jsonl", lambda lines: lines[:5] + [lines[4]] + lines[6:])
    rehash(sub)
    rc, _, checks = run_verify(capsys, sub)
    assert rc == 1 and checks["files"]["status"] == "PASS"
    assert "duplicate id '5'" in checks["math"]["detail"]


def test_ratio_edited(sub, capsys):
    m = load_manifest(sub)
    m["params"]["ratio_exact"] = 0.0013982522
    save_manifest(sub, m)
    rc, _, checks = run_verify(capsys, sub)
    assert rc == 1
    assert "manifest params.ratio_exact=0.0013982522, recomputed 0.0139825218" in checks["ratio"]["detail"]
    assert checks["score"]["status"] == "PASS"  # score is recomputed from the weights' ratio, not the manifest's


def test_trainable_edited(sub, capsys):
    m = load_manifest(sub)
    m["params"]["trainable"] = 1792
    save_manifest(sub, m)
    rc, _, checks = run_verify(capsys, sub)
    assert rc == 1 and "manifest params.trainable=1792, recomputed 3584" in checks["ratio"]["detail"]


def test_required_schema_field_missing(sub, capsys):
    m = load_manifest(sub)
    del m["metrics"]["score"]
    save_manifest(sub, m)
    rc, _, checks = run_verify(capsys, sub)
    assert rc == 1
    assert "$.metrics: 'score' is a required property" in checks["schema"]["detail"]


def test_undeclared_extra_file(sub, capsys):
    (sub / "eval" / "extra.txt").write_text("surprise\n", encoding="utf-8")
    rc, _, checks = run_verify(capsys, sub)
    assert rc == 1
    assert "eval/extra.txt: undeclared file (not in the manifest)" in checks["files"]["detail"]


def _zip_with(sub, zpath, extra_member):
    with zipfile.ZipFile(str(zpath), "w") as zf:
        for rel in sorted(p.relative_to(sub).as_posix() for p in sub.rglob("*") if p.is_file()):
            zf.write(str(sub / rel), "fx/" + rel)
        extra_member(zf)


def test_zip_slip_member(sub, tmp_path, capsys):
    z = tmp_path / "slip.zip"
    _zip_with(sub, z, lambda zf: zf.writestr("../x", "owned\n"))
    rc, _, checks = run_verify(capsys, z)
    assert rc == 1 and list(checks) == ["input"]
    assert "../x: parent-directory component '..' (zip-slip)" in checks["input"]["detail"]
    assert not (tmp_path / "x").exists()


def test_symlink_member(sub, tmp_path, capsys):
    def add_link(zf):
        info = zipfile.ZipInfo("fx/eval/link")
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")

    z = tmp_path / "link.zip"
    _zip_with(sub, z, add_link)
    rc, _, checks = run_verify(capsys, z)
    assert rc == 1 and "fx/eval/link: symbolic link member" in checks["input"]["detail"]


def test_symlink_in_folder(sub, capsys):
    (sub / "eval" / "link").symlink_to("/etc/hostname")
    rc, _, checks = run_verify(capsys, sub)
    assert rc == 1 and "eval/link: symbolic link (not allowed in a submission)" in checks["layout"]["detail"]


def test_absolute_and_oversized_members(sub, tmp_path, capsys):
    z = tmp_path / "abs.zip"
    _zip_with(sub, z, lambda zf: zf.writestr("/etc/cron.d/x", "x\n"))
    rc, _, checks = run_verify(capsys, z)
    assert rc == 1 and "/etc/cron.d/x: absolute path" in checks["input"]["detail"]
    z2 = tmp_path / "big.zip"
    _zip_with(sub, z2, lambda zf: None)
    rc, _, checks = run_verify(capsys, z2, "--max-member-bytes", "20000")
    assert rc == 1 and "over the per-file limit of 20000" in checks["input"]["detail"]
    rc, _, checks = run_verify(capsys, z2, "--max-members", "5")
    assert rc == 1 and "members announced, over the limit of 5" in checks["input"]["detail"]


# ---------------------------------------------------------------- more re-derived numbers

def test_absolute_path_in_a_text_file(sub, capsys):
    edit_lines(sub / "logs" / "train" / "worker_0.log", lambda lines: lines + ["saved /home/alice/ckpt/x.ckpt\n"])
    rehash(sub)
    rc, _, checks = run_verify(capsys, sub)
    assert rc == 1 and "logs/train/worker_0.log:3: /home/alice/ckpt/x.ckpt" in checks["paths"]["detail"]


def test_squad_and_score_edits(sub, capsys):
    m = load_manifest(sub)
    m["metrics"]["squad"]["f1"] = 70.0
    m["metrics"]["score"]["value"] += 0.001
    save_manifest(sub, m)
    rc, _, checks = run_verify(capsys, sub)
    assert rc == 1
    assert "manifest metrics.squad.f1=70.0, recomputed 65.2272727" in checks["squad"]["detail"]
    assert "manifest metrics.score.value=0.82180524" in checks["score"]["detail"]


def test_squad_gate_with_judge_thresholds(sub, capsys):
    rc, _, checks = run_verify(capsys, sub, "--squad-thresholds", "53.8832", "39.7533")
    assert rc == 1 and "gate not met: F1 65.2273 / EM 25.0000 below judge thresholds" in checks["squad"]["detail"]


def test_adapter_pet_config_mismatch(sub, capsys):
    edit_lines(sub / "config" / "eval.yaml", lambda lines: [ln.replace("lora_rank: 8", "lora_rank: 16")
                                                             for ln in lines])
    rehash(sub)
    rc, _, checks = run_verify(capsys, sub)
    assert rc == 1 and "config/eval.yaml rank=16 but adapter_config.json has 8" in checks["config"]["detail"]


def test_adapter_config_schema(sub, capsys):
    path = sub / "adapter" / "adapter_config.json"
    cfg = json.loads(path.read_text(encoding="utf-8"))
    cfg["tensors"][0]["shape"] = ["8", 64]
    path.write_text(json.dumps(cfg), encoding="utf-8")
    rehash(sub)
    rc, _, checks = run_verify(capsys, sub)
    assert rc == 1 and "adapter/adapter_config.json: 1 schema error(s): $.tensors[0].shape[0]: '8' is not of type " \
        "'integer'" in checks["config"]["detail"]
    assert mf.schema_errors(json.loads(json.dumps(cfg).replace('"8"', "8")),
                            mf.load_schema(mf.SCHEMA_DIR / mf.ADAPTER_SCHEMA_NAME)) == []


def test_train_and_inference_tokenizers_differ(sub, capsys):
    (sub / "data").mkdir()
    (sub / "data" / "data_report.json").write_text(json.dumps({"template": "plain", "tokenizer": {
        "sha256": "a" * 64}}), encoding="utf-8")
    (sub / "eval" / "predictions.jsonl.run.json").write_text(json.dumps({"template": "plain", "tokenizer": "tiny",
                                                                         "tokenizer_sha256": "b" * 64}),
                                                             encoding="utf-8")
    rehash(sub)
    rc, _, checks = run_verify(capsys, sub)
    assert rc == 1 and "training data tokenized with tokenizer sha256 aaaaaaaaaaaa..., predictions made with " \
        "bbbbbbbbbbbb...: not the same tokenizer" in checks["config"]["detail"]


def test_lora_b_all_zero(sub, capsys):
    from lorakit import ckpt_io

    path = sub / "adapter" / "adapter.ckpt"
    tensors = ckpt_io.read_ckpt(path)
    name = "model.layers.1.attention.wv.mindpet_delta_lora_b"
    tensors[name] = ckpt_io.NpTensor(tensors[name].array * 0, "Float32")
    ckpt_io.write_ckpt(path, tensors)
    rehash(sub)
    rc, _, checks = run_verify(capsys, sub)
    assert rc == 1 and name + ": all zero" in checks["adapter"]["detail"]


def test_wrong_gold_file(sub, tmp_path, capsys):
    other = tmp_path / "other.jsonl"
    other.write_text('{"problem": "计算 1 + 1 等于多少？", "solution": "1 + 1 = 2"}\n', encoding="utf-8")
    rc, _, checks = run_verify(capsys, sub, "--gold", str(other))
    assert rc == 1 and "is not the one the submission was scored on" in checks["math"]["detail"]


def test_gold_file_given_by_judge(sub, capsys):
    gold = sub.parent / "judge_gold.jsonl"
    shutil.copyfile(str(sub / "eval" / "math_gold.jsonl"), str(gold))
    rc, _, checks = run_verify(capsys, sub, "--gold", str(gold))
    assert rc == 0 and "--gold judge_gold.jsonl" in checks["math"]["detail"]


def test_not_a_submission(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    rc, _, checks = run_verify(capsys, tmp_path / "empty")
    assert rc == 1 and "no manifest.json" in checks["layout"]["detail"]
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK not a zip")
    rc, _, checks = run_verify(capsys, bad)
    assert rc == 1 and "not a readable zip" in checks["input"]["detail"]


# ---------------------------------------------------------------- library pieces

def test_relpath_rules():
    assert mf.relpath_problem("eval/predictions.jsonl") is None
    assert "zip-slip" in mf.relpath_problem("a/../../x")
    assert mf.relpath_problem("/abs") == "absolute path"
    assert "backslash" in mf.relpath_problem("a\\b")
    assert mf.relpath_problem("C:x") == "drive-letter path"
    assert "empty" in mf.relpath_problem("a//b")


def test_absolute_path_finder():
    text = ("/home/u/x.ckpt ok; --- /dev/null; +++ b/mindformers/x.py; 3/4; https://example.org/a/b; "
            "C:\\Users\\u\\x; runs/tiny/eval; ~/work/a; /tmp/t; file:///data/x; a/work/b")
    assert mf.find_absolute_paths(text) == ["/home/u/x.ckpt", "C:\\Users\\u\\x", "/tmp/t", "file:///data/x"]
    assert mf.scrub_text("from /work/main/runs/x and /data/w.ckpt", [("/work/main/", "")]) == \
        "from runs/x and [outside]/w.ckpt"


def test_schemas_are_valid_2020_12():
    import jsonschema

    for schema in (mf.load_schema(), mf.load_schema(mf.SCHEMA_DIR / mf.ADAPTER_SCHEMA_NAME)):
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_zip_is_not_listed_in_its_manifest(built):
    m = load_manifest(built / "fx")
    paths = [f["path"] for f in m["files"]]
    assert not any(p.endswith(".zip") for p in paths) and "manifest.json" not in paths
    with zipfile.ZipFile(str(built / "fx.zip")) as zf:
        names = sorted(n[len("fx/"):] for n in zf.namelist())
    assert names == sorted(paths + ["manifest.json"])


def test_extract_never_leaves_the_folder(tmp_path):
    z = tmp_path / "z.zip"
    with zipfile.ZipFile(str(z), "w") as zf:
        zf.writestr("ok/a.txt", "a")
        zf.writestr("ok/../../escape.txt", "b")
    dest = tmp_path / "dest"
    dest.mkdir()
    problems = mf.extract_zip(z, dest)
    assert problems and "zip-slip" in problems[0]
    assert list(dest.iterdir()) == [] and not (tmp_path / "escape.txt").exists()
    assert Path(str(dest)).is_dir()


# ---------------------------------------------------------------- --rerun (real MindFormers generation)

@pytest.mark.slow
def test_rerun_reproduces_and_catches_an_edited_completion(tmp_path, capsys):
    """Predictions made by predict.py are re-made from the submitted adapter + packaged base; one edited
    completion (re-hashed) is the only one that differs, and the default agreement (all identical) fails."""
    import package

    run = sf.build_run(tmp_path, real_predict=3)
    out = tmp_path / "sub"
    assert package.main(["--team", "rr", "--run", str(run), "--out-dir", str(out), "--no-zip"]) == 0
    sub = out / "rr"
    assert (sub / "base" / "base.ckpt").is_file()
    assert (sub / "eval" / "predictions.jsonl.run.json").is_file()
    assert (sub / "tokenizer" / "tiny.tiktoken").is_file()

    def edit(lines):
        row = json.loads(lines[1])
        row["completion"] = row["completion"] + " 42"
        return [lines[0], json.dumps(row, ensure_ascii=False) + "\n"] + lines[2:]

    edit_lines(sub / "eval" / "predictions.jsonl", edit)
    rehash(sub)
    capsys.readouterr()
    rc, _, checks = run_verify(capsys, sub, "--rerun")
    assert rc == 1
    assert [n for n, c in checks.items() if c["status"] == "FAIL"] == ["rerun"]  # garbage stays wrong: math passes
    detail = checks["rerun"]["detail"]
    assert "3 records re-predicted: 2/3 completions identical" in detail, detail


def test_score_ratio_rule():
    """Llama3-8B itself is scored with the contest's trainable / 8.03e9; any other model with trainable / total."""
    from lorakit.params import CONTEST_DENOMINATOR, summarize

    eight_b = summarize(mf.LLAMA3_8B_TOTAL, 3407872, 3407872, "config")
    assert mf.score_ratio(eight_b) == eight_b["ratio_contest"] == 0.000424393
    tiny = summarize(256320, 3584, 3584, "config")
    assert mf.score_ratio(tiny) == tiny["ratio_exact"] != tiny["ratio_contest"]
    assert abs(tiny["ratio_contest"] - 3584 / CONTEST_DENOMINATOR) < 1e-12
