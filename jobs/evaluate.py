"""The evaluation report: tables mirroring the paper, from the saved splits, candidates and trained models.

    python jobs/evaluate.py --config configs/ml-latest-small.yaml
    python jobs/evaluate.py --dataset artifacts/datasets/ml-latest-small --out docs/reports/ml-latest-small
    python jobs/evaluate.py --config configs/synthetic.yaml --quick          # CI: 40 users
    python jobs/evaluate.py --config configs/ml-latest-small.yaml max_users=200 tool_selection=[]

Writes <out>/report.md, report.json (every number) and reliability.png, cold_start.png, a9.png. The test
users (all, or a seeded subset) are answered once on every route — best tool alone, VLM alone, VLM after
consulting tools (plus one VLM+tools pass per extra consult mode for Table A7) — by the stages the nightly
job runs, and every VLM table reads that one pass: ReasonRec's answer is each user's outcome on the route
the (calibrated) policy picks. The tools, most-popular and the majority vote are scored on the same users,
and so is each ablation VLM (config `ablations`: VLM-only and VLM+tools always, with the main run's tools).
Each `time_shift` entry runs the same code on another split (a temporal cut-off) with its own VLM and tools,
and its table sits beside the main table's numbers. On a merged data set each `multi_domain` entry scores one
domain's own test lists with the system trained on that domain alone and with the report's merged system.
No Ray: the job runs where it is launched; the VLM uses the GPU if there is one (recommend.device).
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

from reasonrec.cli import job_parser, resolve_config
from reasonrec.io import join
from reasonrec.report.config import EvaluateConfig, MultiDomain, TimeShift
from reasonrec.report.multi_domain import DomainMismatch
from reasonrec.report.time_shift import SplitMismatch
from reasonrec.report.writer import NOT_YET, markdown, plots, save

# torch, the tools and the VLM are imported by the recipe's methods: --help-config and config errors stay fast.


def parse(argv: list[str] | None) -> EvaluateConfig:
    parser = job_parser(__doc__)
    parser.add_argument("--dataset", help="sets recommend.dataset (and recommend.vlm_dir = artifacts/vlm/<its name>)")
    parser.add_argument("--out", help="sets out")
    parser.add_argument("--quick", action="store_true", help="sets quick=true (quick_users users)")
    args = parser.parse_args(argv)
    flags = []
    if args.dataset:
        flags += [f"recommend.dataset={json.dumps(args.dataset)}",
                  f"recommend.vlm_dir={json.dumps(join('artifacts/vlm', Path(args.dataset.rstrip('/')).name))}"]
    if args.out:
        flags.append(f"out={json.dumps(args.out)}")
    if args.quick:
        flags.append("quick=true")
    return resolve_config(EvaluateConfig, args, flags)


def _shown(path: str) -> str:
    """A local path under the working directory as a relative one, so a committed report names no home folder."""
    if "://" in path or not Path(path).is_absolute():
        return path
    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path


class EvaluateRecipe:
    """Main table (tools, most-popular, majority vote, VLM-only, VLM+tools always, ReasonRec; 1+N and full
    ranking), ablations (other VLMs on the same users), Table A6, CTR table, cold start by EH group, Tables
    A9 / A7 / 4, confidence calibration, time shift (another split's models beside the main table); the other
    sections of the paper are listed as not computed yet."""

    def __init__(self, cfg: EvaluateConfig, command: str):
        self.cfg, self.command = cfg, command
        self.started = time.perf_counter()
        self.seconds: dict[str, float] = {}
        self._tmp = tempfile.TemporaryDirectory(prefix="reasonrec-evaluate-")

    def _stage(self, name: str, since: float) -> None:
        self.seconds[name] = round(time.perf_counter() - since, 1)
        print(f"[evaluate] {name}: {self.seconds[name]} s", flush=True)

    # ------------------------------------------------------------------ setup

    def setup(self) -> None:
        from reasonrec.recommend.bundle import Bundle
        from reasonrec.recommend.calibration import part_requests, split_eh
        from reasonrec.recommend.system import resolve
        from reasonrec.report.ranking import load_tools
        from reasonrec.tools.data import ToolData

        t = time.perf_counter()
        cfg = self.cfg
        self.system = resolve(cfg.recommend)
        self.version, self.router, self.policy = self.system.model_version, self.system.router, self.system.policy
        self.bundle = Bundle(self.system)
        self.data = ToolData.load(cfg.recommend.dataset, cfg.split, cfg.negatives, cfg.ctr_split, cfg.ctr_ratio)
        self.requests = part_requests(self.data, "test", cfg.users, cfg.seed)
        # The learned tool stack's weights come from validation lists only (never the test part).
        self.valid_requests = part_requests(self.data, "valid", cfg.quick_users if cfg.quick else cfg.stack_users,
                                            cfg.seed)
        self.tools = load_tools(self.bundle.tools_dir, cfg.tools, self._tmp.name)
        self.ablations = {a.name: self._ablation_bundle(a.name, a.vlm_dir) for a in cfg.ablations}
        self.time_shift = [self._time_shift_setup(entry) for entry in cfg.time_shift]
        merged_eh = split_eh(self.data) if cfg.multi_domain else None
        self.multi_domain = [self._multi_domain_setup(entry, merged_eh) for entry in cfg.multi_domain]
        print(f"[evaluate] {self.version}: {len(self.requests)} of {len(self.data.test_candidates)} test users, "
              f"tools {list(self.tools.tools)}", flush=True)
        self._stage("setup", t)

    def _ablation_bundle(self, name: str, vlm_dir: str):
        """The ablation VLM with the main run's tools, consult pool and router: only the VLM differs."""
        from reasonrec.io import open_fs
        from reasonrec.recommend.bundle import Bundle
        from reasonrec.recommend.system import resolve

        run_json = join(vlm_dir, "run.json")
        fs, path = open_fs(run_json)
        if not fs.exists(path):
            raise FileNotFoundError(f"ablation {name!r}: {run_json} not found (train it with jobs/train_vlm.py, "
                                    "or drop it from ablations)")
        cfg = self.cfg.recommend.model_copy(update={"vlm_dir": vlm_dir, "tools_dir": self.bundle.tools_dir,
                                                    "consult_pool": list(self.bundle.consult_pool),
                                                    "router": self.router, "policy": "config"})
        return Bundle(resolve(cfg))

    def _time_shift_setup(self, entry: TimeShift) -> dict:
        """The entry's split checked against its VLM and tools (SplitMismatch before any scoring), its Bundle,
        router (the VLM's own policy.json when the main run is calibrated and it has one for its version, else
        the router config, and the table says which), ToolData, requests and tools."""
        from reasonrec.recommend.calibration import part_requests
        from reasonrec.report.ranking import load_tools
        from reasonrec.report.time_shift import check_split, split_summary
        from reasonrec.tools.data import ToolData

        cfg = self.cfg
        bundle = _other_system(cfg.recommend.model_copy(update={"vlm_dir": entry.vlm_dir,
                                                                "tools_dir": entry.tools_dir}))
        tools_dir = bundle.system.tools_dir
        if tools_dir is None:
            raise FileNotFoundError(f"time shift {entry.name!r}: no tools_dir set and {entry.vlm_dir}/run.json names "
                                    "none")
        tools = load_tools(tools_dir, None, self._tmp.name)
        if not tools.tools:
            raise FileNotFoundError(f"time shift {entry.name!r}: no trained tools in {tools_dir}")
        check_split(entry.split, entry.vlm_dir, tools_dir, list(tools.tools))
        summary = split_summary(cfg.recommend.dataset, entry.split)
        summary["file"] = _shown(summary["file"])
        data = ToolData.load(cfg.recommend.dataset, entry.split, entry.negatives, cfg.ctr_split, cfg.ctr_ratio)
        rows = cfg.quick_users if cfg.quick else (entry.max_rows or cfg.max_users)
        return {"entry": entry, "bundle": bundle, "router": bundle.router, "policy_source": bundle.system.policy_source,
                "data": data, "requests": part_requests(data, "test", rows, cfg.seed),
                "tools": tools, "summary": summary}

    def _multi_domain_setup(self, entry: MultiDomain, merged_eh) -> dict:
        """The domain's own system (its dataset, VLM, tools and router: resolve's rule with the time-shift
        fallback) and its seeded test lists, once as they are and once in the merged id space with the merged
        split's EH `merged_eh` (DomainMismatch before any scoring when the report's dataset was not merged from
        this one)."""
        from reasonrec.recommend.calibration import part_requests
        from reasonrec.report.multi_domain import domains_of, to_merged
        from reasonrec.report.ranking import load_tools
        from reasonrec.tools.data import ToolData

        cfg = self.cfg
        domains = domains_of(self.data.dataset)
        if entry.name not in domains:
            raise DomainMismatch(f"multi-domain {entry.name!r}: {cfg.recommend.dataset} was merged from "
                                 f"{domains or 'no domains (not a merged data set)'} (manifest.json `domains`)")
        bundle = _other_system(cfg.recommend.model_copy(update={"dataset": entry.dataset, "vlm_dir": entry.vlm_dir,
                                                                "tools_dir": entry.tools_dir, "consult_pool": None}))
        if bundle.system.tools_dir is None:
            raise FileNotFoundError(f"multi-domain {entry.name!r}: no tools_dir set and {entry.vlm_dir}/run.json "
                                    "names none")
        tools = load_tools(bundle.system.tools_dir, None, self._tmp.name)
        router, source = bundle.router, bundle.system.policy_source
        data = ToolData.load(entry.dataset, cfg.split, entry.negatives, cfg.ctr_split, cfg.ctr_ratio)
        rows = cfg.quick_users if cfg.quick else (entry.max_rows or cfg.max_users)
        requests = part_requests(data, "test", rows, cfg.seed)
        return {"entry": entry, "bundle": bundle, "router": router, "policy_source": source, "data": data,
                "tools": tools, "requests": requests,
                "merged_requests": to_merged(requests, data, self.data, merged_eh, entry.name)}

    # ------------------------------------------------------------------ run

    def run(self) -> dict:
        import numpy as np

        from reasonrec.report.ablations import a6_rows
        from reasonrec.report.cold_start import cold_start_rows
        from reasonrec.report.conflict import conflict_row
        from reasonrec.report.ctr import ctr_rows
        from reasonrec.recommend.outcomes import collect
        from reasonrec.report.planning import a7_rows, a9_rows
        from reasonrec.report.ranking import baseline_rows

        cfg = self.cfg
        t = time.perf_counter()
        baselines = baseline_rows(self.tools, self.data, self.requests, cfg.full_ranking, self.valid_requests)
        self._stage("tools and baselines", t)
        t = time.perf_counter()
        outcomes = collect(self.bundle, self.requests, cfg.batch_size, cfg.tool_selection,
                           lambda done, total: print(f"[evaluate] VLM pass: {done}/{total} users", flush=True))
        self._stage("VLM pass (every route)", t)
        if any(outcomes.vlm_failures.values()):
            print(f"[evaluate] WARNING: VLM passes failed on {outcomes.vlm_failures} rows", file=sys.stderr)
        vlm_rows, routed, route = _vlm_rows(outcomes, self.router)
        t = time.perf_counter()
        ctr_tools = {n: self.tools.tools[n] for n in self.tools.names(("ctr",))}
        users = None if cfg.users is None else np.unique(self.requests.user_idx)
        ctr = ctr_rows(ctr_tools, self.data, users, list(self.bundle.instruction_config.tasks))
        self._stage("CTR table", t)
        hits = {outcomes.best_tool: outcomes.answers["tool"].rank < 5, "VLM-only": outcomes.answers["vlm"].rank < 5,
                "ReasonRec": routed.rank < 5}
        thresholds = {"ReasonRec (routed, calibrated policy)" if self.policy else "ReasonRec (routed)": self.router}
        if self.policy is not None:
            thresholds["routed, router config thresholds"] = cfg.recommend.router
        ablations = self._ablations(outcomes)
        fusion = self.router.fusion.model_dump() if self.router.fusion is not None else None
        explanation = self._explanation()
        time_shift = self._time_shift(baselines + vlm_rows)
        multi_domain = self._multi_domain()
        by_domain = self._by_domain(outcomes.user_idx, hits)
        return {"main": baselines + vlm_rows, "ablations": ablations, "a6": a6_rows(baselines, outcomes, vlm_rows[-1], fusion),
                "ctr": ctr, "cold_start": cold_start_rows(outcomes.eh, hits, route),
                "a9": a9_rows(outcomes, thresholds), "a7": a7_rows(outcomes, self.router),
                "conflict": conflict_row(outcomes.answers["tool"].top1, routed.top1, outcomes.targets),
                "calibration": self._calibration(outcomes, routed.rank, route),
                "calibration_hit": cfg.calibration_hit, "calibration_bins": cfg.calibration_bins,
                "explanation": explanation, "time_shift": time_shift,
                "multi_domain": multi_domain, "by_domain": by_domain,
                "not_yet": {k: v for k, v in NOT_YET.items() if not (explanation and k.startswith("Explanation"))
                            and not (time_shift and k.startswith("Time shift"))
                            and not (multi_domain and k.startswith("Multi-domain"))},
                "vlm_failures": outcomes.vlm_failures,
                "answer_sources": {"VLM-only": outcomes.answers["vlm"].sources(),
                                   "VLM+tools always": outcomes.answers["vlm+tools"].sources(),
                                   "ReasonRec (routed)": routed.sources()}}

    def _ablations(self, main) -> list[dict]:
        """Each ablation VLM on the same rows (VLM-only and VLM+tools always), beside the main model's."""
        from reasonrec.report.ablations import ablation_rows
        from reasonrec.recommend.outcomes import collect

        got = {}
        for name, bundle in self.ablations.items():
            t = time.perf_counter()
            outcomes = collect(bundle, self.requests, self.cfg.batch_size, (), lambda done, total, name=name: print(
                f"[evaluate] ablation {name!r}: {done}/{total} users", flush=True))
            self._stage(f"ablation {name}", t)
            got[name] = (bundle.cfg.vlm_dir, bundle.settings, outcomes)
        rows = ablation_rows(self.version.split("@", 1)[0], self.bundle.settings, main, got) if got else []
        for row in rows[1:]:
            row["model_version"] = self.ablations[row["name"]].version
        return rows

    def _explanation(self) -> list[dict]:
        """One table per configured data set with review text: its own Bundle (dataset + its VLM) and split."""
        from reasonrec.recommend.bundle import Bundle
        from reasonrec.recommend.config import RecommendConfig
        from reasonrec.recommend.system import resolve
        from reasonrec.report.explanation import explanation_rows
        from reasonrec.tools.data import ToolData

        tables = []
        for entry in self.cfg.explanation:
            t = time.perf_counter()
            recommend = RecommendConfig.model_validate({"dataset": entry.dataset, "vlm_dir": entry.vlm_dir,
                                                        "device": self.cfg.recommend.device, "policy": "config"})
            bundle = Bundle(resolve(recommend))
            data = ToolData.load(entry.dataset, entry.split, entry.negatives)
            pairs = self.cfg.quick_users if self.cfg.quick else entry.max_pairs
            rows = explanation_rows(bundle, data, pairs, self.cfg.seed, entry.max_new_tokens, entry.drop_seen)
            tables.append({"name": entry.name, "dataset": _shown(entry.dataset), "vlm_dir": _shown(entry.vlm_dir),
                           "model_version": bundle.version, "split": entry.split, "max_pairs": pairs,
                           "drop_seen": entry.drop_seen, "rows": rows})
            self._stage(f"explanation {entry.name}", t)
        return tables

    def _time_shift(self, main_rows: list[dict]) -> list[dict]:
        """Per entry: baseline_rows and the one-pass VLM rows on its split's test rows, beside main_rows."""
        from reasonrec.recommend.outcomes import collect
        from reasonrec.report.ranking import baseline_rows
        from reasonrec.report.time_shift import shift_rows

        tables = []
        for ts in self.time_shift:
            entry, requests, t = ts["entry"], ts["requests"], time.perf_counter()
            rows = baseline_rows(ts["tools"], ts["data"], requests, full=False)
            outcomes = collect(ts["bundle"], requests, self.cfg.batch_size, (), lambda done, total, n=entry.name: print(
                f"[evaluate] time shift {n!r}: {done}/{total} rows", flush=True))
            rows += _vlm_rows(outcomes, ts["router"])[0]
            lists = join(self.cfg.recommend.dataset, "splits", entry.split, "candidates", f"neg{entry.negatives}",
                         "test.parquet")
            tables.append({"name": entry.name, "split": entry.split, "negatives": entry.negatives,
                           "vlm_dir": _shown(entry.vlm_dir), "tools_dir": _shown(ts["bundle"].tools_dir),
                           "model_version": ts["bundle"].version, "policy_source": ts["policy_source"],
                           "rows_scored": len(requests), "rows_total": len(ts["data"].test_candidates),
                           "users_scored": len(set(requests.user_idx.tolist())),
                           "summary": ts["summary"], "vlm_failures": outcomes.vlm_failures,
                           "files": [ts["summary"]["file"], _shown(lists), _shown(join(entry.vlm_dir, "run.json"))],
                           "rows": shift_rows(main_rows, rows)})
            self._stage(f"time shift {entry.name}", t)
        return tables

    def _multi_domain(self) -> list[dict]:
        """Per domain: its single-domain system and the merged system (baseline_rows + the one-pass VLM rows) on
        the same test lists, side by side, with how each side's tools were trained."""
        from reasonrec.report.multi_domain import compare_rows, training_notes
        from reasonrec.recommend.outcomes import collect
        from reasonrec.report.ranking import baseline_rows

        tables = []
        for md in self.multi_domain:
            entry, t = md["entry"], time.perf_counter()
            sides = {}
            for side, bundle, router, tools, data, requests in (
                    ("single", md["bundle"], md["router"], md["tools"], md["data"], md["requests"]),
                    ("merged", self.bundle, self.router, self.tools, self.data, md["merged_requests"])):
                rows = baseline_rows(tools, data, requests, full=False)
                outcomes = collect(bundle, requests, self.cfg.batch_size, (), lambda done, total, n=entry.name, s=side:
                                   print(f"[evaluate] multi-domain {n!r}, {s} system: {done}/{total} users", flush=True))
                sides[side] = (rows + _vlm_rows(outcomes, router)[0], outcomes.vlm_failures,
                               training_notes(bundle.tools_dir, list(tools.tools)))
            lists = join(entry.dataset, "splits", self.cfg.split, "candidates", f"neg{entry.negatives}", "test.parquet")
            tables.append({"name": entry.name, "dataset": _shown(entry.dataset), "vlm_dir": _shown(entry.vlm_dir),
                           "tools_dir": _shown(md["bundle"].tools_dir), "model_version": md["bundle"].version,
                           "policy_source": md["policy_source"], "negatives": entry.negatives,
                           "users_scored": len(md["requests"]), "users_total": len(md["data"].test_candidates),
                           "files": [_shown(lists), _shown(join(entry.vlm_dir, "run.json"))],
                           "vlm_failures": {s: v[1] for s, v in sides.items()},
                           "rows": compare_rows(sides["single"][0], sides["merged"][0],
                                                {s: v[2] for s, v in sides.items()})})
            self._stage(f"multi-domain {entry.name}", t)
        return tables

    def _by_domain(self, user_idx, hits: dict) -> list[dict]:
        """The main table's hit@5 split by the users' domain, when the report's dataset is a merge ([] if not)."""
        from reasonrec.report.multi_domain import by_domain_rows, domain_of_users, domains_of

        if not domains_of(self.data.dataset):
            return []
        return by_domain_rows(domain_of_users(self.data.dataset, user_idx), hits)

    def _calibration(self, outcomes, routed_rank, route) -> list[dict]:
        """Forced routes over every user, then the routed answer's users on each route (PartOutcomes, arrays)."""
        from reasonrec.report.calibration import calibration_row
        from reasonrec.router.policy import ROUTES

        k, bins = self.cfg.calibration_hit, self.cfg.calibration_bins
        conf = {"tool": outcomes.tool_confidence, "vlm": outcomes.vlm_confidence, "vlm+tools": outcomes.vlm_confidence}
        rows = [calibration_row(f"forced {r}", conf[r], outcomes.answers[r].rank < k, bins) for r in ROUTES]
        for r in ROUTES:
            on = route == r
            if on.any():
                rows.append(calibration_row(f"routed, {r} users", conf[r][on], routed_rank[on] < k, bins))
        return rows

    # ------------------------------------------------------------------ save

    def header(self) -> dict:
        import torch

        cfg, splits = self.cfg, join(self.cfg.recommend.dataset, "splits")
        cuda = self.bundle.cfg.device != "cpu" and torch.cuda.is_available()
        files = [join(splits, cfg.split, "candidates", f"neg{cfg.negatives}", "test.parquet"),
                 join(splits, cfg.split, "evidence.parquet"), join(cfg.recommend.vlm_dir, "run.json")]
        if self.policy is not None:
            files.append(join(cfg.recommend.vlm_dir, "policy.json"))
        if self.data.ctr is not None:
            files.append(join(splits, cfg.ctr_split, "ctr", f"1to{cfg.ctr_ratio}", "test.parquet"))
        return {"dataset": cfg.recommend.dataset, "dataset_name": Path(cfg.recommend.dataset.rstrip("/")).name,
                "split": cfg.split, "negatives": cfg.negatives, "seed": cfg.seed, "quick": cfg.quick,
                "users": len(self.requests), "users_total": len(self.data.test_candidates), "files": files,
                "model_version": self.version, "vlm_dir": cfg.recommend.vlm_dir,
                "tools_dir": _shown(self.bundle.tools_dir),
                "best_tool": next(iter(self.bundle.tools), None),
                "policy_source": (f"policy.json ({self.policy.model_version})" if self.policy
                                  else "the router config (policy=config)"),
                "thresholds": self.router.model_dump(include={"tau_low", "tau_high", "tau_tool", "tau_conf"}),
                "confidence_source": self.router.confidence_source, "tool_selection": self.router.tool_selection,
                "consult_pool": list(self.bundle.tools), "n_consult": self.router.n_consult,
                "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                            "python": platform.python_version(),
                            "torch": torch.__version__,
                            "device": f"cuda ({torch.cuda.get_device_name(0)})" if cuda else "cpu"},
                "command": self.command, "stage_seconds": dict(self.seconds),
                "wall_seconds": round(time.perf_counter() - self.started, 1), "config": cfg.model_dump(mode="json")}

    def save(self, tables: dict) -> dict:
        t = time.perf_counter()
        folder = join(self._tmp.name, "png")
        os.makedirs(folder, exist_ok=True)
        report = {"header": {}, **tables}
        pngs = plots(report, folder)
        self._stage("plots", t)
        report["header"] = self.header()
        save(report, self.cfg.out, folder, pngs)
        return report

    def cleanup(self) -> None:
        self._tmp.cleanup()


