"""A deterministic synthetic multimodal catalogue: the default dataset, which needs no download.

Items have visual attributes (colour, shape, pattern), drawn into a PNG and written into the title and text,
plus a category. So a model can learn from the pixels or from the words. Users have latent favourite
attribute values. That taste is the only signal, so we can measure whether a model learns it. Warm users have
long histories and cold users a few interactions. Some users' tastes drift part way through, and a share of
interactions are noise. Each interaction carries a rating that follows affinity and a short review naming
the attributes that matched the user's taste: the ground truth for explanation metrics.

Interactions are simulated in fixed blocks of USERS_PER_SEED_BLOCK users, each seeded from (seed, block), and
a block always draws for all its users. So a user's rows do not depend on how a user range is chunked, nor
on n_users: streaming millions of users in chunks gives the same data as one call.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw
from pydantic import Field, model_validator

from reasonrec.config import StrictModel
from reasonrec.data.converters.base import RawDataset

COLOURS: dict[str, tuple[int, int, int]] = {
    "crimson": (220, 20, 60),
    "amber": (255, 176, 0),
    "emerald": (0, 155, 72),
    "teal": (0, 128, 128),
    "navy": (20, 30, 128),
    "violet": (138, 43, 226),
    "charcoal": (54, 69, 79),
    "coral": (255, 110, 70),
}
SHAPES = ("circle", "square", "triangle", "star")
PATTERNS = ("plain", "striped", "dotted")
CATEGORIES = ("lamp", "vase", "cushion", "mug", "poster")

# Column order of every attribute matrix in this module.
ATTRIBUTES = ("colour", "shape", "pattern", "category")
VOCABULARIES: dict[str, tuple[str, ...]] = {
    "colour": tuple(COLOURS), "shape": SHAPES, "pattern": PATTERNS, "category": CATEGORIES}
VOCAB_SIZES = np.array([len(VOCABULARIES[a]) for a in ATTRIBUTES], dtype=np.int64)
# How much each attribute can matter to a user (uniform range, times preference_strength). Colour matters
# most so that the visual signal dominates, but every attribute carries some.
ATTRIBUTE_WEIGHT_RANGE = np.array([[2.0, 3.5], [1.5, 3.0], [1.0, 2.0], [1.0, 2.0]])

USERS_PER_SEED_BLOCK = 1024
# Independent random streams, so adding a draw to one part never changes another part's data.
_ITEM_STREAM, _IMAGE_STREAM, _USER_STREAM = 0, 1, 2
_MIN_GAP_SECONDS = 60
_N_REVIEW_TEMPLATES = 3

CATEGORY_BLURBS = {
    "lamp": "Gives a soft light on a desk or bedside table.",
    "vase": "Holds fresh or dried flowers.",
    "cushion": "Soft filling and a removable cover.",
    "mug": "Holds a large coffee or tea.",
    "poster": "Printed on thick matte paper.",
}
PATTERN_PHRASES = {"plain": "plain finish", "striped": "striped pattern", "dotted": "dotted pattern"}


class SyntheticConfig(StrictModel):
    """Knobs of the synthetic catalogue. The same values always give byte-identical data."""

    n_users: int = Field(1000, ge=1, description="Users to generate.")
    n_items: int = Field(400, ge=1, description="Items in the catalogue, each with one PNG image.")
    image_size: int = Field(32, ge=16, le=512, description="Side of each square item image, in pixels.")
    cold_user_share: float = Field(0.3, ge=0.0, le=1.0,
                                   description="Expected share of users with a short (cold-start) history.")
    warm_history: tuple[int, int] = Field(
        (15, 40), description="Inclusive [min, max] number of interactions of a warm user.")
    cold_history: tuple[int, int] = Field(
        (1, 4), description="Inclusive [min, max] number of interactions of a cold user.")
    drift_share: float = Field(0.2, ge=0.0, le=1.0,
                               description="Expected share of warm users whose favourite attributes all "
                                           "change part way through their history.")
    drift_point: tuple[float, float] = Field(
        (0.4, 0.6), description="Range of the fraction of a drifting user's history after which the new "
                                "taste applies.")
    noise: float = Field(0.1, ge=0.0, le=1.0,
                         description="Share of interactions drawn uniformly at random instead of by taste.")
    preference_strength: float = Field(
        1.0, ge=0.0, description="Scales how strongly taste drives choices; 0 makes every choice random.")
    rating_noise: float = Field(0.5, ge=0.0, description="Std. dev. of Gaussian noise added before a rating "
                                                         "is rounded to 1-5.")
    profile_share: float = Field(0.3, ge=0.0, le=1.0,
                                 description="Expected share of users with a text profile (their early taste).")
    candidate_pool: int = Field(
        2000, ge=2, description="Items scored per user; the whole catalogue when it is smaller. Bounds the "
                                "cost per user for very large catalogues.")
    seed: int = Field(0, ge=0, description="Seed of every random draw.")
    start_time: int = Field(1577836800, ge=0,
                            description="Unix seconds of the earliest possible first interaction "
                                        "(default 2020-01-01 UTC).")
    time_span_days: int = Field(365, ge=1,
                                description="Users' first interactions are spread over this many days.")
    mean_gap_hours: float = Field(36.0, gt=0.0,
                                  description="Mean time between a user's consecutive interactions.")

    @model_validator(mode="after")
    def _check_ranges(self) -> "SyntheticConfig":
        for name in ("warm_history", "cold_history", "drift_point"):
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(f"{name}: min {low} is above max {high}")
        if self.cold_history[0] < 1:
            raise ValueError("cold_history: every user needs at least 1 interaction")
        if self.cold_history[1] >= self.warm_history[0]:
            raise ValueError(f"cold_history max {self.cold_history[1]} must be below warm_history min "
                             f"{self.warm_history[0]} so cold and warm users differ by history length")
        if not 0.0 < self.drift_point[0] <= self.drift_point[1] < 1.0:
            raise ValueError("drift_point must lie strictly between 0 and 1")
        pool = min(self.n_items, self.candidate_pool)
        if self.warm_history[1] > pool // 2 and self.n_items > self.candidate_pool:
            raise ValueError(f"warm_history max {self.warm_history[1]} needs candidate_pool >= "
                             f"{2 * self.warm_history[1]} (random pools can repeat items)")
        if self.warm_history[1] > pool:
            raise ValueError(f"warm_history max {self.warm_history[1]} exceeds the {pool} items a user can "
                             f"choose from without repeats")
        return self


def format_item_id(index: int) -> str:
    """Zero-padded, so sorted ids (and hence item_idx) follow generation order."""
    return f"item_{index:07d}"


def format_user_id(index: int) -> str:
    return f"user_{index:07d}"


# --------------------------------------------------------------------------------------------- items


def item_attributes(cfg: SyntheticConfig) -> np.ndarray:
    """(n_items, 4) int8 value indices in ATTRIBUTES order. Item i's row does not depend on n_items."""
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, _ITEM_STREAM]))
    return rng.integers(0, VOCAB_SIZES, size=(cfg.n_items, len(ATTRIBUTES))).astype(np.int8)


