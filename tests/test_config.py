"""Composition and validation, before any work: the messages a user sees for a typo."""

import pytest

from dlbench import compose, errors, preflight
from dlbench.errors import DlbenchError


def check(*overrides):
    preflight.check(list(overrides))


def test_default_config_composes_and_validates():
    cfg = compose.compose_config([])
    assert cfg.model.name == "mlp" and cfg.dataset.name == "digits"
    assert cfg.task.name == "classification"  # task=auto follows the dataset
    assert cfg.device.type == "cpu"
    assert cfg.name == "digits_mlp"
    check()


def test_overrides_and_group_swaps():
    cfg = compose.compose_config(["model=linear", "optimizer=sgd", "optimizer.lr=0.1", "trainer.epochs=3"])
    assert cfg.model.name == "linear" and cfg.optimizer.lr == 0.1 and cfg.trainer.epochs == 3
    check("dataset=synthetic_linear", "model=linear")
    assert compose.compose_config(["dataset=synthetic_linear"]).task.name == "regression"


def test_unknown_group_option_suggests_the_closest():
    with pytest.raises(DlbenchError, match=r"Unknown model option 'mlpp'\. Did you mean: mlp, gan_mlp\?"):
        check("model=mlpp")


def test_a_name_that_begins_a_choice_then_a_close_spelling_then_one_it_is_part_of_is_suggested():
    choices = ["constant_lr", "cosine_annealing_lr", "none", "reduce_lr_on_plateau", "step_lr"]
    assert errors.closest("cosine", choices, 3) == ["cosine_annealing_lr"]  # (difflib: none)
    assert errors.closest("Plateau", choices, 3) == ["reduce_lr_on_plateau"]
    assert errors.closest("stpe_lr", choices, 3)[0] == "step_lr"  # (a typo: difflib's)
    assert errors.closest("zzz", choices, 3) == []
    # (a close spelling before a name it is part of: `irs` offered translation_pairs alone)
    assert errors.closest("irs", ["digits", "iris", "translation_pairs"], 3) == ["iris", "translation_pairs"]


def test_unknown_trainer_key_suggests_the_closest():
    with pytest.raises(DlbenchError, match=r"Unknown key 'trainer.epocs'\. Did you mean: trainer.epochs\b"):
        check("trainer.epocs=5")


def test_unknown_model_key_suggests_the_closest():
    with pytest.raises(DlbenchError, match=r"Unknown key 'model.hiden'\. Did you mean: model.hidden\?"):
        check("model.hiden=[64]")


def test_wrong_types():
    with pytest.raises(DlbenchError, match="trainer.epochs"):
        check("trainer.epochs=ten")
    with pytest.raises(DlbenchError, match="optimizer.lr: expected float"):
        check("optimizer.lr=fast")
    with pytest.raises(DlbenchError, match="dataset.batch_size"):
        check("dataset.batch_size=big")
    # (a hint torch's module names for type checkers alone: MultiStepLR's Iterable[int] was not
    # read, and milestones=[2,x] trained, 'x' never reached)
    with pytest.raises(DlbenchError, match=r"scheduler.milestones: expected list of int, got \[2, 'x'\]"):
        check("scheduler=multi_step_lr", "scheduler.milestones=[2,x]")


def test_impossible_settings():
    with pytest.raises(
        DlbenchError, match=r"trainer.precision=8 is not allowed; choose one of: 32\|bf16\|16"
    ):
        check("trainer.precision=8")
    with pytest.raises(DlbenchError, match="dataset.val_fraction=1.5"):
        check("dataset.val_fraction=1.5")
    with pytest.raises(DlbenchError, match="device.type=tpu"):
        check("device.type=tpu")
    # (kept in the run's config, and the task's loss built without it: label smoothing not applied)
    with pytest.raises(DlbenchError, match=r"loss.label_smoothing=0.5: loss=auto .* takes no settings"):
        check("+loss.label_smoothing=0.5")
    # (torch reads a negative smoothing as none, without a word)
    with pytest.raises(
        DlbenchError, match=r"label_smoothing=-0.1: CrossEntropyLoss's label_smoothing must be in"
    ):
        check("loss=cross_entropy", "loss.label_smoothing=-0.1")


def test_every_sweep_combination_is_checked():
    check("model=mlp,linear", "optimizer.lr=0.1,0.01")
    with pytest.raises(DlbenchError, match="Did you mean: linear"):
        check("model=mlp,linaer")


def test_a_sweeps_values_are_set_as_composing_each_job_would_set_them():
    """Jobs that differ only in swept values are composed once (preflight.check_command); the
    others are that config with their values set, and equal what composing each one gives."""
    from omegaconf import OmegaConf

    overrides = ["optimizer=sgd,adam", "model.hidden=[8],[16,8]", "optimizer.lr=0.1,0.01", "trainer.epochs=2"]
    jobs = preflight.combinations(compose.parse(overrides))
    checked = preflight.check(overrides)
    assert len(jobs) == len(checked) == 8
    for job, cfg in zip(jobs, checked, strict=True):
        assert OmegaConf.to_container(cfg) == OmegaConf.to_container(compose.compose_config(job)), job


