"""The blessing: the thresholds, the EvalConfig they become, TFMA's results read back, the evaluation key that lets a
run reuse the served model's metrics, and the evaluator that decides (TFMA, the retrieval gate and the key)."""
