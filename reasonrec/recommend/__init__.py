"""Recommendations end to end, Ray-free: the one data path the nightly job, calibration, evaluation and the
Serve app all call (issue 5).

- requests: who is scored, on which history, EH and candidates (tonight's, or a split's fixed lists).
- bundle: everything a scorer loads once (dataset state, tools, faiss index, the VLM, the policy).
- stages: candidate retrieval, tool scoring + first routing stage, the VLM passes + second stage + refine.
- table: the published table's rows and schema, and the quarantine rows.
"""
