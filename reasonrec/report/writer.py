"""report.md, report.json and the PNG plots from one report dict (every number in it computed by the run).

Markdown cells: numbers with 4 decimals, "—" where a model cannot give the number (the VLM in full ranking),
and a section that is not computed yet says so in one line instead of showing a table.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from reasonrec.io import join, open_fs
from reasonrec.report.time_shift import cutoff_text

NOT_YET = {
    "Explanation generation (BLEU-4, ROUGE-L)": "not configured for this report (`explanation: []`): it needs a data "
    "set with review text and a VLM trained on the explanation task (configs/ml-latest-small.yaml scores "
    "All-Beauty and the synthetic set).",
    "Time shift (temporal cut-off)": "not configured for this report (`time_shift: []`): it needs a temporal split "
    "with its own tools and VLM (configs/ml-latest-small.yaml has one; P5 data has no timestamps).",
    "Multi-domain (Beauty + Sports merged)": "not configured for this report (`multi_domain: []`): it needs a "
    "merged data set with its own tools and VLM, and each domain's own system (configs/beauty-sports.yaml).",
}


def cell(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def table(rows: Sequence[dict], columns: Sequence[tuple[str, str]]) -> list[str]:
    """Markdown table of `rows` with (key, header) columns; a missing key is '—'."""
    lines = ["| " + " | ".join(h for _, h in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(k)) for k, _ in columns) + " |" for r in rows]
    return lines


def shares_text(route_shares: dict) -> str:
    """'0.07 / 0.02 / 0.90': the shares of rows on the tool / vlm / vlm+tools routes."""
    return " / ".join(f"{route_shares[r]:.2f}" for r in ("tool", "vlm", "vlm+tools"))


def with_shares(rows: list[dict]) -> list[dict]:
    """Rows with a `shares` column where they carry route shares (the routed answer)."""
    return [{**row, "shares": shares_text(row["route_shares"])} if "route_shares" in row else row for row in rows]


def explanation_section(tables: list[dict]) -> list[str]:
    """One table per data set with review text (reasonrec/report/explanation.py); nothing when none is set."""
    from reasonrec.report.explanation import markdown_table  # here: it imports torch, writer.py stays light

    if not tables:
        return []
    out = ["", "## Explanation generation (BLEU-4, ROUGE-L)", "",
           "Test (user, item) pairs of the explanation task on each VLM's own split; reference = the held-out "
           "review, cut to review_max_chars as in training. BLEU-4: sacrebleu corpus BLEU; ROUGE-L: mean F1 "
           "(rouge-score); both 0-100. Template = a fixed sentence with the item title; retrieval = the nearest "
           "*training* review (TF-IDF) of the item by another user; VLM-only = the builder's test prompts; "
           "ReasonRec = what /v1/explain answers (the same VLM on the serving prompt: every interaction as history, "
           "tonight's EH, no tools — explanations are not routed); \"same as VLM-only\" counts identical texts."]
    for t in tables:
        subset = f"a seeded subset of {t['max_pairs']} pairs" if t["max_pairs"] else "every test pair"
        out += ["", f"### {t['name']}", "",
                f"Dataset `{t['dataset']}`, VLM `{t['vlm_dir']}` ({t['model_version']}), split {t['split']}, "
                f"{subset}{' without the pairs seen in the user train text' if t['drop_seen'] else ''}.", ""]
        out += markdown_table(t["rows"]) or ["No pair with review text in this data set's test part."]
    return out


def time_shift_section(tables: list[dict], h: dict) -> list[str]:
    """One table per time-shift entry (reasonrec/report/time_shift.py); nothing when none is set."""
    if not tables:
        return []
    main = h["split"]
    out = ["", "## Time shift (temporal cut-off)", "",
           f"The same system trained and tested on another split of the dataset: its own tools and VLM, scored on "
           f"that split's fixed 1+N test lists by the main table's code. The {main} columns are the main table's "
           f"numbers ({h['users']} users) for the model of the same name; — where the main table has none. A "
           "temporal split has one test row per test interaction (many per user, each ranked from the user's "
           "train + valid history)."]
    for t in tables:
        s = t["summary"]
        shares = next((r["route_shares"] for r in t["rows"] if "route_shares" in r), None)
        out += ["", f"### {t['name']}", "",
                f"Split `{t['split']}`: {cutoff_text(s)} {s['train_interactions']} train / {s['valid_interactions']} "
                f"valid / {s['test_interactions']} test interactions; {s['test_users']} test users, "
                f"{s['test_users_without_train']} of them without a train interaction (read from `{s['file']}`). "
                f"Scored: {t['rows_scored']} of {t['rows_total']} test rows from {t['users_scored']} users "
                f"(seed {h['seed']}{', quick mode' if h['quick'] else ''}), 1+{t['negatives']} lists. VLM "
                f"`{t['vlm_dir']}` ({t['model_version']}), tools `{t['tools_dir']}`; ReasonRec routed with thresholds "
                f"from {t['policy_source']}"
                + (f" (route shares tool / vlm / vlm+tools: {shares_text(shares)})." if shares else "."), ""]
        out += table(t["rows"], [("model", "model"), ("kind", "kind"), ("main_HR@5", f"{main} HR@5"),
                                 ("main_NDCG@5", f"{main} NDCG@5"), ("HR@5", f"{t['split']} HR@5"),
                                 ("NDCG@5", f"{t['split']} NDCG@5")])
        if any(t["vlm_failures"].values()):
            out += ["", f"VLM failures (rows answered by the best tool instead): {t['vlm_failures']}."]
    return out


def multi_domain_section(tables: list[dict], by_domain: list[dict], h: dict) -> list[str]:
    """The main table split by domain, then one table per domain (reasonrec/report/multi_domain.py); nothing
    when the report's dataset is not a merge and no entry is set."""
    if not tables and not by_domain:
        return []
    out = ["", "## Multi-domain (merged training)", ""]
    if by_domain:
        out += [f"The main table's users by domain, on the merged data set's own 1+{h['negatives']} lists (negatives "
                "drawn from the whole merged catalogue, so mostly from the other domain: easier than a "
                "single-domain list, not comparable with one).", ""]
        cols = [("domain", "domain"), ("users", "users")]
        cols += [(k, k.split("/", 1)[1] + " HR@5") for k in by_domain[0] if k.startswith("HR@5/")]
        out += table(by_domain, cols)
    for t in tables:
        single = next((r["single_route_shares"] for r in t["rows"] if "single_route_shares" in r), None)
        merged = next((r["merged_route_shares"] for r in t["rows"] if "merged_route_shares" in r), None)
        out += ["", f"### {t['name']}: trained on {t['name']} alone vs on the merge", "",
                f"{t['users_scored']} of {t['users_total']} {t['name']} test users (seed {h['seed']}"
                f"{', quick mode' if h['quick'] else ''}) on {t['name']}'s own fixed 1+{t['negatives']} lists "
                f"(`{t['files'][0]}`), mapped to the merged ids for the merged system: the same users, histories, "
                f"targets and candidates for both. Single = VLM `{t['vlm_dir']}` ({t['model_version']}) with tools "
                f"`{t['tools_dir']}`, routed by {t['policy_source']}"
                + (f" (tool / vlm / vlm+tools: {shares_text(single)})" if single else "")
                + f"; merged = the report's system (VLM `{h['vlm_dir']}`, tools `{h['tools_dir']}`)"
                + (f" (tool / vlm / vlm+tools: {shares_text(merged)})" if merged else "")
                + ". Training = how each side's tool fit ended (tool.json): tools stopped by a time budget are "
                  "under-trained, and the comparison of that row is not like for like.", ""]
        out += table(t["rows"], [("model", "model"), ("kind", "kind"), ("single_HR@5", "single HR@5"),
                                 ("merged_HR@5", "merged HR@5"), ("delta_HR@5", "merged - single"),
                                 ("single_NDCG@5", "single NDCG@5"), ("merged_NDCG@5", "merged NDCG@5"),
                                 ("single_training", "single training"), ("merged_training", "merged training")])
        if any(v for side in t["vlm_failures"].values() for v in side.values()):
            out += ["", f"VLM failures (rows answered by the best tool instead): {t['vlm_failures']}."]
    return out


