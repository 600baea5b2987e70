"""The synthetic catalogue: deterministic, shaped as configured, and carrying a signal a model can learn."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from reasonrec.config import ConfigError, load_config
from reasonrec.data.schema import Dataset, write_dataset
from reasonrec.data.synthetic import (
    ATTRIBUTES, COLOURS, PATTERN_PHRASES, SyntheticConfig, USERS_PER_SEED_BLOCK, VOCABULARIES, generate,
    generate_interactions, generate_user_chunk, item_attribute_frame, pattern_shade, user_tastes,
)

DEFAULT = SyntheticConfig()


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """The default config generated once, with how long it took."""
    image_dir = tmp_path_factory.mktemp("images")
    started = time.perf_counter()
    raw = generate(DEFAULT, str(image_dir))
    return raw, time.perf_counter() - started


@pytest.fixture(scope="module")
def joined(default_run) -> pd.DataFrame:
    """Interactions with the item's attributes, the user's latent taste and the position in the history."""
    raw, _ = default_run
    frame = raw.interactions.merge(item_attribute_frame(DEFAULT), on="item_id", how="left")
    frame = frame.merge(user_tastes(DEFAULT, range(DEFAULT.n_users)), on="user_id", how="left")
    frame["position"] = frame.groupby("user_id").cumcount()
    return frame


def file_hashes(paths) -> dict[str, str]:
    return {Path(p).name: hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}


def test_default_config_is_quick_and_complete(default_run):
    raw, seconds = default_run
    assert seconds < 5.0
    assert len(raw.items) == DEFAULT.n_items
    assert raw.interactions["user_id"].nunique() == DEFAULT.n_users
    assert raw.timestamp_kind == "unix"
    assert set(raw.interactions.columns) == {"user_id", "item_id", "timestamp", "rating", "review", "review_title"}
    assert raw.interactions[["review", "review_title"]].notna().all().all()
    assert (raw.items["image_status"] == "ok").all() and (raw.items["image_format"] == "PNG").all()
    assert all(Path(uri).is_absolute() and Path(uri).is_file() for uri in raw.items["image_uri"])
    assert raw.stats["n_interactions"] == len(raw.interactions)


def test_same_config_gives_identical_frames_and_image_bytes(default_run, tmp_path):
    first, _ = default_run
    second = generate(DEFAULT, str(tmp_path))
    pd.testing.assert_frame_equal(first.interactions, second.interactions)
    pd.testing.assert_frame_equal(first.users, second.users)
    pd.testing.assert_frame_equal(first.items.drop(columns="image_uri"), second.items.drop(columns="image_uri"))
    assert file_hashes(first.items["image_uri"]) == file_hashes(second.items["image_uri"])


def test_another_seed_gives_other_data(default_run, tmp_path):
    first, _ = default_run
    other = generate(DEFAULT.model_copy(update={"seed": 1}), str(tmp_path))
    assert not first.interactions["item_id"].equals(other.interactions["item_id"])
    assert not first.items["title"].equals(other.items["title"])
    assert file_hashes(first.items["image_uri"]) != file_hashes(other.items["image_uri"])


def test_interactions_do_not_depend_on_chunking_or_n_users():
    cfg = SyntheticConfig(n_users=USERS_PER_SEED_BLOCK * 2 + 100, n_items=120, warm_history=(8, 20))
    everyone = generate_user_chunk(cfg, range(cfg.n_users))
    whole = everyone.interactions
    cuts = [0, 1, 700, USERS_PER_SEED_BLOCK, 1500, cfg.n_users]
    chunks = [generate_user_chunk(cfg, range(a, b)) for a, b in zip(cuts, cuts[1:])]
    for table in ("interactions", "users", "tastes"):
        chunked = pd.concat([getattr(chunk, table) for chunk in chunks], ignore_index=True)
        pd.testing.assert_frame_equal(getattr(everyone, table), chunked)
    fewer = generate_interactions(cfg.model_copy(update={"n_users": 1500}), range(1500))
    pd.testing.assert_frame_equal(fewer, whole[whole["user_id"] < "user_0001500"].reset_index(drop=True))
    with pytest.raises(ValueError, match="user_range"):
        generate_interactions(cfg, range(0, cfg.n_users + 1))


def test_warm_and_cold_users_have_the_configured_shares(joined):
    lengths = joined.groupby("user_id").size()
    cold = lengths <= DEFAULT.cold_history[1]
    assert lengths[cold].between(*DEFAULT.cold_history).all()
    assert lengths[~cold].between(*DEFAULT.warm_history).all()
    # 1000 Bernoulli(0.3) draws: 0.05 is more than 3 standard deviations.
    assert abs(cold.mean() - DEFAULT.cold_user_share) < 0.05
    few_cold = generate_interactions(DEFAULT.model_copy(update={"cold_user_share": 0.8}), range(1000))
    assert abs((few_cold.groupby("user_id").size() <= 4).mean() - 0.8) < 0.05


def test_timestamps_increase_within_each_user(joined):
    assert (joined["timestamp"] >= DEFAULT.start_time).all()
    gaps = joined.groupby("user_id")["timestamp"].diff().dropna()
    assert (gaps > 0).all()


def mode_per_user(frame: pd.DataFrame, attribute: str) -> pd.Series:
    return frame.groupby("user_id")[attribute].agg(lambda values: values.value_counts().index[0])


def test_drifting_users_change_taste_and_others_keep_it(joined):
    warm = joined[~joined["is_cold"]]
    early = warm[warm["position"] < warm["drift_at"]]
    late = warm[warm["position"] >= warm["drift_at"]]
    drift_users = warm.loc[warm["drifts"], "user_id"].unique()
    assert abs(len(drift_users) / warm["user_id"].nunique() - DEFAULT.drift_share) < 0.06
    early_mode, late_mode = mode_per_user(early, "colour"), mode_per_user(late, "colour")
    changed = (early_mode[drift_users] != late_mode[drift_users]).mean()
    assert changed > 0.8
    truth = joined.drop_duplicates("user_id").set_index("user_id").loc[drift_users]
    assert (late_mode[drift_users] == truth["late_colour"]).mean() > 0.7
    assert (truth["early_colour"] != truth["late_colour"]).all()

    steady = warm[~warm["drifts"]]
    halfway = steady["position"] < steady["history_length"] // 2
    first_half = mode_per_user(steady[halfway], "colour")
    second_half = mode_per_user(steady[~halfway], "colour")
    assert (first_half != second_half).mean() < 0.3


def last_fifth_accuracy(frame: pd.DataFrame, attribute: str, shuffle_users: bool = False) -> float:
    """Predict the attribute of each user's last 20% of items by the most frequent value in the first 80%."""
    cut = np.floor(frame["history_length"] * 0.8)
    train, test = frame[frame["position"] < cut], frame[frame["position"] >= cut]
    guess = mode_per_user(train, attribute)
    if shuffle_users:
        guess = pd.Series(np.random.default_rng(0).permutation(guess.to_numpy()), index=guess.index)
    return float((test["user_id"].map(guess) == test[attribute]).mean())


