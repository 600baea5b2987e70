"""Prompt templates: 10 paraphrases per task, and the slot text that fills them.

Paraphrases keep the model from keying on one fixed wording (the 'single' mode is the ablation that
does). Every template states the user's evidence horizon, so the thought's 'EH:' field is copied from the
prompt, not guessed. Slots:

    {images}        one "<image>" per shown item (may be empty)
    {history}       item tokens with short titles, oldest first: "<item_12> Toy Story (1995) <item_7> Heat"
    {eh}            evidence horizon, two decimals
    {candidates}    direct: the item tokens of the list to choose from
    {item}          ctr / explanation: the target item token and its short title
    {tool_outputs}  "Tool hints: ..." when tools are consulted, else empty

Unused slots are not allowed in a template: each task's templates use exactly that task's slots. The slot
values travel as one `PromptSlots` (built by `ItemText.slots`, carried on the Instruction record), and `render`
is the only place a prompt is written: training, the nightly first pass, the refine pass (the same slots with
new tool hints) and explanations all go through it, so their prompts cannot drift apart.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Literal

import numpy as np

from reasonrec.data.schema import Dataset
from reasonrec.data.splits import stable_int
from reasonrec.vlm.tokens import IMAGE_TOKEN, item_token

N_TEMPLATES = 10
EMPTY_HISTORY = "none yet"

SLOTS: dict[str, frozenset[str]] = {
    "sequential": frozenset({"images", "history", "eh", "tool_outputs"}),
    "direct": frozenset({"images", "history", "eh", "candidates", "tool_outputs"}),
    "ctr": frozenset({"images", "history", "eh", "item", "tool_outputs"}),
    "explanation": frozenset({"images", "history", "eh", "item", "tool_outputs"}),
}

TEMPLATES: dict[str, tuple[str, ...]] = {
    "sequential": (
        "{images} History: {history}. Evidence horizon {eh}. {tool_outputs} Which item comes next?",
        "{images} The user recently chose {history}. Evidence horizon: {eh}. {tool_outputs} "
        "Predict the next item.",
        "Oldest to newest, this user picked {images} {history}. Their evidence horizon is {eh}. "
        "{tool_outputs} What will they pick next?",
        "{images} Sequence so far: {history} (evidence horizon {eh}). {tool_outputs} Name the following item.",
        "Evidence horizon {eh}. {images} Items seen in order: {history}. {tool_outputs} "
        "Guess the next interaction.",
        "{images} A shopper went through {history}. Evidence horizon = {eh}. {tool_outputs} "
        "Which item do they reach for next?",
        "{images} Past activity: {history}. Evidence horizon {eh}. {tool_outputs} "
        "Recommend the single next item.",
        "User timeline: {images} {history}. The evidence horizon is {eh}. {tool_outputs} "
        "What comes after the last one?",
        "{images} Known so far: {history}; evidence horizon {eh}. {tool_outputs} "
        "Give the item this user engages with next.",
        "{images} Interactions: {history}. Evidence horizon {eh}. {tool_outputs} Continue the sequence with one item.",
    ),
    "direct": (
        "{images} History: {history}. Evidence horizon {eh}. {tool_outputs} Choose one of: {candidates}.",
        "{images} The user liked {history}. Evidence horizon: {eh}. {tool_outputs} "
        "Which candidate suits them best? {candidates}",
        "Candidates: {candidates}. {images} This user's history is {history}, evidence horizon {eh}. "
        "{tool_outputs} Pick the best one.",
        "{images} Past items: {history} (evidence horizon {eh}). {tool_outputs} "
        "From {candidates}, select the item to recommend.",
        "Evidence horizon {eh}. {images} Items this user chose: {history}. {tool_outputs} "
        "Rank first among {candidates}?",
        "{images} A shopper bought {history}. Evidence horizon = {eh}. {tool_outputs} "
        "Which of these fits: {candidates}?",
        "{images} Activity: {history}. Evidence horizon {eh}. {tool_outputs} "
        "Recommend exactly one of {candidates}.",
        "Options {candidates}. User timeline: {images} {history}. The evidence horizon is {eh}. "
        "{tool_outputs} Which option wins?",
        "{images} Known so far: {history}; evidence horizon {eh}. {tool_outputs} "
        "Pick the candidate the user prefers: {candidates}.",
        "{images} Interactions: {history}. Evidence horizon {eh}. {tool_outputs} Best match in {candidates}?",
    ),
    "ctr": (
        "{images} History: {history}. Evidence horizon {eh}. {tool_outputs} Will the user click {item}?",
        "{images} The user recently chose {history}. Evidence horizon: {eh}. {tool_outputs} "
        "Would they engage with {item}? Yes or no.",
        "Item {item}. {images} This user's history is {history}, evidence horizon {eh}. {tool_outputs} "
        "Click or not?",
        "{images} Past items: {history} (evidence horizon {eh}). {tool_outputs} Does {item} get a click?",
        "Evidence horizon {eh}. {images} Items seen in order: {history}. {tool_outputs} "
        "Is {item} of interest?",
        "{images} A shopper went through {history}. Evidence horizon = {eh}. {tool_outputs} "
        "Will they open {item}?",
        "{images} Activity: {history}. Evidence horizon {eh}. {tool_outputs} Predict a click on {item}.",
        "User timeline: {images} {history}. The evidence horizon is {eh}. {tool_outputs} "
        "Yes or no: do they pick {item}?",
        "{images} Known so far: {history}; evidence horizon {eh}. {tool_outputs} Would this user click {item}?",
        "{images} Interactions: {history}. Evidence horizon {eh}. {tool_outputs} Click on {item}: yes or no?",
    ),
    "explanation": (
        "{images} History: {history}. Evidence horizon {eh}. {tool_outputs} Why did the user choose {item}?",
        "{images} The user recently chose {history}. Evidence horizon: {eh}. {tool_outputs} "
        "Write their review of {item}.",
        "Item {item}. {images} This user's history is {history}, evidence horizon {eh}. {tool_outputs} "
        "Explain what they think of it.",
        "{images} Past items: {history} (evidence horizon {eh}). {tool_outputs} "
        "In the user's words, describe {item}.",
        "Evidence horizon {eh}. {images} Items seen in order: {history}. {tool_outputs} "
        "What would this user say about {item}?",
        "{images} A shopper went through {history}. Evidence horizon = {eh}. {tool_outputs} "
        "Give their opinion of {item}.",
        "{images} Activity: {history}. Evidence horizon {eh}. {tool_outputs} Explain the choice of {item}.",
        "User timeline: {images} {history}. The evidence horizon is {eh}. {tool_outputs} "
        "Review {item} as this user.",
        "{images} Known so far: {history}; evidence horizon {eh}. {tool_outputs} Explain why {item} appeals "
        "to them.",
        "{images} Interactions: {history}. Evidence horizon {eh}. {tool_outputs} Justify {item} for this user.",
    ),
}


def template_slots(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


@dataclass(frozen=True)
class PromptSlots:
    """The slot text of one prompt. candidates / item are None for the tasks whose templates lack them, so a
    record says which task's slots it holds; a refine pass copies it with another tool_outputs."""

    images: str
    history: str
    eh: str
    tool_outputs: str = ""
    candidates: str | None = None   # direct only
    item: str | None = None         # ctr and explanation only

    def names(self) -> frozenset[str]:
        return frozenset(f.name for f in fields(self) if getattr(self, f.name) is not None)


