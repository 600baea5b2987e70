"""Explanation table: BLEU-4 and ROUGE-L of generated explanations against the held-out review of each test
(user, item) pair of the explanation task, for two baselines, the VLM alone and what ReasonRec serves.

Pairs and references: the explanation instructions the builder makes for the test part of the VLM's own split
(every test interaction with review text; history = train + valid); the reference is the instruction's answer,
the review whitespace-normalised and cut to `review_max_chars` (what the VLM was trained to write). The split
must be the one the VLM trained on: its train part is the only review text the VLM has seen.

Rows (same pairs each):
- template: TEMPLATE filled with the item's title; reads nothing of any review.
- retrieval: the training review (split.train) of the same item by another user whose TF-IDF vector is
  nearest to the user's own training reviews (no training review of their own: the one nearest to the item's
  centroid); no other user reviewed the item in train: the user's latest training review; neither: the
  template. Test and valid text is never read.
- VLM-only: VLMScorer.explain on the builder's test instructions (the run's instructions/test.parquet when
  it has them, so prompts hold the tool outputs training showed; else rebuilt without tools).
- ReasonRec: serving.explain's instruction for (user, item), i.e. what /v1/explain answers: the same VLM and
  greedy decoding, but the serving prompt (history = every interaction, the target included; tonight's EH;
  no tools). The router does not route explanations, so this differs from VLM-only only through that prompt;
  `same_as_vlm_only` counts the pairs whose text is identical.

Every row also counts `exact` (texts identical to their reference) and, for the pairs,
`seen_in_user_train`: references that are verbatim one of the same user's training reviews (Amazon 2018
copies a review onto every variant of a product; on All-Beauty that is most test pairs). drop_seen=True
scores the other pairs only.
"""

from __future__ import annotations

import time
from collections import Counter

import numpy as np

from reasonrec.io import join, open_fs
from reasonrec.metrics.text import text_metrics
from reasonrec.recommend.bundle import Bundle
from reasonrec.tools.data import ToolData
from reasonrec.vlm.records import Instruction

TEMPLATE = "I like this {title}."
COLUMNS = [("model", "model"), ("kind", "kind"), ("pairs", "pairs"), ("BLEU-4", "BLEU-4"), ("ROUGE-L", "ROUGE-L"),
           ("empty", "empty"), ("exact", "= reference"), ("max_new_tokens", "max new tokens"),
           ("same_as_vlm_only", "same as VLM-only"), ("seconds", "s"), ("note", "note")]


def cut_review(text, limit: int) -> str:
    """Whitespace-normalised and cut at a word boundary to `limit` characters, as the instruction builder cuts
    explanation answers (so baselines and references have the same shape)."""
    text = " ".join(str(text).split()) if isinstance(text, str) else ""
    if len(text) <= limit:
        return text
    cut = text[:limit]
    return cut.rsplit(" ", 1)[0] if " " in cut else cut


def explanation_pairs(bundle: Bundle, data: ToolData, max_pairs: int | None = None, seed: int = 0
               ) -> tuple[list[Instruction], str]:
    """The explanation test instructions (a seeded subset of max_pairs, in order) and where their prompts came
    from. Raises when the VLM was trained on another split or data set than `data`."""
    from reasonrec.vlm.instructions import build_instructions, read_instructions, read_split_evidence

    settings = bundle.settings or {}
    if settings and settings.get("split") != data.split.name:
        raise ValueError(f"{bundle.cfg.vlm_dir}/run.json: the VLM trained on split {settings.get('split')!r}, the "
                         f"explanation pairs would come from {data.split.name!r}, whose test reviews it may have read")
    cfg = bundle.instruction_config.model_copy(update={"tasks": ["explanation"]})
    built = build_instructions(data, read_split_evidence(data), "test", cfg)
    source = "rebuilt without tools"
    saved = join(bundle.cfg.vlm_dir, "instructions", "test.parquet") if bundle.cfg.vlm_dir else None
    if saved and "explanation" in bundle.instruction_config.tasks and open_fs(saved)[0].exists(open_fs(saved)[1]):
        run = [ins for ins in read_instructions(saved) if ins.task == "explanation"]
        key = [(i.user_idx, i.target_item, i.answer) for i in built]
        if [(i.user_idx, i.target_item, i.answer) for i in run] != key:
            raise ValueError(f"{saved}: its explanation instructions are not the test pairs of "
                             f"{data.dataset.root} split {data.split.name} ({len(run)} vs {len(built)} rebuilt)")
        built, source = run, "the run's instructions/test.parquet"
    if max_pairs is not None and max_pairs < len(built):
        keep = np.sort(np.random.default_rng(seed).choice(len(built), size=max_pairs, replace=False))
        built = [built[i] for i in keep]
    return built, source


