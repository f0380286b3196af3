"""Robustness evaluation: FGSM and PGD attacks on exported models, and the adversarial eval examples."""