# Margins are about two thirds of what the default data gives, so a weaker signal fails the test.
@pytest.mark.parametrize("attribute,margin", [("colour", 0.22), ("shape", 0.22), ("pattern", 0.14),
                                              ("category", 0.1)])
def test_taste_is_learnable_from_history(joined, attribute, margin):
    steady_warm = joined[~joined["is_cold"] & ~joined["drifts"]]
    chance = 1.0 / len(VOCABULARIES[attribute])
    personal = last_fifth_accuracy(steady_warm, attribute)
    someone_elses = last_fifth_accuracy(steady_warm, attribute, shuffle_users=True)
    assert personal > chance + margin
    assert personal > someone_elses + margin
    assert abs(someone_elses - chance) < 0.08


def test_without_preference_strength_there_is_nothing_to_learn():
    cfg = DEFAULT.model_copy(update={"preference_strength": 0.0, "drift_share": 0.0})
    frame = generate_interactions(cfg, range(cfg.n_users)).merge(item_attribute_frame(cfg), on="item_id")
    frame = frame.merge(user_tastes(cfg, range(cfg.n_users)), on="user_id")
    frame["position"] = frame.groupby("user_id").cumcount()
    warm = frame[~frame["is_cold"]]
    assert last_fifth_accuracy(warm, "colour") < 1 / 8 + 0.1


def test_ratings_follow_affinity(joined):
    assert joined["rating"].isin([1.0, 2.0, 3.0, 4.0, 5.0]).all()
    in_force = np.where(joined["position"] >= joined["drift_at"], joined["late_colour"], joined["early_colour"])
    liked = joined["colour"] == in_force
    assert joined.loc[liked, "rating"].mean() > joined.loc[~liked, "rating"].mean() + 0.5


def test_reviews_name_exactly_the_matching_visual_attributes(joined):
    late = joined["position"] >= joined["drift_at"]
    for attribute, phrase in (("colour", "{} colour"), ("shape", "{} shape"), ("pattern", None)):
        in_force = np.where(late, joined[f"late_{attribute}"], joined[f"early_{attribute}"])
        matched = (joined[attribute] == in_force).to_numpy()
        phrases = (joined[attribute].map(PATTERN_PHRASES) if phrase is None
                   else joined[attribute].map(phrase.format))
        praised = np.array([p in review and not review.startswith(("Not", "It was fine", "Always"))
                            for p, review in zip(phrases, joined["review"])])
        assert (praised == matched).all(), attribute
    assert joined["review"].str.startswith(("Not", "It was fine")).any()  # nothing matched: noise


