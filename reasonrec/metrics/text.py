"""Text-generation metrics for generated explanations/reviews: corpus BLEU-4 and mean ROUGE-L F1.

Both are reported on the 0-100 scale (sacrebleu's convention), so tables mix them without rescaling.
`references[i]` is the reference text for `hypotheses[i]`, or a list of acceptable references for it.

BLEU-4: sacrebleu.corpus_bleu with its defaults (13a tokenizer, case-sensitive, exponential smoothing), so
numbers are comparable with anything reporting a default sacrebleu signature.
ROUGE-L: rouge_score's scorer (lowercases, splits on non-alphanumerics, no stemming); with several
references a hypothesis takes its best F1 among them; the corpus score is the mean over hypotheses.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import sacrebleu
from rouge_score import rouge_scorer

References = Sequence[str] | Sequence[Sequence[str]]


def _checked(hypotheses: Sequence[str], references: References) -> tuple[list[str], list[list[str]]]:
    """Validate and return (hypotheses, references as one non-empty list per hypothesis)."""
    if isinstance(hypotheses, str) or isinstance(references, str):
        raise TypeError("hypotheses and references must be lists of strings, not a single string")
    hypotheses = list(hypotheses)
    references = list(references)
    if not hypotheses:
        raise ValueError("no hypotheses: cannot score an empty corpus")
    if len(hypotheses) != len(references):
        raise ValueError(f"length mismatch: {len(hypotheses)} hypotheses, {len(references)} references")
    for i, hypothesis in enumerate(hypotheses):
        if not isinstance(hypothesis, str):
            raise TypeError(f"hypothesis {i} is {type(hypothesis).__name__} {hypothesis!r}, expected str")
    per_hypothesis: list[list[str]] = []
    for i, ref in enumerate(references):
        refs = [ref] if isinstance(ref, str) else list(ref) if isinstance(ref, Sequence | np.ndarray) else None
        if not refs:
            raise ValueError(f"reference {i} is {ref!r}: expected a string or a non-empty list of strings")
        for r in refs:
            if not isinstance(r, str):
                raise TypeError(f"reference {i} contains {type(r).__name__} {r!r}, expected str")
        per_hypothesis.append(refs)
    return hypotheses, per_hypothesis


def bleu4(hypotheses: Sequence[str], references: References) -> float:
    """Corpus BLEU-4 on the 0-100 scale (sacrebleu defaults)."""
    hypotheses, per_hypothesis = _checked(hypotheses, references)
    # sacrebleu wants reference *streams* (stream j = j-th reference of every hypothesis); hypotheses with
    # fewer references pad with None, which sacrebleu reads as "no reference here".
    n_streams = max(len(refs) for refs in per_hypothesis)
    streams = [[refs[j] if j < len(refs) else None for refs in per_hypothesis] for j in range(n_streams)]
    return float(sacrebleu.corpus_bleu(hypotheses, streams).score)


def rouge_l(hypotheses: Sequence[str], references: References) -> float:
    """Mean ROUGE-L F1 over hypotheses on the 0-100 scale (best reference per hypothesis)."""
    hypotheses, per_hypothesis = _checked(hypotheses, references)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    f1 = [scorer.score_multi(refs, hyp)["rougeL"].fmeasure for hyp, refs in zip(hypotheses, per_hypothesis)]
    return float(100.0 * np.mean(f1))


def text_metrics(hypotheses: Sequence[str], references: References) -> dict[str, float]:
    """{"BLEU-4": ..., "ROUGE-L": ...}, both 0-100."""
    return {"BLEU-4": bleu4(hypotheses, references), "ROUGE-L": rouge_l(hypotheses, references)}
