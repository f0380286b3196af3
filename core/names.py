"""Names more than one layer shares, as plain strings (no TensorFlow): the attacks."""

# For evaluation (robustness/attacks.py) and adversarial training (models/adversarial_training.py, whose methods
# models/training_config.py lists): both PGDs take the same steps (models/linf_ball.py).
FGSM = "fgsm"
FGSM_RS = "fgsm-rs"  # FGSM from a random start: training only
PGD = "pgd"
ATTACKS = (FGSM, PGD)  # evaluated