def render(task: str, template_id: int, slots: PromptSlots) -> str:
    """Fill one template; whitespace runs collapse to one space, so empty slots leave no gaps."""
    if task not in TEMPLATES:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(TEMPLATES)}")
    if not 0 <= template_id < N_TEMPLATES:
        raise ValueError(f"template_id must be in [0, {N_TEMPLATES}), got {template_id}")
    given = slots.names()
    missing, unknown = SLOTS[task] - given, given - SLOTS[task]
    if missing or unknown:
        raise ValueError(f"{task}: missing slots {sorted(missing)}, unknown slots {sorted(unknown)}")
    # Slot values are inserted once, never re-formatted, so braces in titles are safe.
    values = {name: getattr(slots, name) for name in given}
    return " ".join(TEMPLATES[task][template_id].format(**values).split())


class TemplateMixture:
    """Which paraphrase an example gets: a seeded hash of its key, so it never depends on build order."""

    def __init__(self, mode: Literal["mixture", "single"] = "mixture", seed: int = 0):
        if mode not in ("mixture", "single"):
            raise ValueError(f"mode must be 'mixture' or 'single', got {mode!r}")
        self.mode, self.seed = mode, seed

    def pick(self, task: str, key: str) -> int:
        if self.mode == "single":
            return 0
        return stable_int(f"{self.seed}/template/{task}/{key}") % N_TEMPLATES


class ItemText:
    """Slot text for items: token + truncated title, and which history items can show an image."""

    def __init__(self, titles: Sequence[str], has_image: np.ndarray, title_max_chars: int = 24):
        self.titles = [_short(str(t), title_max_chars) for t in titles]
        self.has_image = np.asarray(has_image, dtype=bool)

    @classmethod
    def from_dataset(cls, ds: Dataset, title_max_chars: int = 24) -> "ItemText":
        items = ds.items.sort_values("item_idx")
        return cls(items["title"].tolist(), (items["image_status"] == "ok").to_numpy(), title_max_chars)

    def item(self, item_idx: int) -> str:
        title = self.titles[item_idx]
        return f"{item_token(item_idx)} {title}" if title else item_token(item_idx)

    def history(self, items: np.ndarray, max_history: int) -> str:
        shown = items[-max_history:] if max_history > 0 else items[:0]
        return " ".join(self.item(int(i)) for i in shown) if len(shown) else EMPTY_HISTORY

    def images(self, items: np.ndarray, max_images: int) -> tuple[str, list[int]]:
        """The most recent history items with an image (oldest of them first) and the matching <image> run."""
        if max_images <= 0 or len(items) == 0:
            return "", []
        items = np.asarray(items, dtype=np.int64)
        chosen = items[self.has_image[items]][-max_images:].tolist()
        return IMAGE_TOKEN * len(chosen), chosen

    @staticmethod
    def candidates(items: Sequence[int]) -> str:
        return " ".join(item_token(int(i)) for i in items)

    def slots(self, history: np.ndarray, eh: float, max_history: int, max_images: int, *,
              candidates: Sequence[int] | None = None, item: int | None = None, tool_outputs: str = ""
              ) -> tuple[PromptSlots, list[int]]:
        """The slots of one prompt and the item_idx of its images (in <image> order): the one place a user's
        history, images and EH become prompt text, for training, scoring and explanations alike."""
        images, image_items = self.images(history, max_images)
        slots = PromptSlots(images=images, history=self.history(history, max_history), eh=f"{eh:.2f}",
                            tool_outputs=tool_outputs,
                            candidates=None if candidates is None else self.candidates(candidates),
                            item=None if item is None else self.item(item))
        return slots, image_items


def _short(title: str, max_chars: int) -> str:
    """Cut at a word boundary when one falls in the second half of the budget, else mid-word."""
    title = " ".join(title.split())
    if len(title) <= max_chars:
        return title
    cut = title[:max_chars + 1]
    space = cut.rfind(" ")
    return (cut[:space] if space >= max_chars // 2 else title[:max_chars]).rstrip()
