"""Pick the router's thresholds on the validation lists and save them as the VLM version's policy.

    python jobs/calibrate.py --config configs/synthetic.yaml
    python jobs/calibrate.py --config configs/ml-latest-small.yaml objective=latency_budget target=0.05
    ray job submit --working-dir . -- python jobs/calibrate.py --config configs/ml-latest-small.yaml

First the tool route's tool becomes the ranking tool with the best validation NDCG@5 (choose_best_tool; tools
only). Then every validation row (or a seeded subset, max_users) is answered on each route — the best tool alone,
the VLM alone, the VLM after consulting tools — by the same stages the nightly job runs, once, so each row's hit@5
and each route's latency are known. From the same pass the VLM+tools fusion weights (the refined VLM ranking and
every pool tool's scores, reasonrec.router.fusion) are fit by a logistic regression (fit_fusion) and those rows
re-merged with them (no second VLM pass); tool and weights go into policy.json. A grid search
(reasonrec.router.calibrate) then picks the thresholds with the best HR@5 under the delegation-share target or the
latency budget; they are written to <vlm_dir>/policy.json, stamped with the model version (a policy never applies
to other weights), and a report to <out>.

No Ray: the job runs where it is launched (with `ray job submit`, on the node the driver lands on); the VLM
uses that node's GPU if it has one (recommend.device). Exits 1 with the grid's best reachable value when the
target cannot be met.
"""

from __future__ import annotations

import json
import sys
import time

from reasonrec.cli import job_parser, resolve_config
from reasonrec.io import join, open_fs
from reasonrec.recommend.bundle import Bundle
from reasonrec.recommend.calibration import (CalibrateConfig, fusion_examples, part_requests, tool_metrics,
                                             with_fusion)
from reasonrec.recommend.outcomes import PartOutcomes, collect
from reasonrec.recommend.system import System, resolve, with_router
from reasonrec.router.calibrate import calibrate, evaluate
from reasonrec.router.config import Policy, RouterConfig
from reasonrec.router.fusion import fit_fusion
from reasonrec.router.policy import ROUTES
from reasonrec.tools.data import ToolData


def setup(cfg: CalibrateConfig) -> tuple[System, Bundle, ToolData]:
    system = resolve(cfg.recommend.model_copy(update={"policy": "config"}))  # the router section, not a policy
    data = ToolData.load(system.dataset, cfg.split, cfg.negatives)
    return system, Bundle(system), data


def choose_tool(cfg: CalibrateConfig, system: System, bundle: Bundle, requests) -> tuple[System, Bundle, dict]:
    """The best validation tool as the tool route's tool (tools only, no VLM pass); the system and bundle that
    answer with it, fusion off (the weights are fit on this system's refined answers), and what was chosen."""
    chosen: dict = {}
    router = system.router.model_copy(update={"fusion": None})
    if cfg.choose_best_tool:
        metrics = tool_metrics(bundle, requests)
        best = max(metrics, key=lambda name: (metrics[name]["NDCG@5"], metrics[name]["HR@5"]))
        chosen["tool_metrics"] = metrics
        chosen["best_tool"] = best
        print(f"[calibrate] tool route: {best} (validation NDCG@5 {metrics[best]['NDCG@5']:.4f}; configured "
              f"{router.best_tool.get('sequential')})", flush=True)
        router = router.model_copy(update={"best_tool": {**router.best_tool, "sequential": best}})
    if router != system.router:
        system = with_router(system, router)
        bundle = Bundle(system)
    return system, bundle, chosen


def fuse(cfg: CalibrateConfig, outcomes: PartOutcomes, requests, router: RouterConfig,
         chosen: dict) -> tuple[PartOutcomes, RouterConfig]:
    """Fit the VLM+tools fusion weights on the refined rows the outcomes pass kept and re-merge those rows with
    them (no second VLM pass); the outcomes and the router the threshold search and the policy then use."""
    if not cfg.fit_fusion:
        return outcomes, router
    examples = fusion_examples(outcomes, requests)
    if examples is None:
        chosen["fusion_skipped"] = "no VLM+tools row whose refined pass parsed: the refined ranking stands alone"
        print(f"[calibrate] WARNING: fusion not fit: {chosen['fusion_skipped']}", file=sys.stderr, flush=True)
        return outcomes, router
    fusion = fit_fusion(*examples, cfg.fusion_regularisation)
    chosen["fusion"] = fusion.model_dump()
    print(f"[calibrate] fusion weights on {fusion.n_rows} rows: {fusion.moved_by(examples[2])}", flush=True)
    return with_fusion(outcomes, requests, fusion), router.model_copy(update={"fusion": fusion})


def search(cfg: CalibrateConfig, outcomes: PartOutcomes, version: str, router: RouterConfig) -> Policy:
    """The grid search; an unreachable target exits 1 with calibrate()'s message (the grid's best value)."""
    goal = {"target_share": cfg.target} if cfg.objective == "delegation_share" else {"latency_budget": cfg.target}
    try:
        return calibrate(outcomes.eh, outcomes.tool_confidence, outcomes.vlm_confidence, outcomes.parse_ok,
                         outcomes.hits(), outcomes.mean_latency(), model_version=version, cfg=router,
                         tau_low=cfg.tau_low, tau_tool=cfg.tau_tool, tau_conf=cfg.tau_conf, tau_high=cfg.tau_high,
                         split=cfg.part, **goal)
    except ValueError as err:
        print(f"calibrate: {err} ({len(outcomes)} {cfg.part} rows, model {version})", file=sys.stderr)
        sys.exit(1)


