"""Where every artefact of a run and of a submission lives, once.

RUN is a run folder (`runs/<profile>`, make's RUN=): each stage writes its files at these paths relative to it, and
the next stage, package.py and summary.py read them there. SUBMISSION is a submission folder (package.py writes it,
verify.py reads it). PACKAGED says which run file becomes which submission file. The Makefile takes the same paths
from layout.mk, which `make layout` regenerates from this module (tests/test_layout.py keeps them equal).
"""

from pathlib import Path


class Layout:
    """Named relative paths (POSIX strings); `at(root)` gives the same names as Paths below a folder."""

    def __init__(self, **paths):
        self._names = tuple(paths)
        for name, rel in paths.items():
            setattr(self, name, rel)

    def items(self):
        return [(name, getattr(self, name)) for name in self._names]

    def at(self, root):
        return Layout(**{name: Path(root) / rel for name, rel in self.items()})


# What each stage writes into its own folder (the tool's --out-dir / --run-dir): fixed names.
DATA = Layout(conversation="conversation.json", mindrecord="train.mindrecord", report="data_report.json",
              report_md="data_report.md", report_png="data_report.png")  # convert_dataset.py convert
TRAIN = Layout(config="config.yaml", run_record="run.json", loss="loss.jsonl", loss_png="loss.png",
               output="output", checkpoints="output/checkpoint")  # finetune.py --run-dir
ADAPTER = Layout(ckpt="adapter.ckpt", config="adapter_config.json")  # ckpt.py extract-lora --out-dir
MATH_REPORT = Layout(json="math_report.json", md="math_report.md", png="math_report.png")  # score_math.py
SQUAD_REPORT = Layout(json="squad_report.json", md="squad_report.md")  # squad.py score --out-dir
PREDICT_RECORD_SUFFIX = ".run.json"  # predict.py writes <out>.run.json beside its predictions
# An imported pretrained model (base_model.py import-gguf --dir): its checkpoint, tokenizer and chat template.
BASE_MODEL = Layout(ckpt="model.ckpt", tokenizer="tokenizer.json", tokenizer_config="tokenizer_config.json",
                    chat_template="chat_template.jinja", info="model.json", check="check.json")


def predict_record_of(predictions):
    """The record predict.py writes beside a predictions file."""
    return str(predictions) + PREDICT_RECORD_SUFFIX


RUN = Layout(
    # make data (convert_dataset.py)
    data_dir="data",
    conversation="data/" + DATA.conversation,
    mindrecord="data/" + DATA.mindrecord,
    data_report="data/" + DATA.report,
    data_report_md="data/" + DATA.report_md,
    data_report_png="data/" + DATA.report_png,
    # make train (launch.py + finetune.py)
    train_dir="train",
    train_config="train/" + TRAIN.config,
    run_record="train/" + TRAIN.run_record,
    loss="train/" + TRAIN.loss,
    loss_png="train/" + TRAIN.loss_png,
    train_output="train/" + TRAIN.output,
    checkpoints="train/" + TRAIN.checkpoints,
    rank_table="rank_table.json",
    # make merge (ckpt.py)
    merged="train/merged.ckpt",
    adapter_dir="adapter",
    adapter="adapter/" + ADAPTER.ckpt,
    adapter_config="adapter/" + ADAPTER.config,
    folded="folded/folded.ckpt",
    # make eval (predict.py, score_math.py, squad.py, count_params.py)
    eval_dir="eval",
    eval_config="eval/config.yaml",
    math_gold="eval/math_gold.jsonl",
    predictions="eval/predictions.jsonl",
    predict_record=predict_record_of("eval/predictions.jsonl"),
    math_report="eval/" + MATH_REPORT.json,
    math_report_md="eval/" + MATH_REPORT.md,
    math_report_png="eval/" + MATH_REPORT.png,
    squad_records="eval/squad_records.jsonl",
    squad_predictions="eval/squad_predictions.jsonl",
    squad_predict_record=predict_record_of("eval/squad_predictions.jsonl"),
    squad_report="eval/" + SQUAD_REPORT.json,
    squad_report_md="eval/" + SQUAD_REPORT.md,
    params="eval/params.json",
    # make demo: the stand-in base model (base/ is its finetune --run-dir, TRAIN layout, with eval/ below it as in
    # a run folder), stage times, verify's result
    base_dir="base",
    base_ckpt="base/base.ckpt",
    stage_times="stage_times.tsv",
    verify_json="verify.json",
)

