"""Everything a scorer loads once — dataset state, tools, the faiss index, the VLM — so a Ray actor (or a Serve
replica) builds one Bundle from the resolved System (reasonrec.recommend.system) in its constructor and reuses
it for every batch. The Bundle decides nothing: tools folder, consult pool, router and version are the System's."""

from __future__ import annotations

import tempfile
from functools import cached_property

import numpy as np

from reasonrec.data.schema import Dataset
from reasonrec.io import fetch_dir, join, open_fs
from reasonrec.recommend import histories
from reasonrec.recommend.config import RecommendConfig
from reasonrec.recommend.retrieval_index import cached_index, ensure_index, index_uri
from reasonrec.recommend.system import System, vlm_settings, vlm_tool_names
from reasonrec.router.config import RouterConfig
from reasonrec.tools.base import Tool, load_tool
from reasonrec.tools.data import Histories
from reasonrec.tools.retrieval import build_index
from reasonrec.vlm.instruction_config import InstructionConfig
from reasonrec.vlm.model_config import VLMModelConfig
from reasonrec.vlm.templates import ItemText
from reasonrec.vlm.tool_labels import RANKING_TASKS


class Bundle:
    """Loaded artifacts. Heavy parts (VLM, index, tonight's histories) load on first use, so a stage that
    only needs the tools never pays for the VLM."""

    def __init__(self, system: System):
        self.system = system
        self.settings = vlm_settings(system.vlm_dir) if system.vlm_dir is not None else None
        self.dataset = Dataset.load(system.dataset)   # tables are read on first use: scoring never reads interactions
        self.n_items = self.dataset.n_items
        self._tmp = tempfile.TemporaryDirectory(prefix="reasonrec-bundle-")

    @property
    def cfg(self) -> RecommendConfig:
        """The resolved recommend config (its router is `router`: there is one)."""
        return self.system.recommend

    @property
    def router(self) -> RouterConfig:
        return self.system.router

    @property
    def version(self) -> str:
        return self.system.model_version

    # ------------------------------------------------------------------ configuration read from the VLM run

    @property
    def tools_dir(self) -> str:
        if self.system.tools_dir is None:
            raise ValueError("no tools_dir: set recommend.tools_dir (the VLM was trained without tools)")
        return self.system.tools_dir

    @cached_property
    def instruction_config(self) -> InstructionConfig:
        return InstructionConfig.model_validate((self.settings or {}).get("instructions", {}))

    @cached_property
    def vlm_tool_names(self) -> list[str]:
        """Tools the VLM has <tool_*> tokens for (its reasonrec.json), in its column order."""
        return vlm_tool_names(self.system.vlm_dir) if self.system.vlm_dir is not None else []

    # ------------------------------------------------------------------ tools

    @cached_property
    def tools(self) -> dict[str, Tool]:
        """The ranking tools this run uses: the best tool first, then the consult pool (sorted)."""
        best = self.router.best_tool.get("sequential")
        names = [best] if best else []
        names += [n for n in sorted(self.consult_pool) if n not in names]
        tools = {name: self._load_tool(name) for name in names}
        wrong = [n for n, t in tools.items() if t.task not in RANKING_TASKS]
        if wrong:
            raise ValueError(f"tools {wrong} are not ranking tools (sequential/direct); they cannot rank candidates")
        return tools

    @property
    def consult_pool(self) -> list[str]:
        return list(self.cfg.consult_pool or [])

    def _load_tool(self, name: str) -> Tool:
        folder = join(self.tools_dir, name)
        fs, path = open_fs(folder)
        if not fs.exists(join(path, "tool.json")):
            raise FileNotFoundError(f"{folder}: no trained tool {name!r} (run jobs/train_tools.py)")
        return load_tool(fetch_dir(folder, self._tmp.name))

    @cached_property
    def retrieval_tool(self) -> Tool:
        tool = self._load_tool(self.cfg.retrieval_tool)
        if not hasattr(tool, "item_vectors"):
            raise ValueError(f"retrieval_tool {self.cfg.retrieval_tool!r} has no item tower (use two_tower)")
        return tool

    @cached_property
    def index_uri(self) -> str:
        """Where the nightly job's setup keeps this system's retrieval index (reasonrec/recommend/retrieval_index.py);
        cached: the name hashes the retrieval tool's weights."""
        return index_uri(self.system.dataset, self.tools_dir, self.cfg.retrieval_tool, self.cfg.retrieval_index)

    def keep_retrieval_index(self) -> bool:
        """Train and keep the retrieval index at index_uri unless it is there (the nightly job's setup); True
        when written. The retrieval tool is loaded only then."""
        return ensure_index(self.index_uri, self.cfg.retrieval_index, lambda: self.retrieval_tool.item_vectors())

    @cached_property
    def retrieval(self) -> tuple[Tool, object]:
        """(the retrieval tool, its faiss index over the item tower): the index kept at index_uri when there is
        one, else built here (the same index: named from the weights, seeded)."""
        tool = self.retrieval_tool
        index = cached_index(self.index_uri)
        return tool, index if index is not None else build_index(tool.item_vectors(), self.cfg.retrieval_index)

    # ------------------------------------------------------------------ tonight's state

    @cached_property
    def item_ids(self) -> np.ndarray:
        return self.dataset.items.sort_values("item_idx")["item_id"].to_numpy()

    @cached_property
    def user_ids(self) -> np.ndarray:
        return self.dataset.users.sort_values("user_idx")["user_id"].to_numpy()

    @cached_property
    def everything(self) -> Histories:
        """Every interaction, oldest first per user: tonight's histories (the whole data set in memory; the
        nightly job's actors read theirs from <dataset>/tonight/histories.parquet instead)."""
        return histories.everything(self.dataset, self.dataset.interactions)

    @cached_property
    def tonight_eh(self) -> np.ndarray:
        """C(u) over every interaction (the split's evidence.parquet describes only its train part)."""
        return histories.tonight_eh(self.dataset, self.dataset.interactions)

    # ------------------------------------------------------------------ the VLM

    @cached_property
    def item_text(self) -> ItemText:
        return ItemText.from_dataset(self.dataset, self.instruction_config.title_max_chars)

    @cached_property
    def scorer(self):
        """The VLMScorer over the run's final model (None without a VLM)."""
        if self.cfg.vlm_dir is None:
            return None
        import torch

        from reasonrec.vlm.build import load_vlm
        from reasonrec.vlm.images import ItemImages
        from reasonrec.vlm.scoring import VLMScorer

        device = self.cfg.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        model_cfg = VLMModelConfig.model_validate(self.settings["model"])
        # The run's model/ is complete: no fresh adapters, no re-initialised item rows.
        model_cfg = model_cfg.model_copy(update={"lora": model_cfg.lora.model_copy(update={"enabled": False}),
                                                 "item_embedding_tool": None})
        model, processor = load_vlm(fetch_dir(join(self.cfg.vlm_dir, "model"), self._tmp.name), model_cfg,
                                    device=device)
        model.eval()
        return VLMScorer(model, processor, ItemImages(self.dataset, model_cfg.image_size), self.vlm_tool_names,
                         batch_size=self.cfg.vlm_batch_size, device=device, max_length=model_cfg.max_length)