def test_images_decode_and_show_the_item_attributes(default_run):
    raw, _ = default_run
    truth = item_attribute_frame(DEFAULT).set_index("item_id")
    fill_ratio = {shape: [] for shape in VOCABULARIES["shape"]}
    for item_id, uri in zip(raw.items["item_id"], raw.items["image_uri"]):
        colour, shape, pattern, _ = truth.loc[item_id, list(ATTRIBUTES)]
        with Image.open(uri) as image:
            assert image.format == "PNG" and image.size == (DEFAULT.image_size, DEFAULT.image_size)
            pixels = np.asarray(image.convert("RGB"))
        background = pixels[0, 0]
        shape_mask = (pixels != background).any(axis=2)
        colours_used = {tuple(int(v) for v in p) for p in pixels[shape_mask]}
        expected = {COLOURS[colour]} if pattern == "plain" else {COLOURS[colour], pattern_shade(COLOURS[colour])}
        assert colours_used == expected, item_id
        if pattern == "striped":  # every row of the shape is a single colour
            rows = [{tuple(p) for p in pixels[y][shape_mask[y]]} for y in range(pixels.shape[0])]
            assert all(len(r) <= 1 for r in rows)
        elif pattern == "dotted":
            rows = [{tuple(p) for p in pixels[y][shape_mask[y]]} for y in range(pixels.shape[0])]
            assert any(len(r) == 2 for r in rows)
        ys, xs = np.nonzero(shape_mask)
        fill_ratio[shape].append(shape_mask.sum() / ((np.ptp(ys) + 1) * (np.ptp(xs) + 1)))
    # A shape's share of its bounding box tells the shapes apart: star < triangle < circle < square.
    ranges = [(min(fill_ratio[s]), max(fill_ratio[s])) for s in ("star", "triangle", "circle", "square")]
    assert all(lower[1] < upper[0] for lower, upper in zip(ranges, ranges[1:])), ranges


def test_titles_and_texts_describe_the_attributes(default_run):
    raw, _ = default_run
    truth = item_attribute_frame(DEFAULT)
    for title, text, (_, colour, shape, pattern, category) in zip(
            raw.items["title"], raw.items["text"], truth.itertuples(index=False)):
        assert title.lower() == f"{colour} {pattern} {shape} {category}"
        assert colour in text and shape in text and category in text


def test_round_trip_through_the_canonical_format(default_run, tmp_path):
    raw, _ = default_run
    manifest = write_dataset(str(tmp_path / "ds"), name="synthetic", source="synthetic",
                             timestamp_kind=raw.timestamp_kind, interactions=raw.interactions,
                             items=raw.items, users=raw.users)
    loaded = Dataset.load(str(tmp_path / "ds"))
    assert loaded.manifest == manifest
    assert (manifest.n_users, manifest.n_items) == (DEFAULT.n_users, DEFAULT.n_items)
    assert manifest.n_items_with_image == DEFAULT.n_items and manifest.has_ratings and manifest.has_reviews
    columns = ["user_id", "item_id", "timestamp", "review", "review_title"]
    pd.testing.assert_frame_equal(loaded.interactions[columns], raw.interactions[columns], check_dtype=False)
    assert np.allclose(loaded.interactions["rating"], raw.interactions["rating"])
    assert loaded.users["profile"].notna().sum() == raw.users["profile"].notna().sum() > 0
    offsets, items = loaded.user_histories()
    assert offsets[-1] == len(raw.interactions)


def test_large_catalogue_uses_a_candidate_pool_without_repeats():
    cfg = SyntheticConfig(n_users=300, n_items=20_000, candidate_pool=300, warm_history=(20, 40))
    frame = generate_interactions(cfg, range(cfg.n_users))
    assert not frame.duplicated(["user_id", "item_id"]).any()
    assert frame["item_id"].nunique() > 3000


def test_config_rejects_inconsistent_ranges_and_unknown_keys():
    with pytest.raises(ValueError, match="cold_history max"):
        SyntheticConfig(cold_history=(1, 20), warm_history=(10, 30))
    with pytest.raises(ValueError, match="exceeds"):
        SyntheticConfig(n_items=20, warm_history=(15, 40))
    with pytest.raises(ConfigError, match="n_user"):
        load_config(SyntheticConfig, overrides=["n_user=5"])
    assert all(field.description for field in SyntheticConfig.model_fields.values())