def answer_sources_section(sources: dict | None) -> list[str]:
    """Whose output the VLM rows' answers are: a parsed VLM output, or a fallback (reports written before this
    was recorded have no `answer_sources` and render without the section)."""
    if not sources:
        return []
    out = ["", "Answer sources, per route taken: `vlm` = a parsed VLM output (the first pass on the vlm route, the "
           "refine pass on vlm+tools); `tool_vote` = the refine pass did not parse and the consulted tools' vote "
           "answered; `vlm_unparsed` = an unparsed VLM output kept; `tool_fallback` = the VLM raised.", ""]
    rows = [{"answer": name, "route": route, "parsed VLM": shares.get("vlm", 0.0),
             "other": ", ".join(f"{k} {v:.3f}" for k, v in shares.items() if k != "vlm") or "—"}
            for name, by_route in sources.items() for route, shares in by_route.items()]
    return out + table(rows, [("answer", "answer"), ("route", "route"), ("parsed VLM", "parsed VLM output"),
                              ("other", "fallbacks")])


def markdown(report: dict) -> str:
    h = report["header"]
    m = h["machine"]
    out = [f"# ReasonRec evaluation report: {h['dataset_name']}", "",
           f"Dataset `{h['dataset']}`, split {h['split']}, 1+{h['negatives']} test lists; {h['users']} of "
           f"{h['users_total']} test users (seed {h['seed']}{', quick mode' if h['quick'] else ''}). "
           f"Model {h['model_version']} (VLM `{h['vlm_dir']}`), tools `{h['tools_dir']}`; router thresholds from "
           f"{h['policy_source']}. Machine: {m['platform']}, {m['cpus']} CPUs, {m['device']}, Python {m['python']}, "
           f"torch {m['torch']}. Wall time {h['wall_seconds']:.1f} s ("
           + ", ".join(f"{k} {v:.1f} s" for k, v in h["stage_seconds"].items()) + "). Files read: "
           + ", ".join(f"`{f}`" for f in h["files"]) + ".", "",
           f"Command: `{h['command']}`", ""]
    out += ["## Sequential recommendation (HR@5, NDCG@5)", "",
            "Every row on the same users and the same fixed lists; full ranking = against the whole catalogue "
            "minus the user's train + valid items (the VLM ranks candidate lists only: —). ReasonRec = each user's "
            "answer on the route the router picks.", ""]
    out += table(report["main"], [("model", "model"), ("kind", "kind"), ("HR@5", "HR@5"), ("NDCG@5", "NDCG@5"),
                                  ("HR@10", "HR@10"), ("NDCG@10", "NDCG@10"), ("full_HR@5", "full HR@5"),
                                  ("full_NDCG@5", "full NDCG@5")])
    out += answer_sources_section(report.get("answer_sources"))
    out += ["", "## Ablations (VLM-only and VLM+tools always, HR@5 / NDCG@5)", ""]
    if report.get("ablations"):
        out += ["Each ablation VLM answers the same users on the same 1+99 lists with the main run's tools, "
                "consult pool and router; the first row is the main model. \"Differs from the main model in\" is "
                "every train_vlm setting (run.json) whose value differs, main -> ablation.", ""]
        rows = [{**r, "differs": "; ".join(f"`{d}`" for d in r["differs"]) or "—"} for r in report["ablations"]]
        out += table(rows, [("name", "model"), ("differs", "differs from the main model in"),
                            ("vlm_HR@5", "VLM-only HR@5"), ("vlm_NDCG@5", "VLM-only NDCG@5"),
                            ("vlm+tools_HR@5", "VLM+tools always HR@5"),
                            ("vlm+tools_NDCG@5", "VLM+tools always NDCG@5")])
    else:
        out.append("Not computed in this run (ablations: []).")
    out += ["", "## CTR (AUC, LogLoss)", ""]
    if report["ctr"]:
        out += table(report["ctr"], [("model", "model"), ("rows", "test rows"), ("AUC", "AUC"),
                                     ("LogLoss", "LogLoss"), ("note", "note")])
    else:
        out.append("The dataset has no CTR split (prepare it with the random split and CTR negatives).")
    out += explanation_section(report.get("explanation", []))
    out += time_shift_section(report.get("time_shift", []), h)
    out += multi_domain_section(report.get("multi_domain", []), report.get("by_domain", []), h)
    c = report["cold_start"]
    out += ["", "## Cold start (EH groups)", "",
            f"Test users cut into 10 equal groups by evidence horizon (group 1 = highest EH), aggregated; HR@5 of "
            f"the best tool ({h['best_tool']}), VLM-only and ReasonRec; delegated = share answered by the tool "
            f"alone, consulted = share whose VLM consulted tools. The 10 groups' own rows are in report.json "
            f"(cold_start.groups). Plot: cold_start.png.", ""]
    cols = [("group", "group"), ("users", "users"), ("eh_min", "EH min"), ("eh_max", "EH max")]
    cols += [(k, k.split("/", 1)[1] + " HR@5") for k in c["aggregates"][0] if k.startswith("HR@5/")]
    cols += [("delegated", "delegated"), ("consulted", "consulted")]
    out += table(c["aggregates"], cols)
    out += ["", "## Planning", "", "### Table A9: routing vs always-on (HR@5, NDCG@5, seconds per user)", "",
            "Seconds per user: each user's share of its batch's wall time on that route (tools, VLM pass, refine "
            "pass); a routed answer's is its route's. Plot: a9.png.", ""]
    a9 = with_shares(report["a9"])
    out += table(a9, [("answer", "answer"), ("HR@5", "HR@5"), ("NDCG@5", "NDCG@5"),
                                ("seconds_per_user", "s/user"), ("shares", "tool / vlm / vlm+tools")])
    out += ["", "### Table A6: tool ensemble only vs VLM without planning vs ReasonRec", "",
            "The same users' answers as the main table. Tool ensemble only = the majority vote of the ranking "
            "tools, no VLM; VLM without planning = the VLM consults tools on every user (and, below it, never); "
            "ReasonRec = the router's per-user plan (shares of users on each route).", ""]
    a6 = with_shares(report.get("a6", []))
    out += table(a6, [("answer", "answer"), ("HR@5", "HR@5"), ("NDCG@5", "NDCG@5"),
                      ("shares", "tool / vlm / vlm+tools"), ("what", "what it is")])
    out += ["", "### Table A7: tool selection when consulting", ""]
    if report["a7"]:
        out += [f"Each consulting user is shown {h['n_consult']} of the tools {', '.join(h['consult_pool'])} "
                f"(the router's own mode: {h['tool_selection']}). always = every user consults; routed = only the "
                "users the router sends to vlm+tools. Oracle reads the target: an upper bound."
                + (" With no more tools than n_consult every mode shows the same tools."
                   if len(h["consult_pool"]) <= h["n_consult"] else ""), ""]
        out += table(report["a7"], [("selection", "selection"), ("always_HR@5", "always HR@5"),
                                    ("always_NDCG@5", "always NDCG@5"), ("routed_HR@5", "routed HR@5"),
                                    ("routed_NDCG@5", "routed NDCG@5"), ("consulting_users", "consulting users")])
    else:
        out.append("Not computed in this run (tool_selection: []).")
    k = report["conflict"]
    out += ["", f"### Table 4: conflict analysis ({h['best_tool']} vs ReasonRec, top-1)", "",
            "Accuracy = hit@1; disagreement = the two put different items first.", ""]
    out += table([k], [("rows", "users"), ("tool_accuracy", "tool acc."), ("model_accuracy", "ReasonRec acc."),
                       ("disagreement_rate", "disagreement rate"), ("tool_accuracy_on_disagreements",
                                                                    "tool acc. on disagreements"),
                       ("model_accuracy_on_disagreements", "ReasonRec acc. on disagreements")])
    out += ["", f"## Confidence calibration (confidence vs hit@{report['calibration_hit']})", "",
            "Forced routes over every user, then the routed answer's users by route. Tool route: the best tool's "
            "scale-free confidence; VLM routes: the VLM's first-pass confidence "
            f"({h['confidence_source']}). ECE over {report['calibration_bins']} equal bins. Plot: reliability.png.", ""]
    out += table(report["calibration"], [("answer", "answer"), ("rows", "users"), ("mean_confidence", "mean conf."),
                                         ("accuracy", f"hit@{report['calibration_hit']}"), ("ECE", "ECE")])
    out += ["", "## Not in this report yet", ""]
    out += [f"- **{name}**: {why}" for name, why in report["not_yet"].items()]
    if any(report["vlm_failures"].values()):
        out += ["", f"VLM failures (rows answered by the best tool instead): {report['vlm_failures']}."]
    return "\n".join(out) + "\n"


