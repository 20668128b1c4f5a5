"""What a judge applies by default when verifying a submission (tools/verify.py), in one place.

Only the judge-side defaults live here for now; the scoring rules themselves stay where they are
(lorakit.metrics: SQuAD thresholds, policies; lorakit.params: 8.03e9) and verify imports them from there.
"""

from .metrics import HEADLINE_POLICY, SQUAD_GATE_EM, SQUAD_GATE_F1

# The math policy the score is judged with unless the judge names another (verify --policy, make verify POLICY=).
# prediction-precision: docs/eval.md (policies) argues it is the contest's rule.
JUDGE_POLICY = HEADLINE_POLICY
# The SQuAD gate a judge applies unless told otherwise (verify --squad-thresholds, make verify SQUAD_THRESHOLDS=):
# the contest's 90 % of base Llama3-8B. Thresholds written in a submission are never used for the verdict.
JUDGE_SQUAD_THRESHOLDS = (SQUAD_GATE_F1, SQUAD_GATE_EM)
# Claimed ratios must equal the weights' to this relative tolerance (or be the leaderboard's 6-digit rounding).
RATIO_REL_TOL = 1e-6