# One evaluation set scored on its own, below a run's eval/ (make proxy: eval/<set>/ per set).
EVAL_SET = Layout(predictions="predictions.jsonl", predict_record=predict_record_of("predictions.jsonl"),
                  math_report=MATH_REPORT.json, squad_report=SQUAD_REPORT.json)
# make proxy's folder: the shared sets, the timing record, and one run folder (RUN layout) per model.
PROXY = Layout(sets="sets", timing="timing.json", report="report.json")

SUBMISSION = Layout(
    manifest="manifest.json",
    report="REPORT.md",
    adapter="adapter/adapter.ckpt",
    adapter_config="adapter/adapter_config.json",
    train_config="config/train.yaml",
    eval_config="config/eval.yaml",
    run_record="train/run.json",
    loss="train/loss.jsonl",
    loss_png="train/loss.png",
    predictions="eval/predictions.jsonl",
    predict_record="eval/predictions.jsonl.run.json",
    math_report="eval/math_report.json",
    math_report_md="eval/math_report.md",
    math_report_png="eval/math_report.png",
    math_gold="eval/math_gold.jsonl",
    squad_predictions="eval/squad_predictions.jsonl",
    squad_predict_record="eval/squad_predictions.jsonl.run.json",
    squad_report="eval/squad_report.json",
    squad_report_md="eval/squad_report.md",
    squad_records="eval/squad_records.jsonl",
    params="eval/params.json",
    data_report="data/data_report.json",
    data_report_md="data/data_report.md",
    data_report_png="data/data_report.png",
    tokenizer="tokenizer/tiny.tiktoken",
    base_ckpt="base/base.ckpt",
    patches_dir="patches",
    series="patches/series",
    logs_dir="logs",
)

# (name in RUN, name in SUBMISSION, required): the run files package.py copies as they are
PACKAGED = [(name, name, required) for name, required in (
    ("adapter", True), ("adapter_config", True), ("train_config", True), ("run_record", True), ("loss", True),
    ("loss_png", True), ("predictions", True), ("math_report", True), ("math_report_md", True),
    ("math_report_png", True), ("squad_predictions", True), ("squad_report", True), ("squad_report_md", True),
    ("params", True), ("predict_record", False), ("squad_predict_record", False), ("data_report", False),
    ("data_report_md", False), ("data_report_png", False))]
# where package.py looks for the resolved eval yaml of a run (the first that exists)
EVAL_CONFIG_CANDIDATES = (RUN.eval_config, "eval/predict_config.yaml", "eval/eval.yaml")
# log folders and globs of a run that go into the submission's logs/
LOG_DIRS = ("train/logs", "train/log", "eval/logs", "data/logs")
LOG_GLOBS = ("train/*.log", "eval/*.log", "data/*.log", "train/output/log/**/*.log", "train/output/msrun_log/*.log")


def packaged_files():
    """[(run relative path, submission relative path, required)] of PACKAGED."""
    return [(getattr(RUN, r), getattr(SUBMISSION, s), req) for r, s, req in PACKAGED]


def rank_folder(rank):
    """rank_<rank>: the folder in which MindFormers saves one rank's checkpoints (below output/checkpoint)."""
    return "rank_%d" % int(rank)


MAKE_PREFIXES = (
    ("L", RUN, "a run folder: $(RUN)/$(L_ADAPTER) is RUN/adapter/adapter.ckpt"),
    ("LT", TRAIN, "a training folder (finetune.py --run-dir): RUN/train, or the demo's base/"),
    ("LE", EVAL_SET, "one evaluation set's folder below a run's eval/ (make proxy)"),
    ("LP", PROXY, "make proxy's folder"),
    ("LB", BASE_MODEL, "an imported model's folder (make base-model)"),
)


def make_include():
    """The text of layout.mk: `<prefix>_<NAME> := <path>` for every path of the layouts in MAKE_PREFIXES."""
    lines = ["# Generated from tools/lorakit/layout.py by `make layout`; do not edit (tests/test_layout.py checks it)."]
    for prefix, layout, what in MAKE_PREFIXES:
        lines.append("# Paths below %s." % what)
        lines += ["%s_%s := %s" % (prefix, name.upper(), rel) for name, rel in layout.items()]
    return "\n".join(lines) + "\n"
