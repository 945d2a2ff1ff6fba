"""Document retrieval for the office app: extraction, chunking, embeddings, hybrid search.

Like `webapp.engine`, this package knows nothing of Django: the web layer calls it.
"""
