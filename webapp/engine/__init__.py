"""Inference engine: model registry, chat templates, and the generation scheduler.

This package knows nothing of Django. The web layer calls `Engine.submit()` and reads
tokens from the returned `GenerationHandle`; how requests are scheduled on the model
(one at a time today, continuous batching later) stays behind that interface.
"""
