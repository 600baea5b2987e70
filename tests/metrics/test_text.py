import pytest
import sacrebleu

from reasonrec.metrics.text import bleu4, rouge_l, text_metrics

HYPOTHESES = [
    "the battery lasts all day and the screen is bright",
    "great fit but the color faded after one wash",
    "a slow start , then a gripping story",
]
REFERENCES = [
    "battery lasts a full day and the screen is very bright",
    "the fit is great but the colour faded after washing",
    "a gripping story after a slow start",
]


def test_identical_texts_score_100():
    assert bleu4(HYPOTHESES, HYPOTHESES) == pytest.approx(100.0)
    assert rouge_l(HYPOTHESES, HYPOTHESES) == pytest.approx(100.0)


def test_disjoint_texts_score_0():
    hypotheses = ["alpha beta gamma delta epsilon"]
    references = ["one two three four five"]
    assert bleu4(hypotheses, references) == 0.0
    assert rouge_l(hypotheses, references) == 0.0


def test_rouge_l_matches_a_hand_computed_lcs():
    # hyp: "the cat sat on the mat" (6 tokens), ref: "the cat is on a mat" (6 tokens)
    # LCS = "the cat on mat" = 4 tokens -> P = 4/6, R = 4/6, F1 = 4/6
    assert rouge_l(["the cat sat on the mat"], ["the cat is on a mat"]) == pytest.approx(100 * 4 / 6)
    # unequal lengths: hyp "a b c d" vs ref "a c" -> LCS 2, P = 2/4, R = 2/2, F1 = 2PR/(P+R) = 2/3
    assert rouge_l(["a b c d"], ["a c"]) == pytest.approx(100 * 2 / 3)


def test_rouge_l_is_the_mean_over_hypotheses_with_best_reference():
    single = [rouge_l([h], [r]) for h, r in zip(HYPOTHESES, REFERENCES)]
    assert rouge_l(HYPOTHESES, REFERENCES) == pytest.approx(sum(single) / len(single))
    multi = [[r, h] if i == 0 else [r] for i, (h, r) in enumerate(zip(HYPOTHESES, REFERENCES))]
    assert rouge_l(HYPOTHESES, multi) == pytest.approx((100 + single[1] + single[2]) / 3)


def test_bleu_agrees_with_sacrebleu_directly():
    expected = sacrebleu.corpus_bleu(HYPOTHESES, [REFERENCES]).score
    assert 0 < expected < 100
    assert bleu4(HYPOTHESES, REFERENCES) == pytest.approx(expected)
    # several references per hypothesis, given per hypothesis here and as streams to sacrebleu
    second = ["the battery lasts all day", "great fit", "a gripping story"]
    expected_multi = sacrebleu.corpus_bleu(HYPOTHESES, [REFERENCES, second]).score
    assert bleu4(HYPOTHESES, [list(pair) for pair in zip(REFERENCES, second)]) == pytest.approx(expected_multi)


def test_bleu_variable_number_of_references():
    references = [[REFERENCES[0], HYPOTHESES[0]], [REFERENCES[1]], [REFERENCES[2]]]
    expected = sacrebleu.corpus_bleu(HYPOTHESES, [REFERENCES, [HYPOTHESES[0], None, None]]).score
    assert bleu4(HYPOTHESES, references) == pytest.approx(expected)


def test_text_metrics_dict():
    metrics = text_metrics(HYPOTHESES, REFERENCES)
    assert metrics == {"BLEU-4": bleu4(HYPOTHESES, REFERENCES), "ROUGE-L": rouge_l(HYPOTHESES, REFERENCES)}


@pytest.mark.parametrize("metric", [bleu4, rouge_l])
def test_invalid_input(metric):
    with pytest.raises(ValueError, match="no hypotheses"):
        metric([], [])
    with pytest.raises(ValueError, match="length mismatch: 2 hypotheses, 1 references"):
        metric(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="reference 1 is None"):
        metric(["a", "b"], ["a", None])
    with pytest.raises(ValueError, match="reference 0 is \\[\\]"):
        metric(["a"], [[]])
    with pytest.raises(TypeError, match="hypothesis 0 is float"):
        metric([float("nan")], ["a"])
    with pytest.raises(TypeError, match="not a single string"):
        metric("a b", "a b")
