"""Robustness evaluation: an exported model as a differentiable function of its pixels, the attack settings, and the
eval split's clean and attacked copies (FGSM, PGD, APGD and their worst case) that the Evaluator measures."""
