"""The fine-tune's defaults that the app's panel offers too (no torch here: the app imports it).

Measured with ``python -m train.simulate_loop`` on the embedded default checkpoint (README, "The
loop, measured with simulated annotators"): ten minutes of fine-tuning on 50 corrections, published
as trained, lowered held-out CCP mIoU in each of six repeats (-0.62 on average); a quarter of the
change (:data:`BLEND`) raised it in each of them (+0.22 on average) and left VITON's scores on the
classes its photos show as they were.
"""

# Share of every fine-tuning epoch drawn from the corrections (oversampled: a few corrections
# among thousands of original images would otherwise hardly be seen).
CORRECTIONS_SHARE = 0.5
# Expected share of each corrections folder held out to score before and after.
HOLDOUT = 0.2
# Share of the fine-tune's change the published weights keep: base + BLEND x (trained - base).
BLEND = 0.25
