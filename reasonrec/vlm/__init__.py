"""Deliberate: the R-VIT instruction data, the LLaVA-architecture VLM, its scoring and its training.

`tokens` is the vocabulary the data and the model share; `records` is the instruction record the data side
writes and the model side reads. Nothing here imports Ray.
"""
