"""The model side: preprocessing_fn, the registry's Keras models, run_fn (with adversarial training, warm start,
the embedding head and the best epoch on the validation split) and the serving signatures."""
