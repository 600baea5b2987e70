"""The evaluation report (jobs/evaluate.py), Ray-free: one module per table family, a writer for
report.md / report.json / the PNG plots, and the one pass of the models every VLM table reads (outcomes)."""