def test_every_value_is_checked_with_every_choice_of_groups_however_many_jobs():
    """Past the first 64 jobs, each value of a swept key is checked with each choice of config
    groups: here the 129th job (linear, which has no hidden layers) stops the sweep before it starts."""
    jobs = preflight.combinations(
        compose.parse(["model=mlp,linear", "trainer.seed=range(64)", "model.hidden=[8],[16]"])
    )
    assert ["model=linear", "trainer.seed=0", "model.hidden=[16]"] in jobs[64:]
    with pytest.raises(DlbenchError, match="Unknown key 'model.hidden'"):
        check("model=mlp,linear", "trainer.seed=range(64)", "model.hidden=[8],[16]")


def test_target_is_refused():
    with pytest.raises(DlbenchError, match="_target_ cannot be set"):
        check("+model._target_=os.system")


def test_augmentation_keys_are_checked():
    hint = r"Unknown key 'dataset.augment.hflp'\. Did you mean: dataset.augment.hflip"
    with pytest.raises(DlbenchError, match=hint):
        check("dataset=image_folder", "dataset.augment={hflp: 0.5}")
    with pytest.raises(DlbenchError, match="dataset.augment.rotation: expected float"):
        check("dataset=image_folder", "dataset.augment.rotation=lots")


def test_shipped_component_files_hold_only_what_differs_from_the_code():
    """Each default is written once, in code: a shipped model/dataset/task YAML extends the
    code's node (`defaults: [_name]`) and sets only values that differ from it."""
    import yaml

    from dlbench.config import DataConfig
    from dlbench.registry import DATASETS, MODELS, TASKS

    registries = {"model": MODELS, "dataset": DATASETS, "task": TASKS}
    checked = 0
    for group, registry in registries.items():
        for path in sorted((compose.CONFIG_DIR / group).glob("*.yaml")):
            node = yaml.safe_load(path.read_text()) or {}
            if "${" in str(node.get("name")):
                continue  # task: auto follows the dataset
            code = registry.config_node(node["name"])
            if group == "dataset":
                code = {**code, **vars(DataConfig()), "name": node["name"]}
            assert node.get("defaults") == [f"_{node['name']}", "_self_"], path
            same = [
                k for k, v in node.items() if k not in ("name", "defaults") and k in code and code[k] == v
            ]
            assert not same, f"{path} repeats the code's defaults for {same}"
            assert "${dataset." not in path.read_text(), (
                f"{path}: sizes come from the data, not interpolations"
            )
            checked += 1
    assert checked >= 40


def test_a_registered_component_needs_no_yaml_and_its_keys_are_checked():
    from torch import nn

    from dlbench.registry import MODELS

    @MODELS.register("test_only_tiny")
    def test_only_tiny(input_shape: list[int], num_outputs: int, width: int = 4) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.LazyLinear(width), nn.Linear(width, num_outputs))

    cfg = compose.compose_config(["model=test_only_tiny", "model.width=8"])
    assert cfg.model.width == 8 and cfg.model.input_shape is None
    with pytest.raises(DlbenchError, match=r"Unknown key 'model.widht'.*Did you mean: model.width"):
        check("model=test_only_tiny", "+model.widht=8")
    with pytest.raises(DlbenchError, match=r"model.width: expected int, got 'wide'"):
        check("model=test_only_tiny", "model.width=wide")


def test_each_default_and_choice_is_written_once():
    """Issue 24: a setting's default lives in its dataclass (config.py), a choice list in one
    tuple; the code that reads them takes them from there, and the shipped YAML of the fixed
    groups repeats none of them."""
    import dataclasses
    import inspect

    import yaml

    from dlbench import show
    from dlbench.config import PRECISIONS, STRUCTURED, OptimizerConfig
    from dlbench.engine import distributed, optim, step
    from dlbench.engine.logging import RunLogger
    from dlbench.searchpath import SHIPPED

    assert set(step.DTYPES) | {"auto"} == set(PRECISIONS) == set(show.PRECISION_NAMES)
    assert optim.EXTRA_KEYS == tuple(f.name for f in dataclasses.fields(OptimizerConfig) if f.name != "name")
    for fn, setting in [
        (distributed.init, "timeout_s"),
        (distributed.launch, "timeout_s"),
        (RunLogger.__init__, "figures_budget"),
    ]:
        assert inspect.signature(fn).parameters[setting].default is inspect.Parameter.empty, fn
    for group, schema in STRUCTURED.items():  # (device/cpu.yaml names its type: it is the option)
        if group == "device":
            continue
        defaults = {f.name: f.default for f in dataclasses.fields(schema)}
        for path in (SHIPPED / group).glob("*.yaml"):
            node = yaml.safe_load(path.read_text()) or {}
            repeated = [k for k, v in node.items() if k in defaults and defaults[k] == v]
            assert not repeated, f"{path} repeats the defaults of {schema.__name__}: {repeated}"


def test_a_glob_over_a_groups_options_sweeps_the_options_offered_as_checked():
    """A review: Hydra expands glob(*) from its ConfigStore, hidden `_x` parts too: 27 jobs,
    each optimizer twice, 13 of them never checked before the sweep."""
    assert preflight.explicit_globs(["optimizer=glob(sgd*)", "trainer.epochs=1"]) == [
        "optimizer=sgd,sgd_momentum",
        "trainer.epochs=1",
    ]
    (every,) = preflight.explicit_globs(["optimizer=glob(*)"])
    assert "adam" in every.split("=")[1].split(",") and "_" not in every.replace("sgd_momentum", "")
