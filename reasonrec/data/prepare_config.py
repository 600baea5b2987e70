"""The typed config of `jobs/prepare_data.py`; the prepare section of configs/<dataset>.yaml is an instance of it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from reasonrec.config import StrictModel
from reasonrec.data.images import DEFAULT_MAX_IMAGE_PIXELS
from reasonrec.data.synthetic import SyntheticConfig

# PIL's Image.MAX_IMAGE_PIXELS (a 1024 x 1024 x 1024 / 4 / 3 "decompression bomb"): above it Image.open warns
# (raised as an error during prepare), so a larger max_image_pixels could never be honoured.
PIL_MAX_IMAGE_PIXELS = 89_478_485

SourceKind = Literal["movielens", "recbole", "amazon_p5", "amazon_reviews", "pixelrec", "synthetic", "merge"]


class SourceConfig(StrictModel):
    kind: SourceKind = Field("synthetic", description=(
        "Converter: movielens (ml-latest[-small] CSV, ml-1m .dat, ml-100k u.data), recbole (atomic files), "
        "amazon_p5 (sequential.txt + datamaps.json), amazon_reviews (*.json.gz), pixelrec (PixelRec/NineRec "
        "CSVs + cover folder), synthetic (embedded generator), merge (several prepared datasets)."))
    path: str | None = Field(None, description=(
        "Source folder or file. With `download` set, the folder the download lands in."))
    images: str | None = Field(None, description="Folder of item images named <item_id>.<any extension>.")
    max_image_pixels: int = Field(DEFAULT_MAX_IMAGE_PIXELS, ge=1, le=PIL_MAX_IMAGE_PIXELS, description=(
        "Images whose header declares more pixels (width x height) are refused before decoding: flagged "
        "'refused', quarantined as image_too_large. At most PIL's own limit, above which it refuses to "
        "open a file anyway."))
    options: dict[str, str] = Field(default_factory=dict, description=(
        "Converter-specific options, e.g. {meta: path/to/meta_Beauty.json.gz} for amazon_reviews."))
    download: str | None = Field(None, description=(
        "Name from `python jobs/prepare_data.py --list-downloads`; fetched into `path` before converting."))
    mirror: str | None = Field(None, description="Base URL that replaces the public host for `download`.")
    merge: dict[str, str] = Field(default_factory=dict, description=(
        "kind=merge: {domain name: prepared dataset folder}; ids become '<domain>:<id>'."))
    share_users: bool = Field(False, description=(
        "kind=merge: treat equal user ids in different domains as one person (needs unix timestamps)."))
    synthetic: SyntheticConfig = Field(default_factory=SyntheticConfig, description=(
        "kind=synthetic: generator settings."))

    @model_validator(mode="after")
    def _needs_path(self) -> "SourceConfig":
        if self.kind not in ("synthetic", "merge") and not self.path:
            raise ValueError(f"source.path is required for kind={self.kind}")
        if self.kind == "merge" and len(self.merge) < 2:
            raise ValueError("source.merge needs at least two {domain: folder} entries")
        return self


class SplitsConfig(StrictModel):
    protocols: list[Literal["loo", "temporal", "random"]] = Field(
        default_factory=lambda: ["loo", "random"], description=(
            "Splits to write: loo (last=test, second-last=valid), temporal (global time cut-offs; needs unix "
            "timestamps), random (per-user 8:1:1, for CTR and explanation)."))
    temporal_valid_quantile: float = Field(0.8, gt=0, lt=1, description=(
        "temporal: interactions after this quantile of time go to valid."))
    temporal_test_quantile: float = Field(0.9, gt=0, lt=1, description=(
        "temporal: interactions after this quantile of time go to test."))
    random_ratios: tuple[float, float, float] = Field((0.8, 0.1, 0.1), description=(
        "random: train/valid/test shares per user."))

    @model_validator(mode="after")
    def _ordered(self) -> "SplitsConfig":
        if self.temporal_valid_quantile >= self.temporal_test_quantile:
            raise ValueError("temporal_valid_quantile must be below temporal_test_quantile")
        if abs(sum(self.random_ratios) - 1.0) > 1e-6:
            raise ValueError(f"random_ratios must sum to 1, got {self.random_ratios}")
        return self


class CandidatesConfig(StrictModel):
    ranking_negatives: list[int] = Field(default_factory=lambda: [99, 9], description=(
        "Sampled-ranking protocols for loo/temporal: 99 -> 1+99 (Amazon), 9 -> 1+9 (Pixel). Full ranking "
        "is always available and needs no file."))
    ctr_negatives_per_positive: list[int] = Field(default_factory=lambda: [4, 1], description=(
        "CTR negatives per positive on the random split: 4 -> 1:4, 1 -> 1:1."))


class EvidenceConfig(StrictModel):
    w_count: float = Field(0.7, ge=0, le=1, description="Weight of the training-count term in C(u).")
    w_recency: float = Field(0.3, ge=0, le=1, description=(
        "Weight of the recency term in C(u); ignored (0) on ordinal timestamps."))
    ref_quantile: float = Field(0.95, gt=0, le=1, description=(
        "Quantile of training counts that counts as full evidence (s_count = 1)."))


class PrepareConfig(StrictModel):
    config_section = "prepare"   # its section in a sectioned file (configs/<dataset>.yaml)
    name: str = Field("synthetic", description="Dataset name written into the manifest.")
    out: str = Field("artifacts/datasets/synthetic", description="Output folder (local path or s3://).")
    seed: int = Field(2024, description="Seed for the generator, random split, candidates and CTR negatives.")
    max_users: int | None = Field(None, ge=1, description=(
        "Keep a seeded random subset of this many users (for quick runs and test slices); null keeps all. "
        "Items stay in the catalogue."))
    max_quarantine_share: float = Field(0.05, ge=0, le=1, description=(
        "Fail the job when more than this share of source rows is quarantined (the data is probably "
        "not what the converter thinks it is); the report is written either way."))
    source: SourceConfig = Field(default_factory=SourceConfig, description="Where the data comes from.")
    splits: SplitsConfig = Field(default_factory=SplitsConfig, description="Which splits to write.")
    candidates: CandidatesConfig = Field(default_factory=CandidatesConfig, description="Fixed candidate sets.")
    evidence: EvidenceConfig = Field(default_factory=EvidenceConfig, description="Evidence horizon C(u).")
