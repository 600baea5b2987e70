"""Item images for the VLM: item_idx -> a decoded RGB image, with a placeholder instead of a failure.

Training and scoring batches mix items with and without images (text-only catalogues, missing posters, a
file deleted since the data was prepared). One bad image must not kill a batch or a nightly job, so every
item without a usable image gets the same neutral grey placeholder, and the count is kept for the logs.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

from PIL import Image

from reasonrec.data.schema import Dataset
from reasonrec.io import open_fs

log = logging.getLogger(__name__)

PLACEHOLDER_GREY = (128, 128, 128)


class ItemImages:
    """item_idx -> PIL RGB image, shortest side resized to `image_size` (the processor centre-crops).

    Images are read through fsspec (local or s3://) from `ds.image_location(image_uri)` for items whose
    image_status is "ok". `placeholders` counts distinct items that fell back to the placeholder.
    """

    def __init__(self, dataset: Dataset, image_size: int, cache_size: int = 1024):
        self.dataset = dataset
        self.image_size = int(image_size)
        self.cache_size = int(cache_size)
        items = dataset.items
        ok = items["image_status"].to_numpy() == "ok"
        self._uri = {int(i): str(u) for i, u, good in zip(items["item_idx"], items["image_uri"], ok) if good}
        self._n_items = len(items)
        self._cache: OrderedDict[int, Image.Image] = OrderedDict()
        self._placeholder = Image.new("RGB", (self.image_size, self.image_size), PLACEHOLDER_GREY)
        self.placeholder_items: set[int] = set()
        self.failed_reads = 0

    @property
    def placeholders(self) -> int:
        return len(self.placeholder_items)

    def __getitem__(self, item_idx: int) -> Image.Image:
        item_idx = int(item_idx)
        if item_idx in self._cache:
            self._cache.move_to_end(item_idx)
            return self._cache[item_idx]
        image = self._read(item_idx)
        self._cache[item_idx] = image
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return image

    def get_many(self, item_indices) -> list[Image.Image]:
        return [self[i] for i in item_indices]

    def _read(self, item_idx: int) -> Image.Image:
        uri = self._uri.get(item_idx)
        if uri is None:  # no image, not "ok", or an index outside the catalogue
            self.placeholder_items.add(item_idx)
            return self._placeholder
        try:
            fs, path = open_fs(self.dataset.image_location(uri))
            with fs.open(path, "rb") as f, Image.open(f) as raw:
                raw.draft("RGB", (self.image_size, self.image_size))  # JPEG: decode at a reduced scale
                image = raw.convert("RGB")
        except Exception as err:  # noqa: BLE001 - any unreadable image becomes the placeholder
            self.failed_reads += 1
            if self.failed_reads <= 5:
                log.warning("item %d: image %s unreadable (%s); using the placeholder", item_idx, uri, err)
            self.placeholder_items.add(item_idx)
            return self._placeholder
        return _resize_shortest(image, self.image_size)


def _resize_shortest(image: Image.Image, size: int) -> Image.Image:
    width, height = image.size
    scale = size / min(width, height)
    if scale == 1:
        return image
    return image.resize((max(size, round(width * scale)), max(size, round(height * scale))), Image.BICUBIC)
