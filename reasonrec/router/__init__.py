"""The risk-aware router (issue 5), Ray-free: who answers a query (a tool, the VLM, or the VLM advised by tools).

- config: RouterConfig (thresholds, tools, selection mode) and the versioned Policy (<model_dir>/policy.json).
- policy: the two-stage decision on numpy arrays (first_stage -> tool route, second_stage -> escalate).
- tool_selection: which tools a high-risk row consults (learned / random / oracle / fixed).
- refine: second-pass instructions with tool outputs, merging their answer, one-line rationales.
- calibrate: thresholds from validation arrays for a delegation target or a latency budget.

The batch job and the Serve app call these same functions; actors/ and jobs/ only move data.
"""

from reasonrec.router.config import Calibration, Policy, PolicyVersionError, RouterConfig
from reasonrec.router.policy import ROUTES, RoutingDecision, decide, first_stage, second_stage

__all__ = ["ROUTES", "Calibration", "Policy", "PolicyVersionError", "RouterConfig", "RoutingDecision", "decide",
           "first_stage", "second_stage"]
