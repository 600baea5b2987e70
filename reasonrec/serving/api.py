"""The HTTP API's request and response bodies. FastAPI turns them into the OpenAPI schema (GET /openapi.json,
/docs), so every field carries its description and its limits; unknown fields are refused (422).

Requests are strict: a JSON value of the wrong type is a 422 naming the field, never coerced (`"k": "5"`,
`5.0` or `true` is not k=5 or k=1; an id must be a JSON string). Ids are bounded in length wherever they appear
(also inside lists, so no error message echoes a megabyte id); pydantic refuses text that is not valid Unicode
(a lone surrogate, valid JSON as "\\ud800"), so nothing the answer echoes fails to encode.

Static limits here bound what a request may carry at all; the configured ones (ServeConfig.max_k,
max_history, max_ctr_items) are checked by reasonrec.serving.online with a message naming the field.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, model_validator

from reasonrec.config import StrictModel

ID_MAX_CHARS = 256
LIST_HARD_LIMIT = 10_000   # no request body parses a longer list, whatever the config allows

Route = Literal["tool", "vlm", "vlm+tools", "cold_start"]
Id = Annotated[str, Field(min_length=1, max_length=ID_MAX_CHARS)]   # a user or item id, wherever it appears


class Request(StrictModel):
    """Base of the request bodies: strict types on top of StrictModel's unknown-field refusal (the module
    docstring says why)."""

    model_config = ConfigDict(strict=True)


class RecommendRequest(Request):
    """Top-k items for a user (tonight's history) or for a given history (a session)."""

    user_id: Id | None = Field(None, description=(
        "A user of the dataset: their history is every interaction tonight's table was scored on. An unknown "
        "user_id is cold start (see `route`), not an error."))
    history: list[Id] | None = Field(None, max_length=LIST_HARD_LIMIT, description=(
        "Item ids, oldest first. With a known user_id it replaces their stored history; without one (or with an "
        "unknown one) it is a cold-start session. Every id must be in the catalogue; at most max_history ids."))
    k: int = Field(10, ge=1, le=1000, description=(
        "Items to return (at most the config's max_k); a JSON integer (\"5\", 5.0 and true are refused)."))
    task: Literal["sequential"] = Field("sequential", description=(
        "Recommendation task; the online router serves the sequential (next-item) task."))

    @model_validator(mode="after")
    def _someone(self):
        if self.user_id is None and self.history is None:
            raise ValueError("give user_id, history, or both")
        return self


class RecommendedItem(StrictModel):
    rank: int = Field(description="1 = best.")
    item_id: str = Field(description="Catalogue item id.")
    score: float = Field(description=(
        "On the route's scale: the best tool's score (tool), the VLM's log-probability (vlm, vlm+tools), the "
        "interaction count (cold_start without a sequential tool)."))


class RecommendResponse(StrictModel):
    user_id: str | None = Field(description="As requested.")
    items: list[RecommendedItem] = Field(description="Best first; fewer than k when fewer unseen items are left.")
    route: Route = Field(description=(
        "tool = the best tool answered alone (low risk); vlm = the VLM answered; vlm+tools = the VLM consulted "
        "tools and answered again (high risk); cold_start = unknown user: most-popular unseen items, ranked by "
        "the best tool on the given history when that tool reads histories only (e.g. sasrec)."))
    risk: Literal["low", "medium", "high"] = Field(description="The router's risk level (cold start is high).")
    evidence_horizon: float | None = Field(description="C(u) over tonight's interactions; null = unknown user.")
    confidence: float | None = Field(description="The confidence the route was decided on; null when none applies.")
    tools_consulted: list[str] = Field(description="Tools whose outputs the VLM saw (vlm+tools only).")
    rationale: str = Field(description="One line: why this route.")
    model_version: str = Field(description="'<vlm run>@<weights hash>', as in the nightly table's model_version.")
    cold_start: bool = Field(description="True when the user is not in the dataset.")


class CTRRequest(Request):
    """Click probabilities of items for one user."""

    user_id: Id = Field(description=(
        "A user of the dataset; an unknown one gets the average probability over a seeded sample of known users."))
    item_ids: list[Id] = Field(min_length=1, max_length=LIST_HARD_LIMIT, description=(
        "Catalogue item ids to score (at most the config's max_ctr_items)."))


class CTRItem(StrictModel):
    item_id: str = Field(description="As requested.")
    probability: float = Field(description="P(click) = sigmoid of the CTR tool's logit, in [0, 1].")


class CTRResponse(StrictModel):
    user_id: str = Field(description="As requested.")
    probabilities: list[CTRItem] = Field(description="One per requested item, in request order.")
    tool: str = Field(description="The CTR tool that scored them (ServeConfig.ctr_tool; auto = best AUC).")
    cold_start: bool = Field(description="True when the user is not in the dataset (population average).")


class ExplainRequest(Request):
    """Why this item for this user, in the VLM's words."""

    user_id: Id = Field(description=(
        "A user of the dataset (unknown = an empty history, evidence horizon 1.0)."))
    item_id: Id = Field(description="Catalogue item id to explain.")


class ExplainResponse(StrictModel):
    user_id: str = Field(description="As requested.")
    item_id: str = Field(description="As requested.")
    text: str = Field(description="The VLM's greedy explanation (the explanation task's prompt, thought forced).")
    model_version: str = Field(description="The VLM version that wrote it.")
    cold_start: bool = Field(description="True when the user is not in the dataset.")


class Health(StrictModel):
    status: Literal["ok"] = Field(description="The ingress replica answers.")


class Readiness(StrictModel):
    ready: bool = Field(description="Every deployment has loaded its models.")
    model_version: str = Field(description="Version the app serves.")
    waiting_for: list[str] = Field(description="Deployments still loading (or failed: see errors).")
    errors: dict[str, str] = Field(description="Deployment -> why its loading failed.")


class Problem(StrictModel):
    detail: str = Field(description="What was wrong, naming the field or value.")
