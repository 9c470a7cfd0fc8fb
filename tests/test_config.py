"""Composition and validation, before any work: the messages a user sees for a typo."""

import pytest

from dlbench import preflight
from dlbench.errors import DlbenchError


def check(*overrides):
    preflight.check(list(overrides))


def test_default_config_composes_and_validates():
    cfg = preflight.compose_config([])
    assert cfg.model.name == "mlp" and cfg.dataset.name == "digits"
    assert cfg.task.name == "classification"  # task=auto follows the dataset
    assert cfg.device.type == "cpu"
    assert cfg.name == "digits_mlp"
    check()


def test_overrides_and_group_swaps():
    cfg = preflight.compose_config(["model=linear", "optimizer=sgd", "optimizer.lr=0.1", "trainer.epochs=3"])
    assert cfg.model.name == "linear" and cfg.optimizer.lr == 0.1 and cfg.trainer.epochs == 3
    check("dataset=synthetic_linear", "model=linear")
    assert preflight.compose_config(["dataset=synthetic_linear"]).task.name == "regression"


def test_unknown_group_option_suggests_the_closest():
    with pytest.raises(DlbenchError, match=r"Unknown model option 'mlpp'\. Did you mean: mlp, gan_mlp\?"):
        check("model=mlpp")


def test_unknown_trainer_key_suggests_the_closest():
    with pytest.raises(DlbenchError, match=r"Unknown key 'trainer.epocs'\. Did you mean: epochs\b"):
        check("trainer.epocs=5")


def test_unknown_model_key_suggests_the_closest():
    with pytest.raises(DlbenchError, match=r"Unknown key 'model.hiden'\. Did you mean: hidden\?"):
        check("model.hiden=[64]")


def test_wrong_types():
    with pytest.raises(DlbenchError, match="trainer.epochs"):
        check("trainer.epochs=ten")
    with pytest.raises(DlbenchError, match="optimizer.lr: expected float"):
        check("optimizer.lr=fast")
    with pytest.raises(DlbenchError, match="dataset.batch_size"):
        check("dataset.batch_size=big")


def test_impossible_settings():
    with pytest.raises(
        DlbenchError, match=r"trainer.precision=8 is not allowed; choose one of: 32\|bf16\|16"
    ):
        check("trainer.precision=8")
    with pytest.raises(DlbenchError, match="dataset.val_fraction=1.5"):
        check("dataset.val_fraction=1.5")
    with pytest.raises(DlbenchError, match="device.type=tpu"):
        check("device.type=tpu")


def test_every_sweep_combination_is_checked():
    check("model=mlp,linear", "optimizer.lr=0.1,0.01")
    with pytest.raises(DlbenchError, match="Did you mean: linear"):
        check("model=mlp,linaer")


def test_target_is_refused():
    with pytest.raises(DlbenchError, match="_target_ cannot be set"):
        check("+model._target_=os.system")


def test_augmentation_keys_are_checked():
    with pytest.raises(DlbenchError, match=r"Unknown key 'dataset.augment.hflp'\. Did you mean: hflip"):
        check("dataset=image_folder", "dataset.augment={hflp: 0.5}")
    with pytest.raises(DlbenchError, match="dataset.augment.rotation: expected float"):
        check("dataset=image_folder", "dataset.augment.rotation=lots")
