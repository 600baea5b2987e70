"""resolve(): one System per run — tools folder, model version, policy, consult pool — and the Bundle built on it
has one router, the System's."""

from __future__ import annotations

import pickle
import shutil

import pytest
from pydantic import ValidationError

from reasonrec.recommend.bundle import Bundle
from reasonrec.recommend.config import RecommendConfig
from reasonrec.recommend.system import model_version, resolve, with_router
from reasonrec.router.config import Policy, PolicyVersionError, RouterConfig
from tests.recommend.conftest import VLM_TOOLS


def test_a_config_resolves_once_to_what_every_caller_used_to_work_out(world):
    system = resolve(RecommendConfig(dataset=world.dataset, vlm_dir=world.vlm_dir, policy="config"))
    assert system.tools_dir == world.tools_dir                 # the VLM run's tools_dir (run.json)
    assert system.model_version == model_version(system.recommend)
    assert system.recommend.consult_pool == VLM_TOOLS           # the ranking tools the VLM has tokens for
    assert system.policy is None and system.policy_source == "the router config (policy=config)"
    given = resolve(RecommendConfig(dataset=world.dataset, vlm_dir=world.vlm_dir, policy="config",
                                    tools_dir=world.tools_dir, consult_pool=["sasrec"]))
    assert given.recommend.consult_pool == ["sasrec"]
    # Ray and Serve ship it as it is: it pickles, and nobody can change a decision on the way.
    assert pickle.loads(pickle.dumps(system)) == system
    with pytest.raises(ValidationError):
        system.model_version = "other@0"


def test_the_policy_is_applied_once_and_the_bundle_has_one_router(world, tmp_path):
    vlm_dir = tmp_path / "vlm"
    shutil.copytree(world.vlm_dir, vlm_dir)
    cfg = RecommendConfig(dataset=world.dataset, vlm_dir=str(vlm_dir))
    with pytest.raises(FileNotFoundError, match="no policy"):
        resolve(cfg)
    fallback = resolve(cfg, missing_policy="config")
    assert fallback.router == cfg.router and fallback.policy_source.startswith("the router config (")

    version = model_version(cfg)
    Policy(model_version=version, tau_low=0.45, tau_tool=0.2, best_tool={"sequential": "bpr_mf"}).save(str(vlm_dir))
    system = resolve(cfg)
    assert (system.router.tau_low, system.router.tau_tool, system.router.best_tool) == (
        0.45, 0.2, {"sequential": "bpr_mf"})
    assert system.policy_source == f"policy.json ({version})"
    bundle = Bundle(system)
    assert bundle.router is bundle.cfg.router is system.router and bundle.version == version
    assert list(bundle.tools)[0] == "bpr_mf"                   # the policy's best tool answers the tool route

    other = with_router(system, RouterConfig(tau_low=0.1))
    assert other.router.tau_low == 0.1 and system.router.tau_low == 0.45 and other.model_version == version

    Policy(model_version="another@000000000000").save(str(vlm_dir))
    with pytest.raises(PolicyVersionError):
        resolve(cfg)
    assert "another@" in resolve(cfg, missing_policy="config").policy_source


def test_without_a_vlm_the_best_tool_names_the_version(world):
    system = resolve(RecommendConfig(dataset=world.dataset, vlm_dir=None, tools_dir=world.tools_dir))
    assert system.model_version.startswith("tools@") and system.policy is None
    assert system.recommend.consult_pool == ["sasrec", "gru4rec"]   # router.consult_tools.sequential
    with pytest.raises(ValueError, match="tools_dir and router.best_tool.sequential"):
        resolve(RecommendConfig(dataset=world.dataset, vlm_dir=None))