def seen_in_user_train(data: ToolData, pairs: list[Instruction], limit: int) -> np.ndarray:
    """[n] bool: the pair's reference is, verbatim, one of the same user's training reviews. Amazon 2018 copies
    a review onto every variant (ASIN) of a product the user bought at once, so on All-Beauty most held-out
    reviews are also training text; such pairs measure copying, not explaining."""
    train = data.split.train
    own: dict[int, set[str]] = {}
    for user, text in zip(train["user_idx"].to_numpy(), train["review"].to_numpy(dtype=object)):
        own.setdefault(int(user), set()).add(cut_review(text, limit))
    return np.array([p.answer in own.get(p.user_idx, ()) for p in pairs], dtype=bool)


def template_texts(data: ToolData, items: list[int]) -> list[str]:
    titles = data.dataset.items.sort_values("item_idx")["title"].to_numpy(dtype=object)
    return [TEMPLATE.format(title=" ".join(str(titles[i]).split())) for i in items]


def retrieval_texts(data: ToolData, users: list[int], items: list[int], limit: int) -> tuple[list[str], Counter]:
    """The retrieval baseline's text per pair, from split.train reviews only, and how many came from each source."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    train = data.split.train
    texts = np.array([cut_review(t, limit) for t in train["review"].to_numpy(dtype=object)], dtype=object)
    has = np.array([bool(t) for t in texts])
    t_users = train["user_idx"].to_numpy()[has]
    t_items = train["item_idx"].to_numpy()[has]
    t_time = train["timestamp"].to_numpy()[has]
    texts = texts[has]
    fallback = template_texts(data, items)
    if len(texts) == 0:
        return fallback, Counter({"template": len(items)})
    vectors = TfidfVectorizer().fit_transform(texts)          # rows L2-normalised: dot product = cosine
    by_user = {u: np.flatnonzero(t_users == u) for u in np.unique(t_users)}
    by_item = {i: np.flatnonzero(t_items == i) for i in np.unique(t_items)}
    out, sources = [], Counter()
    for k, (user, item) in enumerate(zip(users, items)):
        own = by_user.get(user, np.zeros(0, dtype=np.int64))
        others = by_item.get(item, np.zeros(0, dtype=np.int64))
        others = others[t_users[others] != user]
        if len(others):
            anchor = vectors[own].sum(axis=0) if len(own) else vectors[others].sum(axis=0)
            sims = np.asarray(vectors[others] @ np.asarray(anchor).ravel()).ravel()
            out.append(texts[others[int(np.argmax(sims))]])
            sources["same item, other user" + ("" if len(own) else " (item centroid)")] += 1
        elif len(own):
            out.append(texts[own[int(np.argmax(t_time[own]))]])
            sources["user's own latest"] += 1
        else:
            out.append(fallback[k])
            sources["template"] += 1
    return out, sources


def _row(model: str, kind: str, hypotheses: list[str], references: list[str], seconds: float, **extra) -> dict:
    """A table row; `exact` = hypotheses identical to their reference."""
    return {"model": model, "kind": kind, "pairs": len(hypotheses), **text_metrics(hypotheses, references),
            "empty": sum(not h.strip() for h in hypotheses),
            "exact": sum(h == r for h, r in zip(hypotheses, references)),
            "seconds": round(seconds, 1), **extra}


def explanation_rows(bundle: Bundle, data: ToolData, max_pairs: int | None = None, seed: int = 0,
                     max_new_tokens: int = 48, drop_seen: bool = False) -> list[dict]:
    """template, retrieval, VLM-only and ReasonRec rows on the same test pairs (see the module docstring);
    [] when the data set has no review text. A VLM not trained on the explanation task gets rows with a note.
    Every row states `seen_in_user_train` (pairs whose reference is one of the user's training reviews);
    drop_seen=True scores only the other pairs (the subset is drawn first, then filtered)."""
    from reasonrec.serving.explain import explain_instruction

    if not data.dataset.manifest.has_reviews:
        return []
    pairs, source = explanation_pairs(bundle, data, max_pairs, seed)
    limit = bundle.instruction_config.review_max_chars
    seen = seen_in_user_train(data, pairs, limit)
    common = {"seen_in_user_train": int(seen.sum())}
    if drop_seen:
        pairs = [p for p, s in zip(pairs, seen) if not s]
        common = {"seen_in_user_train": 0, "dropped_seen": int(seen.sum())}
    if not pairs:
        return []
    users, items = [p.user_idx for p in pairs], [p.target_item for p in pairs]
    refs = [p.answer for p in pairs]
    t = time.perf_counter()
    rows = [_row("template", "baseline", template_texts(data, items), refs, time.perf_counter() - t,
                 note=f"'{TEMPLATE}' with the item's title")]
    t = time.perf_counter()
    retrieved, sources = retrieval_texts(data, users, items, limit)
    rows.append(_row("retrieval", "baseline", retrieved, refs, time.perf_counter() - t,
                     note="nearest train review (TF-IDF): " + ", ".join(f"{k} {v}" for k, v in sources.items())))
    tasks = list(bundle.instruction_config.tasks)
    if bundle.cfg.vlm_dir is None or "explanation" not in tasks:
        why = "no VLM" if bundle.cfg.vlm_dir is None else f"the VLM was not trained on explanation (tasks {tasks})"
        rows += [{"model": m, "kind": "vlm", "pairs": len(pairs), "note": why} for m in ("VLM-only", "ReasonRec")]
        return [{**r, **common} for r in rows]
    scorer = bundle.scorer
    t = time.perf_counter()
    vlm = scorer.explain(pairs, max_new_tokens)
    rows.append(_row("VLM-only", "vlm", vlm, refs, time.perf_counter() - t, max_new_tokens=max_new_tokens,
                     note=f"builder's test prompts ({source}); teacher thought forced"))
    t = time.perf_counter()
    served = scorer.explain([explain_instruction(bundle, u, i) for u, i in zip(users, items)], max_new_tokens)
    same = sum(a == b for a, b in zip(served, vlm))
    note = ("identical text to VLM-only on every pair: the same system here" if same == len(pairs) else
            "/v1/explain: same VLM, serving prompt (history = every interaction, the target included; tonight's EH; "
            "no tools); not routed")
    rows.append(_row("ReasonRec", "vlm", [s.strip() for s in served], refs, time.perf_counter() - t,
                     max_new_tokens=max_new_tokens, same_as_vlm_only=same, note=note))
    return [{**r, **common} for r in rows]


def markdown_table(rows: list[dict]) -> list[str]:
    """A line on the pairs (how many references are also the user's training text), then the table."""
    from reasonrec.report.writer import table  # here, so writer.py can import this module at its top

    if not rows:
        return []
    first = rows[0]
    line = (f"{first['seen_in_user_train']} of {first['pairs']} references are, verbatim, one of the same user's "
            "training reviews." if "dropped_seen" not in first else
            f"{first['dropped_seen']} pairs whose reference is one of the same user's training reviews left out.")
    return [line, "", *table(rows, COLUMNS)]
