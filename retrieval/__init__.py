"""Visual search beside the model: a catalog's ScaNN index and item table, and how well a ranking retrieves.

No model code: the index is built from embeddings and read back by the server (`serving/`) alike.
"""