def build_report(cfg: CalibrateConfig, outcomes: PartOutcomes, policy: Policy, router: RouterConfig,
                 policy_uri: str, seconds: float, chosen: dict) -> dict:
    hr5, latency = outcomes.hr5(), outcomes.mean_latency()
    args = (outcomes.eh, outcomes.tool_confidence, outcomes.vlm_confidence, outcomes.parse_ok, outcomes.hits(),
            latency)
    routed, before = evaluate(*args, policy), evaluate(*args, router)
    return {
        "model_version": policy.model_version, "dataset": cfg.recommend.dataset, "split": cfg.split,
        "part": cfg.part, "negatives": cfg.negatives, "rows": len(outcomes), "policy_uri": policy_uri,
        "objective": cfg.objective, "target": cfg.target, "tools": outcomes.tool_names,
        "routes": {r: {"hr5": hr5[r], "latency": latency[r], "vlm_failures": outcomes.vlm_failures[r]}
                   for r in ROUTES},
        "thresholds": policy.model_dump(include={"tau_low", "tau_high", "tau_tool", "tau_conf", "confidence_source"}),
        "routed": routed, "config_thresholds": before,
        "routed_minus_forced_hr5": {r: routed["hr5"] - hr5[r] for r in ROUTES},
        "parse_ok_share": float(outcomes.parse_ok.mean()), "seconds": round(seconds, 1), **chosen,
        "config": cfg.model_dump(mode="json"),
    }


def markdown(report: dict) -> str:
    t, r = report["thresholds"], report["routed"]
    lines = [f"Calibration of {report['model_version']} on {report['dataset']} {report['split']}/{report['part']} "
             f"(1+{report['negatives']} lists, {report['rows']} rows), objective {report['objective']} "
             f"target {report['target']:g}.", "",
             "| answer | HR@5 | latency s/row | tool share |", "|---|---|---|---|"]
    for route, row in report["routes"].items():
        lines.append(f"| {route} (forced) | {row['hr5']:.4f} | {row['latency']:.4f} | {float(route == 'tool'):.2f} |")
    c = report["config_thresholds"]
    lines.append(f"| routed, config thresholds | {c['hr5']:.4f} | {c['latency']:.4f} | {c['share']:.2f} |")
    lines.append(f"| **routed, calibrated** | **{r['hr5']:.4f}** | {r['latency']:.4f} | {r['share']:.2f} |")
    lines += ["", f"Thresholds: tau_low {t['tau_low']:g}, tau_tool {t['tau_tool']:g}, tau_conf {t['tau_conf']:g}, "
              f"tau_high {t['tau_high']:g} ({t['confidence_source']}). Route shares: "
              + ", ".join(f"{k} {r[f'share_{k}']:.2f}" for k in ROUTES) + f". Policy: {report['policy_uri']}."]
    if "best_tool" in report:
        lines += ["", f"Tool route: {report['best_tool']}, the best validation NDCG@5 of "
                  + ", ".join(f"{n} {m['NDCG@5']:.4f}" for n, m in report["tool_metrics"].items()) + "."]
    if "fusion" in report:
        f = report["fusion"]
        lines += ["", f"VLM+tools fusion weights ({f['n_rows']} rows): vlm {f['vlm']:.3f}, "
                  + ", ".join(f"{n} {w:.3f}" for n, w in f["tools"].items()) + "."]
    return "\n".join(lines) + "\n"


def save(cfg: CalibrateConfig, report: dict) -> str:
    out = cfg.out or join(cfg.recommend.vlm_dir, "calibration")
    fs, path = open_fs(out)
    fs.makedirs(path, exist_ok=True)
    with fs.open(join(path, "calibration.json"), "w") as f:
        json.dump(report, f, indent=2)
    with fs.open(join(path, "calibration.md"), "w") as f:
        f.write(markdown(report))
    return out


def main(argv: list[str] | None = None) -> dict:
    cfg = resolve_config(CalibrateConfig, job_parser(__doc__).parse_args(argv))
    started = time.perf_counter()
    system, bundle, data = setup(cfg)
    version = system.model_version
    requests = part_requests(data, cfg.part, cfg.max_users, cfg.seed)
    print(f"[calibrate] {version}: {len(requests)} {cfg.split}/{cfg.part} rows, tools {list(bundle.tools)}", flush=True)
    system, bundle, chosen = choose_tool(cfg, system, bundle, requests)
    outcomes = collect(bundle, requests, cfg.batch_size, keep_refine_inputs=cfg.fit_fusion,
                       progress=lambda done, total: print(f"[calibrate] scored {done}/{total} rows", flush=True))
    if any(outcomes.vlm_failures.values()):  # those rows carry the tool's answer on the VLM routes
        print(f"[calibrate] WARNING: VLM passes failed on {outcomes.vlm_failures} rows", file=sys.stderr)
    outcomes, router = fuse(cfg, outcomes, requests, bundle.router, chosen)
    policy = search(cfg, outcomes, version, router)
    policy_uri = policy.save(cfg.recommend.vlm_dir)
    Policy.load(cfg.recommend.vlm_dir, version)  # what the nightly job will read back
    report = build_report(cfg, outcomes, policy, router, policy_uri, time.perf_counter() - started, chosen)
    out = save(cfg, report)
    print(markdown(report) + f"Report: {out}/calibration.{{json,md}}")
    return report


if __name__ == "__main__":
    main()