def item_attribute_frame(cfg: SyntheticConfig) -> pd.DataFrame:
    """item_id plus each attribute by name: the ground truth for probing what a model learned."""
    attrs = item_attributes(cfg)
    frame = pd.DataFrame({"item_id": [format_item_id(i) for i in range(cfg.n_items)]})
    for column, attribute in enumerate(ATTRIBUTES):
        frame[attribute] = np.array(VOCABULARIES[attribute], dtype=object)[attrs[:, column]]
    return frame


@dataclass(frozen=True)
class ImageLayout:
    """Where the shape sits in the picture. It varies per item so that pixels are not a lookup of attributes."""

    extent: int      # side of the shape's bounding box, px
    left: int
    top: int
    background: int  # grey level of the background


def _image_layouts(cfg: SyntheticConfig) -> list[ImageLayout]:
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, _IMAGE_STREAM]))
    size = cfg.image_size
    extent = rng.integers(int(size * 0.6), int(size * 0.8) + 1, size=cfg.n_items)
    left_frac, top_frac = rng.random(cfg.n_items), rng.random(cfg.n_items)
    background = rng.integers(228, 248, size=cfg.n_items)
    free = size - extent  # >= 3 px; keep a 1 px margin so the shape never touches the border
    left = 1 + np.floor(left_frac * (free - 1)).astype(int)
    top = 1 + np.floor(top_frac * (free - 1)).astype(int)
    return [ImageLayout(int(e), int(x), int(y), int(g))
            for e, x, y, g in zip(extent, left, top, background)]


