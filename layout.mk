# Generated from tools/lorakit/layout.py by `make layout`; do not edit (tests/test_layout.py checks it).
# Paths below a run folder: $(RUN)/$(L_ADAPTER) is RUN/adapter/adapter.ckpt.
L_DATA_DIR := data
L_CONVERSATION := data/conversation.json
L_MINDRECORD := data/train.mindrecord
L_DATA_REPORT := data/data_report.json
L_DATA_REPORT_MD := data/data_report.md
L_DATA_REPORT_PNG := data/data_report.png
L_TRAIN_DIR := train
L_TRAIN_CONFIG := train/config.yaml
L_RUN_RECORD := train/run.json
L_LOSS := train/loss.jsonl
L_LOSS_PNG := train/loss.png
L_TRAIN_OUTPUT := train/output
L_CHECKPOINTS := train/output/checkpoint
L_RANK_TABLE := rank_table.json
L_MERGED := train/merged.ckpt
L_ADAPTER_DIR := adapter
L_ADAPTER := adapter/adapter.ckpt
L_ADAPTER_CONFIG := adapter/adapter_config.json
L_FOLDED := folded/folded.ckpt
L_EVAL_DIR := eval
L_EVAL_CONFIG := eval/config.yaml
L_MATH_GOLD := eval/math_gold.jsonl
L_PREDICTIONS := eval/predictions.jsonl
L_PREDICT_RECORD := eval/predictions.jsonl.run.json
L_MATH_REPORT := eval/math_report.json
L_MATH_REPORT_MD := eval/math_report.md
L_MATH_REPORT_PNG := eval/math_report.png
L_SQUAD_RECORDS := eval/squad_records.jsonl
L_SQUAD_PREDICTIONS := eval/squad_predictions.jsonl
L_SQUAD_PREDICT_RECORD := eval/squad_predictions.jsonl.run.json
L_SQUAD_REPORT := eval/squad_report.json
L_SQUAD_REPORT_MD := eval/squad_report.md
L_PARAMS := eval/params.json
L_BASE_DIR := base
L_BASE_CKPT := base/base.ckpt
L_STAGE_TIMES := stage_times.tsv
L_VERIFY_JSON := verify.json
# Paths below a training folder (finetune.py --run-dir): RUN/train, or the demo's base/.
LT_CONFIG := config.yaml
LT_RUN_RECORD := run.json
LT_LOSS := loss.jsonl
LT_LOSS_PNG := loss.png
LT_OUTPUT := output
LT_CHECKPOINTS := output/checkpoint
# Paths below one evaluation set's folder below a run's eval/ (make proxy).
LE_PREDICTIONS := predictions.jsonl
LE_PREDICT_RECORD := predictions.jsonl.run.json
LE_MATH_REPORT := math_report.json
LE_SQUAD_REPORT := squad_report.json
# Paths below make proxy's folder.
LP_SETS := sets
LP_TIMING := timing.json
LP_REPORT := report.json
# Paths below an imported model's folder (make base-model).
LB_CKPT := model.ckpt
LB_TOKENIZER := tokenizer.json
LB_TOKENIZER_CONFIG := tokenizer_config.json
LB_CHAT_TEMPLATE := chat_template.jinja
LB_INFO := model.json
LB_CHECK := check.json