def plots(report: dict, folder: str) -> list[str]:
    """reliability.png, cold_start.png, a9.png into a local folder; returns the file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="perfect")
    for row in report["calibration"]:
        if row["answer"].startswith("forced"):
            pts = [(b["confidence"], b["accuracy"]) for b in row["bins"] if b["count"]]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=f"{row['answer']} (ECE {cell(row['ECE'])})")
    ax.set(xlabel="stated confidence", ylabel=f"hit@{report['calibration_hit']}", xlim=(0, 1), ylim=(0, 1),
           title="Reliability")
    ax.legend(fontsize=7)
    names.append(_save(fig, folder, "reliability.png"))

    aggs = report["cold_start"]["aggregates"]
    answers = [k for k in aggs[0] if k.startswith("HR@5/")]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    width = 0.8 / max(len(answers), 1)
    for i, key in enumerate(answers):
        ax.bar([g + i * width for g in range(len(aggs))], [a[key] or 0.0 for a in aggs], width,
               label=key.split("/", 1)[1])
    ax.set_xticks([g + width * (len(answers) - 1) / 2 for g in range(len(aggs))], [a["group"] for a in aggs])
    ax.set(ylabel="HR@5", title="Cold start by EH group")
    ax.legend(fontsize=7)
    names.append(_save(fig, folder, "cold_start.png"))

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for row in report["a9"]:
        ax.scatter(row["seconds_per_user"], row["HR@5"])
        ax.annotate(row["answer"], (row["seconds_per_user"], row["HR@5"]), fontsize=7)
    ax.set(xlabel="seconds per user", ylabel="HR@5", title="Quality vs cost (A9)")
    names.append(_save(fig, folder, "a9.png"))
    return names


def _save(fig, folder: str, name: str) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(f"{folder}/{name}", dpi=90)
    plt.close(fig)
    return name


def save(report: dict, out: str, png_folder: str, pngs: list[str]) -> None:
    """report.md + report.json + the PNGs (made locally) into `out` (local or s3://)."""
    fs, path = open_fs(out)
    fs.makedirs(path, exist_ok=True)
    with fs.open(join(path, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
    with fs.open(join(path, "report.md"), "w") as f:
        f.write(markdown(report))
    for name in pngs:
        fs.put_file(f"{png_folder}/{name}", join(path, name))
