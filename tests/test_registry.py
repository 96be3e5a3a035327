"""Registries: register/build by name, config dataclasses, aliases and clear failures."""
import dataclasses

import pytest

from ofasys_fs import contracts
from ofasys_fs.errors import PluginError
from ofasys_fs.registry import REGISTRIES, get_architecture, register_model_architecture, setup_registry


@dataclasses.dataclass
class ScaleConfig:
    factor: float = 2.0


def make_registry():
    return setup_registry(f"thing_{len(REGISTRIES)}", base_class=contracts.Metric)


def test_register_and_build_by_name_config_and_dict():
    build, register, registry = make_registry()

    @register("scaled", dataclass=ScaleConfig, aliases=("scaled_alias",))
    class Scaled(contracts.Metric):
        def __init__(self, cfg, offset=0.0):
            self.cfg, self.offset = cfg, offset

        def compute(self, predictions, references):
            return {"scaled": self.cfg.factor * len(predictions) + self.offset}

    assert build("scaled").cfg.factor == 2.0
    assert build("scaled_alias", offset=1.0).compute([1, 2], [1, 2]) == {"scaled": 5.0}
    assert build(ScaleConfig(factor=3.0)).cfg.factor == 3.0
    assert build({"name": "scaled", "factor": 5.0}).cfg.factor == 5.0
    assert Scaled.registered_name == "scaled" and Scaled.config_class is ScaleConfig
    assert "scaled" in registry and "scaled_alias" in registry and registry.names() == ["scaled"]


def test_failures_are_clear():
    build, register, _ = make_registry()

    @register("accuracy_like")
    class Good(contracts.Metric):
        def compute(self, predictions, references):
            return {"x": 0.0}

    with pytest.raises(PluginError, match='already registered by .*Good'):
        register("accuracy_like")(type("Other", (contracts.Metric,), {"compute": lambda *a: {}}))
    with pytest.raises(PluginError, match="must be a subclass of Metric"):
        register("not_a_metric")(type("Plain", (), {}))
    with pytest.raises(PluginError, match="is not a dataclass"):
        register("bad_config", dataclass=dict)(type("C", (contracts.Metric,), {"compute": lambda *a: {}}))
    with pytest.raises(PluginError, match='Did you mean "accuracy_like"'):
        build("accuracy_lik")
    with pytest.raises(PluginError, match="takes no config"):
        build({"name": "accuracy_like", "beta": 1})


def test_unknown_config_key_has_did_you_mean():
    build, register, _ = make_registry()
    register("scaled", dataclass=ScaleConfig)(type("S", (contracts.Metric,), {
        "__init__": lambda self, cfg: None, "compute": lambda *a: {}}))
    with pytest.raises(PluginError, match='no option "factr".*Did you mean "factor"'):
        build({"name": "scaled", "factr": 1.0})


def test_architectures():
    @register_model_architecture("generalist", "test_arch_unique")
    def arch(cfg):
        return cfg

    assert get_architecture("test_arch_unique") is arch
    with pytest.raises(PluginError, match="already registered"):
        register_model_architecture("generalist", "test_arch_unique")(arch)
    with pytest.raises(PluginError, match='Did you mean "test_arch_unique"'):
        get_architecture("test_arch_uniqe")


def test_every_kind_has_a_registry():
    for kind in ("task", "criterion", "model", "preprocessor", "adaptor", "generator", "metric",
                 "optimizer", "lr_scheduler"):
        assert kind in REGISTRIES