def _shape_polygon(shape: str, left: int, top: int, extent: int) -> list[tuple[int, int]] | None:
    right, bottom = left + extent - 1, top + extent - 1
    if shape == "triangle":
        return [(left, bottom), (right, bottom), ((left + right) // 2, top)]
    if shape == "star":
        centre_x, centre_y, outer = (left + right) / 2, (top + bottom) / 2, (extent - 1) / 2
        angles = -np.pi / 2 + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, outer, outer * 0.45)
        return [(int(round(centre_x + r * np.cos(a))), int(round(centre_y + r * np.sin(a))))
                for r, a in zip(radii, angles)]
    return None


def pattern_shade(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """Halfway to white: visible on the shape and distinct from the grey background."""
    return tuple((c + 255) // 2 for c in rgb)  # type: ignore[return-value]


def draw_item_image(colour: str, shape: str, pattern: str, size: int, layout: ImageLayout) -> Image.Image:
    """A filled shape in the item's colour with its pattern in a lighter shade (no anti-aliasing, so the
    colours stay exact and the file bytes are stable)."""
    mask = Image.new("L", (size, size), 0)
    pen = ImageDraw.Draw(mask)
    box = (layout.left, layout.top, layout.left + layout.extent - 1, layout.top + layout.extent - 1)
    if shape == "circle":
        pen.ellipse(box, fill=255)
    elif shape == "square":
        pen.rectangle(box, fill=255)
    else:
        pen.polygon(_shape_polygon(shape, layout.left, layout.top, layout.extent), fill=255)

    rgb = COLOURS[colour]
    fill = Image.new("RGB", (size, size), rgb)
    brush = ImageDraw.Draw(fill)
    unit = max(1, size // 16)
    if pattern == "striped":
        for y in range(0, size, 3 * unit):
            brush.rectangle((0, y, size - 1, y + unit - 1), fill=pattern_shade(rgb))
    elif pattern == "dotted":
        for y in range(unit, size, 3 * unit):
            for x in range(unit, size, 3 * unit):
                brush.rectangle((x, y, x + unit - 1, y + unit - 1), fill=pattern_shade(rgb))

    image = Image.new("RGB", (size, size), (layout.background,) * 3)
    image.paste(fill, (0, 0), mask)
    return image


def _item_texts(colour: str, shape: str, pattern: str, category: str) -> tuple[str, str]:
    title = f"{colour.capitalize()} {pattern} {shape} {category}"
    article = "An" if colour[0] in "aeiou" else "A"
    text = (f"{article} {colour} {shape}-shaped {category} with a {PATTERN_PHRASES[pattern]}. "
            f"{CATEGORY_BLURBS[category]}")
    return title, text


def generate_items(cfg: SyntheticConfig, image_dir: str) -> pd.DataFrame:
    """The item table in RawDataset form; writes image_dir/<item_id>.png for every item."""
    directory = Path(image_dir).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    names = item_attribute_frame(cfg)
    rows = []
    for item, layout in zip(names.itertuples(index=False), _image_layouts(cfg)):
        path = directory / f"{item.item_id}.png"
        draw_item_image(item.colour, item.shape, item.pattern, cfg.image_size, layout).save(path, format="PNG")
        title, text = _item_texts(item.colour, item.shape, item.pattern, item.category)
        rows.append((item.item_id, title, text, str(path)))
    items = pd.DataFrame(rows, columns=["item_id", "title", "text", "image_uri"])
    items["image_status"] = "ok"
    items["image_format"] = "PNG"
    return items


# --------------------------------------------------------------------------------------------- users


@dataclass
class _Block:
    """One seed block's users, simulated in full (positions past a user's length are padding)."""

    first_user: int
    is_cold: np.ndarray      # (B,) bool
    drifts: np.ndarray       # (B,) bool
    length: np.ndarray       # (B,) history length
    drift_at: np.ndarray     # (B,) first position under the late taste; == length when no drift
    taste: np.ndarray        # (2, B, 4) favourite value per attribute, early and late
    weights: np.ndarray      # (B, 4)
    has_profile: np.ndarray  # (B,) bool
    items: np.ndarray        # (B, L) item index per position
    timestamps: np.ndarray   # (B, L) int64
    ratings: np.ndarray      # (B, L) float
    matches: np.ndarray      # (B, L, 4) bool: item attribute == the taste in force at that position
    templates: np.ndarray    # (B, L) review template index


def _candidate_pool(rng: np.random.Generator, n_users: int, cfg: SyntheticConfig
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(candidates, valid): the items each user chooses among; the catalogue itself when it is small."""
    if cfg.n_items <= cfg.candidate_pool:
        candidates = np.broadcast_to(np.arange(cfg.n_items), (n_users, cfg.n_items))
        return candidates, np.ones(candidates.shape, dtype=bool)
    candidates = np.sort(rng.integers(0, cfg.n_items, size=(n_users, cfg.candidate_pool)), axis=1)
    valid = np.ones(candidates.shape, dtype=bool)
    valid[:, 1:] = candidates[:, 1:] != candidates[:, :-1]  # drop repeats so a user never re-picks an item
    return candidates, valid


def _choice_keys(rng: np.random.Generator, cfg: SyntheticConfig, candidate_attrs: list[np.ndarray],
                 valid: np.ndarray, taste: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Keys whose descending order is a Plackett-Luce draw without replacement from
    (1 - noise) * softmax(affinity) + noise * uniform over the valid candidates: an exponential race,
    probability / Exp(1), which orders like log-probability + Gumbel noise but is cheaper to draw."""
    affinity = np.zeros(valid.shape)
    for column, values in enumerate(candidate_attrs):
        affinity += np.where(values == taste[:, None, column], weights[:, None, column], 0.0)
    affinity[~valid] = -np.inf
    taste_prob = np.exp(affinity - affinity.max(axis=1, keepdims=True))
    taste_prob /= taste_prob.sum(axis=1, keepdims=True)
    uniform_prob = valid / valid.sum(axis=1, keepdims=True)
    keys = ((1.0 - cfg.noise) * taste_prob + cfg.noise * uniform_prob) / rng.standard_exponential(valid.shape)
    keys[~valid] = -np.inf
    return keys


def _ordered_pick(rng: np.random.Generator, keys: np.ndarray, count: np.ndarray, width: int) -> np.ndarray:
    """Candidate positions of each row's `count` highest keys, in random order (so the history order
    does not leak affinity); padded to `width` columns."""
    top = np.argpartition(-keys, width - 1, axis=1)[:, :width]  # the `width` best, unordered
    best_first = np.argsort(-np.take_along_axis(keys, top, axis=1), axis=1, kind="stable")
    top = np.take_along_axis(top, best_first, axis=1)
    order_key = np.where(np.arange(width) < count[:, None], rng.random(top.shape), np.inf)
    return np.take_along_axis(top, np.argsort(order_key, axis=1, kind="stable"), axis=1)


def _simulate_block(cfg: SyntheticConfig, block: int, attrs: np.ndarray) -> _Block:
    """Every draw of one block, always for all USERS_PER_SEED_BLOCK users and in a fixed order."""
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, _USER_STREAM, block]))
    n, width = USERS_PER_SEED_BLOCK, cfg.warm_history[1]
    is_cold = rng.random(n) < cfg.cold_user_share
    warm_length = rng.integers(cfg.warm_history[0], cfg.warm_history[1] + 1, size=n)
    cold_length = rng.integers(cfg.cold_history[0], cfg.cold_history[1] + 1, size=n)
    length = np.where(is_cold, cold_length, warm_length)
    drifts = ~is_cold & (rng.random(n) < cfg.drift_share)
    drift_fraction = rng.uniform(cfg.drift_point[0], cfg.drift_point[1], size=n)
    drift_at = np.where(drifts, np.clip(np.rint(length * drift_fraction), 1, length - 1), length).astype(int)
    early = rng.integers(0, VOCAB_SIZES, size=(n, len(ATTRIBUTES)))
    late = (early + rng.integers(1, VOCAB_SIZES, size=(n, len(ATTRIBUTES)))) % VOCAB_SIZES
    low, high = ATTRIBUTE_WEIGHT_RANGE[:, 0], ATTRIBUTE_WEIGHT_RANGE[:, 1]
    weights = rng.uniform(low, high, size=(n, len(ATTRIBUTES))) * cfg.preference_strength
    has_profile = rng.random(n) < cfg.profile_share
    first_time = cfg.start_time + rng.integers(0, cfg.time_span_days * 86400, size=n)

    candidates, valid = _candidate_pool(rng, n, cfg)
    candidate_attrs = [np.ascontiguousarray(attrs[:, column])[candidates] for column in range(len(ATTRIBUTES))]
    early_keys = _choice_keys(rng, cfg, candidate_attrs, valid, early, weights)
    late_keys = _choice_keys(rng, cfg, candidate_attrs, valid, late, weights)
    early_pick = _ordered_pick(rng, early_keys, drift_at, width)
    taken = np.zeros(valid.shape, dtype=bool)
    rows, cols = np.nonzero(np.arange(width) < drift_at[:, None])
    taken[rows, early_pick[rows, cols]] = True
    late_pick = _ordered_pick(rng, np.where(taken, -np.inf, late_keys), length - drift_at, width)

    position = np.broadcast_to(np.arange(width), (n, width))
    is_late = position >= drift_at[:, None]
    late_position = np.clip(position - drift_at[:, None], 0, width - 1)
    picked = np.where(is_late, np.take_along_axis(late_pick, late_position, axis=1), early_pick)
    items = np.take_along_axis(candidates, picked, axis=1)

    taste_now = np.where(is_late[:, :, None], late[:, None, :], early[:, None, :])
    matches = attrs[items] == taste_now
    affinity_share = (matches * weights[:, None, :]).sum(axis=2) / np.maximum(weights.sum(axis=1), 1e-9)[:, None]
    ratings = np.clip(np.rint(1.5 + 3.5 * affinity_share + rng.normal(0.0, cfg.rating_noise, size=(n, width))),
                      1, 5)
    gaps = _MIN_GAP_SECONDS + np.floor(rng.exponential(cfg.mean_gap_hours * 3600, size=(n, width)))
    gaps = gaps.astype(np.int64)
    timestamps = first_time[:, None] + np.cumsum(gaps, axis=1) - gaps[:, :1]
    templates = rng.integers(0, _N_REVIEW_TEMPLATES, size=(n, width))
    return _Block(block * n, is_cold, drifts, length, drift_at, np.stack([early, late]), weights,
                  has_profile, items, timestamps, ratings, matches, templates)


def _blocks(cfg: SyntheticConfig, user_range: range) -> Iterator[tuple[_Block, np.ndarray, np.ndarray]]:
    """(block, rows of user_range within it, item attributes) for every seed block overlapping user_range."""
    if user_range.step != 1 or user_range.start < 0 or user_range.stop > cfg.n_users:
        raise ValueError(f"user_range {user_range} must be a contiguous part of range(0, {cfg.n_users})")
    attrs = item_attributes(cfg)
    first = user_range.start // USERS_PER_SEED_BLOCK
    last = (user_range.stop - 1) // USERS_PER_SEED_BLOCK if len(user_range) else first - 1
    for block_index in range(first, last + 1):
        block = _simulate_block(cfg, block_index, attrs)
        local = np.arange(max(user_range.start, block.first_user),
                          min(user_range.stop, block.first_user + USERS_PER_SEED_BLOCK)) - block.first_user
        yield block, local, attrs


def _join_phrases(phrases: list[str]) -> str:
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def review_for(values: tuple[str, str, str, str], matched: tuple[bool, bool, bool, bool],
               template: int) -> tuple[str, str]:
    """(review_title, review) naming the attributes of the item that match the user's taste."""
    colour, shape, pattern, category = values
    phrases = [phrase for phrase, hit in zip(
        (f"{colour} colour", f"{shape} shape", PATTERN_PHRASES[pattern]), matched[:3]) if hit]
    if phrases:
        joined = _join_phrases(phrases)
        review = (f"I chose this {category} for its {joined}.",
                  f"The {joined} won me over.",
                  f"Bought it for the {joined}; just what I look for.")[template]
        if matched[3]:
            review += f" Always glad to find another good {category}."
        title = (f"Love the {phrases[0]}", f"Great {phrases[0]}",
                 f"{phrases[0].capitalize()} won me over")[template]
        return title, review
    if matched[3]:
        return (f"Another good {category}",
                f"Always glad to find another good {category}, though the {colour} {shape} look is nothing "
                f"special.")
    return (("Not my style", "Just okay", "Did not click")[template],
            (f"Not really my taste; the {colour} {shape} did nothing for me.",
             f"It was fine, but the {PATTERN_PHRASES[pattern]} in {colour} is not for me.",
             f"Not what I usually go for: a {shape} in {colour}.")[template])


_REVIEW_RADIX = (*(int(size) for size in VOCAB_SIZES), 2, 2, 2, 2, _N_REVIEW_TEMPLATES)


@functools.lru_cache(maxsize=1)
def _review_table() -> tuple[np.ndarray, np.ndarray]:
    """(titles, reviews) for every (attribute values, matches, template) key: ~23k strings, built once."""
    titles, texts = [], []
    for digit in itertools.product(*(range(size) for size in _REVIEW_RADIX)):  # ravel_multi_index order
        values = tuple(VOCABULARIES[a][d] for a, d in zip(ATTRIBUTES, digit[:4]))
        title, text = review_for(values, tuple(bool(d) for d in digit[4:8]), digit[8])
        titles.append(title)
        texts.append(text)
    return np.array(titles, dtype=object), np.array(texts, dtype=object)


def _reviews(item_attrs: np.ndarray, matches: np.ndarray, templates: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    """(review_title, review) per interaction, looked up rather than formatted row by row."""
    digits = np.column_stack([item_attrs.astype(np.int64), matches.astype(np.int64), templates])
    keys = np.ravel_multi_index(tuple(digits.T), _REVIEW_RADIX) if len(digits) else np.zeros(0, dtype=np.int64)
    titles, texts = _review_table()
    return titles[keys], texts[keys]


INTERACTION_COLUMNS = ("user_id", "item_id", "timestamp", "rating", "review", "review_title")


def _block_interactions(block: _Block, local: np.ndarray, attrs: np.ndarray, item_ids: np.ndarray
                        ) -> pd.DataFrame:
    in_history = np.arange(block.items.shape[1]) < block.length[local, None]
    row = np.broadcast_to(np.arange(len(local))[:, None], in_history.shape)[in_history]
    items = block.items[local][in_history]
    titles, reviews = _reviews(attrs[items], block.matches[local][in_history],
                               block.templates[local][in_history])
    user_ids = np.array([format_user_id(int(u)) for u in block.first_user + local], dtype=object)
    return pd.DataFrame({
        "user_id": user_ids[row],
        "item_id": item_ids[items],
        "timestamp": block.timestamps[local][in_history].astype(np.int64),
        "rating": block.ratings[local][in_history].astype(np.float64),
        "review": reviews,
        "review_title": titles,
    })


def _block_users(block: _Block, local: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(users, tastes) of the block rows `local`."""
    user_ids = [format_user_id(int(u)) for u in block.first_user + local]
    profiles = [_profile(block.taste[0][u]) if block.has_profile[u] else None for u in local]
    users = pd.DataFrame({"user_id": user_ids, "profile": pd.Series(profiles, dtype=object)})
    tastes = pd.DataFrame({
        "user_id": user_ids,
        "is_cold": block.is_cold[local],
        "drifts": block.drifts[local],
        "history_length": block.length[local],
        "drift_at": block.drift_at[local],
    })
    late = np.where(block.drifts[local, None], block.taste[1][local], block.taste[0][local])
    for column, attribute in enumerate(ATTRIBUTES):
        names = np.array(VOCABULARIES[attribute], dtype=object)
        tastes[f"early_{attribute}"] = names[block.taste[0][local, column]]
        tastes[f"late_{attribute}"] = names[late[:, column]]
    return users, tastes


def _profile(early: np.ndarray) -> str:
    colour, shape, pattern, category = (VOCABULARIES[a][int(v)] for a, v in zip(ATTRIBUTES, early))
    return f"Likes {colour} things, especially {pattern} {shape}s; often buys {category}s."


@dataclass
class UserChunk:
    """Everything generated for one range of users."""

    interactions: pd.DataFrame  # user_id, item_id, timestamp, rating, review, review_title; by user, then time
    users: pd.DataFrame         # user_id, profile (None for users without one)
    tastes: pd.DataFrame        # the latent truth, see user_tastes


def generate_user_chunk(cfg: SyntheticConfig, user_range: range) -> UserChunk:
    """Interactions, users and latent tastes of the users in user_range, simulating each seed block once.
    The rows are the same whatever chunks a range is split into: the unit for streaming huge configs."""
    item_ids = np.array([format_item_id(i) for i in range(cfg.n_items)], dtype=object)
    interactions, users, tastes = [], [], []
    for block, local, attrs in _blocks(cfg, user_range):
        interactions.append(_block_interactions(block, local, attrs, item_ids))
        block_users, block_tastes = _block_users(block, local)
        users.append(block_users)
        tastes.append(block_tastes)
    if not interactions:
        empty = pd.DataFrame({column: pd.Series(dtype=dtype) for column, dtype in zip(
            INTERACTION_COLUMNS, (object, object, np.int64, np.float64, object, object))})
        return UserChunk(empty, pd.DataFrame(columns=["user_id", "profile"]), pd.DataFrame(columns=["user_id"]))
    return UserChunk(*(pd.concat(frames, ignore_index=True) for frames in (interactions, users, tastes)))


def generate_interactions(cfg: SyntheticConfig, user_range: range) -> pd.DataFrame:
    """Interactions of the users in user_range (see generate_user_chunk)."""
    return generate_user_chunk(cfg, user_range).interactions


def generate_users(cfg: SyntheticConfig, user_range: range) -> pd.DataFrame:
    """user_id and profile: a sentence about the user's early taste, for a profile_share of users."""
    return generate_user_chunk(cfg, user_range).users


def user_tastes(cfg: SyntheticConfig, user_range: range) -> pd.DataFrame:
    """The latent truth per user: cold or warm, history length, drift point and the favourite values before
    (early_*) and after (late_*) it (equal when the user does not drift). For tests and probes."""
    return generate_user_chunk(cfg, user_range).tastes


def generate(cfg: SyntheticConfig, image_dir: str) -> RawDataset:
    """The whole synthetic dataset, with item images written to image_dir."""
    items = generate_items(cfg, image_dir)
    chunk = generate_user_chunk(cfg, range(cfg.n_users))
    interactions, users, tastes = chunk.interactions, chunk.users, chunk.tastes
    stats = {
        "n_users": cfg.n_users,
        "n_items": cfg.n_items,
        "n_interactions": len(interactions),
        "n_cold_users": int(tastes["is_cold"].sum()),
        "n_drift_users": int(tastes["drifts"].sum()),
        "n_users_with_profile": int(users["profile"].notna().sum()),
        "config": cfg.model_dump(mode="json"),
    }
    return RawDataset(interactions=interactions, items=items, users=users, timestamp_kind="unix", stats=stats)
