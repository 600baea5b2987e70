"""The ablations table and Table A6, both from outcomes of the one-pass machinery (outcomes.collect).

Ablations: each ablation VLM answers the main table's test users on the VLM-only and VLM+tools-always routes
(same tools, same consult pool, same router), next to the main model's own two rows. What an ablation changed
is read from the two train_vlm run.json `settings`, never typed by hand, so a row cannot claim "single
template" for a run that changed something else too. Table A6 is a view over the main run's outcomes: tool
ensemble only (majority vote), the VLM without planning (VLM+tools always, and VLM-only), and ReasonRec.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from reasonrec.recommend.outcomes import PartOutcomes
from reasonrec.report.ranking import metrics

# Settings keys that name where a run wrote its outputs: a different folder is not a different model.
OUTPUT_KEYS = frozenset({"out"})


def flatten(settings: Mapping, prefix: str = "") -> dict[str, object]:
    """Nested settings as {'a.b.c': leaf}; lists stay whole leaves (a changed list is one change)."""
    flat: dict[str, object] = {}
    for key, value in settings.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _same(a: object, b: object) -> bool:
    """Equal, or two spellings of the same local path (relative vs absolute), which are one input."""
    if a == b:
        return True
    if isinstance(a, str) and isinstance(b, str) and "/" in a + b and "://" not in a + b:
        return Path(a).resolve() == Path(b).resolve()
    return False


def settings_diff(main: Mapping, other: Mapping) -> list[str]:
    """'key: main -> other' for every flattened setting that differs (JSON values; 'absent' where a run lacks
    the key), output paths ignored, sorted by key."""
    a, b = flatten(main), flatten(other)
    changes = []
    for key in sorted(set(a) | set(b)):
        if key.rsplit(".", 1)[-1] in OUTPUT_KEYS or _same(a.get(key, ...), b.get(key, ...)):
            continue
        shown = [json.dumps(s[key]) if key in s else "absent" for s in (a, b)]
        changes.append(f"{key}: {shown[0]} -> {shown[1]}")
    return changes


def _pair(outcomes: PartOutcomes) -> dict:
    vlm, tools = metrics(outcomes.answers["vlm"].rank), metrics(outcomes.answers["vlm+tools"].rank)
    return {"users": len(outcomes), "vlm_HR@5": vlm["HR@5"], "vlm_NDCG@5": vlm["NDCG@5"],
            "vlm+tools_HR@5": tools["HR@5"], "vlm+tools_NDCG@5": tools["NDCG@5"]}


def ablation_rows(main_name: str, main_settings: Mapping, main: PartOutcomes,
                  ablations: Mapping[str, tuple[str, Mapping, PartOutcomes]]) -> list[dict]:
    """The main model's row, then one per ablation name -> (vlm_dir, its run settings, its outcomes on the
    same rows), each with the settings it changes relative to the main model."""
    rows = [{"name": f"{main_name} (main model)", "vlm_dir": None, "differs": [], **_pair(main)}]
    for name, (vlm_dir, settings, outcomes) in ablations.items():
        if not (outcomes.user_idx == main.user_idx).all() or not (outcomes.targets == main.targets).all():
            raise ValueError(f"ablation {name!r} ({vlm_dir}) was answered on other rows than the main model")
        rows.append({"name": name, "vlm_dir": vlm_dir, "differs": settings_diff(main_settings, settings),
                     **_pair(outcomes), "vlm_failures": outcomes.vlm_failures})
    return rows


def a6_rows(main_rows: list[dict], outcomes: PartOutcomes, routed_row: dict,
            fusion: Mapping | None = None) -> list[dict]:
    """Table A6 from rows the main table already holds: the tool ensemble (majority vote of the ranking
    tools; absent with fewer than two), the VLM without planning (consults on every row; and never), and
    ReasonRec (routed, with its route shares). `fusion`: the policy's VLM+tools fusion weights, shown beside
    the learned stack's so the two can be read side by side."""
    by_model = {r["model"]: r for r in main_rows}
    vote = by_model.get("majority_vote")
    rows = [{"answer": "tool ensemble only (majority vote)", "users": vote["users"] if vote else None,
             "HR@5": vote["HR@5"] if vote else None, "NDCG@5": vote["NDCG@5"] if vote else None,
             "what": ("majority vote of the ranking tools " + ", ".join(vote["members"]) if vote
                      else "fewer than two ranking tools: no ensemble")}]
    stack = by_model.get("learned_stack")
    if stack is not None:   # reports made before the stack was computed have no such row
        rows.append({"answer": "tool ensemble only (learned stack)", "users": stack["users"], **_two(stack),
                     "what": f"logistic-regression weights fit on {stack['fit_on_valid_users']} validation lists: "
                             + ", ".join(f"{n} {w:+.3f}" for n, w in stack["weights"].items())})
    consult = "the VLM consults tools on every user, whatever its risk"
    if fusion:
        consult += (f"; its refined ranking fused with the tools by weights fit on {fusion['n_rows']} validation "
                    f"lists: vlm {fusion['vlm']:+.3f}, " + ", ".join(f"{n} {w:+.3f}" for n, w in fusion["tools"].items()))
    for route, answer, what in (("vlm+tools", "VLM without planning (tools always)", consult),
                                ("vlm", "VLM-only", "the VLM alone, never consulting or delegating")):
        rows.append({"answer": answer, "users": len(outcomes), **_two(metrics(outcomes.answers[route].rank)),
                     "what": what})
    rows.append({"answer": "ReasonRec (routed)", "users": routed_row["users"], **_two(routed_row),
                 "route_shares": routed_row["route_shares"],
                 "what": "the router's plan per user: tool alone, VLM alone or VLM after consulting"})
    return rows


def _two(m: Mapping) -> dict:
    return {"HR@5": m["HR@5"], "NDCG@5": m["NDCG@5"]}