def _other_system(recommend):
    """The Bundle of another system of the report (time shift, multi-domain): the main run's resolve rule, except
    that a VLM without its policy falls back to the router config, and the table says so (policy_source)."""
    from reasonrec.recommend.bundle import Bundle
    from reasonrec.recommend.system import resolve

    return Bundle(resolve(recommend, missing_policy="config"))


def _vlm_rows(outcomes, router) -> tuple[list[dict], object, object]:
    """(VLM-only, VLM+tools always and ReasonRec rows, the routed Outcome, the route per row) of one pass."""
    from reasonrec.report.ranking import metrics
    from reasonrec.router.policy import ROUTES

    routed, route = outcomes.routed(router)
    rows = [{"model": "VLM-only", "kind": "vlm", "users": len(outcomes), **metrics(outcomes.answers["vlm"].rank)},
            {"model": "VLM+tools always", "kind": "vlm", "users": len(outcomes),
             **metrics(outcomes.answers["vlm+tools"].rank)},
            {"model": "ReasonRec (routed)", "kind": "vlm", "users": len(outcomes), **metrics(routed.rank),
             "route_shares": {r: float((route == r).mean()) for r in ROUTES}}]
    return rows, routed, route


def recipe_main(argv: list[str] | None = None) -> dict:
    cfg = parse(argv)
    command = "python jobs/evaluate.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    recipe = EvaluateRecipe(cfg, command)
    try:
        recipe.setup()
    except (FileNotFoundError, SplitMismatch, DomainMismatch) as err:  # no policy.json, a missing tool, a model of
        # another split, a domain the merged dataset was not built from
        print(f"evaluate: {err}", file=sys.stderr)
        sys.exit(1)
    report = recipe.save(recipe.run())
    recipe.cleanup()
    print(markdown(report) + f"Report: {cfg.out}/report.{{md,json}}, reliability.png, cold_start.png, a9.png")
    return report


if __name__ == "__main__":
    recipe_main()
