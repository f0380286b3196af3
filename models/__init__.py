"""The model side: preprocessing_fn, the registry's Keras models, run_fn (with adversarial training, warm start and
the embedding head) and the serving signatures."""
