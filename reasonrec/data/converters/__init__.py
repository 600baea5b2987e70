"""Source converters by name: each reads one public format into a `RawDataset`.

Every converter is `convert(path, images, quarantine, *, max_image_pixels, **options) -> RawDataset`; options
arrive as strings from the prepare config, max_image_pixels (the typed `source.max_image_pixels`) is passed
to `attach_images`. `clean.finalize` is applied to every converter's output before it is written.
"""

from __future__ import annotations

from collections.abc import Callable

from reasonrec.data.converters import amazon_p5, amazon_reviews, movielens, pixelrec, recbole
from reasonrec.data.converters.base import RawDataset

CONVERTERS: dict[str, Callable[..., RawDataset]] = {
    "movielens": movielens.convert,
    "recbole": recbole.convert,
    "amazon_p5": amazon_p5.convert,
    "amazon_reviews": amazon_reviews.convert,
    "pixelrec": pixelrec.convert,
}
