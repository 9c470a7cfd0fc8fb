import math
import sys

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dlbench.errors import DlbenchError
from dlbench.registry import LOSSES, MODELS, OPTIMIZERS, SCHEDULERS, Registry
from dlbench.torch_components import MEANINGS, snake_case


def test_torch_components_are_registered_from_torch():
    assert OPTIMIZERS.get("sgd") is torch.optim.SGD
    assert OPTIMIZERS.get("adamw") is torch.optim.AdamW
    assert SCHEDULERS.get("step_lr") is torch.optim.lr_scheduler.StepLR
    assert SCHEDULERS.get("one_cycle_lr") is torch.optim.lr_scheduler.OneCycleLR
    assert LOSSES.get("cross_entropy") is torch.nn.CrossEntropyLoss
    assert LOSSES.get("bce_with_logits") is torch.nn.BCEWithLogitsLoss
    # schedulers that need Python callables cannot come from a config file
    assert "lambda_lr" not in SCHEDULERS


def test_every_optimizer_offered_steps_as_a_training_step_does():
    """A review: `dlbench list` offered lbfgs (its step needs a closure) and sparseadam (sparse
    gradients only), and each failed at the first step with a traceback. Offered: an allow-list
    of those that step after one backward pass."""
    assert "lbfgs" not in OPTIMIZERS and "sparseadam" not in OPTIMIZERS
    for name in OPTIMIZERS.names():
        model = torch.nn.Linear(3, 2, bias=False)  # (muon takes 2-D parameters only)
        optimizer = OPTIMIZERS.build({"name": name, "lr": 0.01}, "optimizer", params=list(model.parameters()))
        before = model.weight.detach().clone()
        model(torch.ones(4, 3)).square().mean().backward()
        optimizer.step()
        assert not torch.equal(model.weight, before), name


def test_each_task_computes_the_losses_it_takes_and_refuses_the_others_before_anything_is_built(
    cli, tmp_path
):
    """A review: loss=bce, kl_div, ctc, triplet_margin, ... on the default classification task
    failed inside the first step (a traceback, exit 1). Each task lists the losses it takes;
    dlbench offers torch's that some task takes."""
    from dlbench.data.info import DataInfo
    from dlbench.registry import TASKS

    data = DataInfo(name="tiny", input_shape=[4], num_outputs=3, num_classes=3)
    values = DataInfo(name="tiny", input_shape=[4], num_outputs=3)
    binary = DataInfo(name="tiny", input_shape=[4], num_outputs=1, num_classes=2)
    cases = [
        ("classification", data, 3, torch.tensor([0, 1, 2, 1])),
        ("regression", values, 3, torch.rand(4, 3)),
    ]
    cases += [("binary_classification", binary, 1, torch.tensor([0, 1, 1, 0]))]
    offered = set()
    for task, info, outputs, y in cases:
        task_cls = TASKS.get(task)
        for loss in task_cls.losses:
            offered.add(loss)
            built = TASKS.build(
                {"name": task},
                "task",
                model=torch.nn.Linear(4, outputs),
                loss=LOSSES.build({"name": loss}, "loss"),
                data=info,
            )
            values = built.training_step((torch.rand(4, 4), y), lambda name, value: value.backward())
            assert torch.isfinite(values["loss"]), (task, loss)
    assert offered | set(TASKS.get("seq2seq").losses) == set(LOSSES.names())  # (none offered for nothing)

    result = cli("loss=bce")
    assert result.returncode == 2 and not (tmp_path / "outputs").exists(), result.stderr
    taken = "cross_entropy|nll|multi_margin|mse|l1|smooth_l1|huber"
    assert f"error: task=classification takes loss={taken} (or a loss of your own" in result.stderr
    result = cli("loss=ctc")
    assert result.returncode == 2 and "Unknown loss option 'ctc'" in result.stderr


def test_snake_case():
    assert snake_case("CrossEntropy") == "cross_entropy"
    assert snake_case("BCEWithLogits") == "bce_with_logits"
    assert snake_case("ReduceLROnPlateau") == "reduce_lr_on_plateau"


def test_unknown_name_suggests_the_closest():
    with pytest.raises(DlbenchError) as err:
        OPTIMIZERS.get("adamm")
    assert "Did you mean: adam" in str(err.value)
    assert "sgd" in str(err.value)  # the full list follows


def test_import_paths_are_not_names():
    with pytest.raises(DlbenchError, match="Unknown optimizer 'torch.optim.SGD'"):
        OPTIMIZERS.build({"name": "torch.optim.SGD", "lr": 0.1}, "optimizer", params=[])
    with pytest.raises(DlbenchError, match="Unknown model 'os.system'"):
        MODELS.get("os.system")


def test_build_checks_keys_and_types():
    params = [torch.nn.Parameter(torch.zeros(2))]
    opt = OPTIMIZERS.build({"name": "sgd", "lr": 0.5, "momentum": 0.9}, "optimizer", params=params)
    assert opt.defaults["lr"] == 0.5 and opt.defaults["momentum"] == 0.9
    with pytest.raises(DlbenchError, match=r"Did you mean: optimizer.momentum\?"):
        OPTIMIZERS.build({"name": "sgd", "lr": 0.5, "momentun": 0.9}, "optimizer", params=params)
    with pytest.raises(DlbenchError, match=r"optimizer.lr: expected float"):
        OPTIMIZERS.build({"name": "sgd", "lr": "fast"}, "optimizer", params=params)
    with pytest.raises(DlbenchError, match="model.hidden: expected list of int"):
        MODELS.check({"name": "mlp", "hidden": "wide"}, "model")


def test_a_registry_registers_by_decorator_and_lists_by_pattern():
    reg = Registry("widget")

    @reg.register("small_widget")
    def small(size: int = 1):
        """A small widget."""
        return size

    reg.add("big_widget", lambda size=2: size)
    assert reg.names("*small*") == ["small_widget"]
    assert reg.description("small_widget") == "A small widget."
    assert reg.build({"name": "small_widget", "size": 3}, "widget") == 3
    with pytest.raises(DlbenchError, match="registered twice"):  # a plugin taking a shipped name
        reg.add("small_widget", lambda: None)


def test_the_name_index_matches_the_registrations():
    """registry_index.json lets --help, list and --cfg answer without importing torch or a model
    family; it must list exactly what the modules register (python -m dlbench.registry rewrites it)."""
    from dlbench.registry import build_index, read_index

    assert build_index() == read_index(), "run: python -m dlbench.registry"


def test_help_a_typo_and_list_import_neither_torch_nor_a_model_family():
    import subprocess
    import sys

    probe = (
        "import sys; from dlbench import cli; cli.main(sys.argv[1:]); "
        "names = ('torch', 'torchvision', 'torchmetrics', 'dlbench.models.resnet'); "
        "heavy = [m for m in names if m in sys.modules]; "
        "print('HEAVY', heavy)"
    )
    for args in (["--help"], ["model=mlpp"], ["list"], ["--cfg", "job", "experiment=lenet5_mnist"]):
        out = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True).stdout
        assert "HEAVY []" in out, (args, out[-500:])


def test_a_new_module_of_a_family_is_found_without_a_list_or_the_index(tmp_path, monkeypatch):
    """A built-in model is one new file in dlbench/models/: the registry finds the package's
    modules on disk (`family`), and imports one the index does not know yet."""
    import dlbench.registry as registry

    assert "dlbench.models.resnet" in registry.family("dlbench.models")
    assert "dlbench.models.resnet" in registry.read_index()["modules"]["model"]
    (tmp_path / "fresh_family.py").write_text(
        "import dlbench.registry as r\n\n\n@r.FRESH.register('fresh_net')\ndef fresh_net(width: int = 3):\n"
        '    """A model in a file the index has never seen."""\n'
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(
        registry, "FRESH", registry.Registry("model", modules=["fresh_family"]), raising=False
    )
    assert "fresh_net" in registry.FRESH.names()
    assert registry.FRESH.description("fresh_net") == "A model in a file the index has never seen."
    monkeypatch.delitem(sys.modules, "fresh_family")


def test_every_registered_name_has_its_own_one_line_description():
    """`dlbench list` describes each of dlbench's names by its own docstring, never one it
    inherits (`minimize` once read "Base class for all neural network modules.")."""
    from dlbench.registry import REGISTRIES, origin_of

    inherited = {"Base class for all neural network modules."}
    for registry in REGISTRIES.values():
        registry.load_all()
        for name in registry.names():
            if origin_of(registry.get(name)) != "dlbench":
                continue
            description = registry.description(name)
            assert description and description not in inherited, (registry.kind, name, description)


def test_the_default_run_imports_neither_torchvision_nor_torchmetrics(tmp_path):
    """Each costs seconds of start-up (torchmetrics imports torchvision, scipy.signal and
    torch._dynamo): a run on tabular data needs neither; the GAN and seq2seq tasks import them.
    Nor MLflow or W&B, which only a run that names them in logger.backends imports."""
    import subprocess
    import sys

    probe = (
        "import sys; from dlbench import cli\n"
        "try: cli.main(sys.argv[1:])\n"
        "finally: print('HEAVY', [m for m in ('torchvision', 'torchmetrics', 'mlflow', 'wandb')"
        " if m in sys.modules])"
    )
    args = ["trainer.epochs=1", "trainer.progress=none", f"hydra.run.dir={tmp_path / 'run'}"]
    out = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, cwd=tmp_path)
    assert "HEAVY []" in out.stdout, out.stdout[-1000:] + out.stderr[-1000:]
    assert (tmp_path / "run" / "metrics.json").is_file()


def test_a_users_own_loss_and_task_are_theirs_under_the_loss_allow_lists():
    """A review: a plugin's soft-target loss was refused under mixup (only torch's were taken),
    and a plugin task inheriting Classification's list refused its own default loss."""
    import torch

    from dlbench.tasks.classification import Classification

    class SoftCrossEntropy(torch.nn.Module):  # (timm's SoftTargetCrossEntropy, in a user's module)
        def forward(self, x, target):
            return (-target * x.log_softmax(-1)).sum(-1).mean()

    class IndicesOnly(SoftCrossEntropy):
        soft_targets = False

    assert Classification.takes_soft_labels(SoftCrossEntropy())
    assert not Classification.takes_soft_labels(IndicesOnly())
    assert not Classification.takes_soft_labels(torch.nn.NLLLoss())
    assert Classification.takes_soft_labels(torch.nn.CrossEntropyLoss())

    class MultiLabel(Classification):  # (a plugin's task: its module is not dlbench's)
        default_loss = "bce_with_logits"

    MultiLabel.check_loss("bce_with_logits", "multi_label")
    MultiLabel.check_loss("poisson_nll", "multi_label")  # (a task of one's own takes any loss)
    with pytest.raises(DlbenchError, match="task=classification takes loss=cross_entropy"):
        Classification.check_loss("bce_with_logits", "classification")


@pytest.mark.parametrize(
    ("settings", "said"),
    [
        (
            ["loss=cross_entropy", "loss.label_smoothing=2"],
            "CrossEntropyLoss's label_smoothing must be in [0, 1]",
        ),
        (["loss=cross_entropy", "+loss.reduction=none"], "the loss gives one value per sample"),
        (["experiment=mlp_regression", "loss=huber", "+loss.delta=0"], "HuberLoss's delta must be above 0"),
    ],
)
def test_loss_settings_torch_takes_but_cannot_compute_with_are_refused_before_the_run(cli, settings, said):
    """They failed at the first step (unexpected error, exit 1), after the run folder was made."""
    result = cli(*settings, "trainer.epochs=1", "hydra.run.dir=r")
    assert result.returncode == 2 and said in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("settings", "said"),
    [
        (
            ["scheduler=step_lr", "scheduler.step_size=-1"],
            "StepLR's step_size must be a whole number of at least 1",
        ),
        (["scheduler=step_lr", "scheduler.gamma=-1"], "StepLR's gamma must be above 0"),
        (["optimizer=sgd", "optimizer.momentum=1.5"], "SGD's momentum must be in [0, 1)"),
        (
            ["scheduler=reduce_lr_on_plateau", "scheduler.patience=-1"],
            "patience must be a whole number of at least 0",
        ),
        (
            ["scheduler=multi_step_lr", "scheduler.milestones=[2,-1]"],
            "each of MultiStepLR's milestones must be",
        ),
    ],
)
def test_torch_settings_out_of_their_meaning_are_refused_before_the_run(cli, tmp_path, settings, said):
    """Each trained to the end, exit 0: the lr grew (step_size=-1), turned negative (gamma=-1),
    the steps diverged (momentum=1.5), the lr was cut every epoch (patience=-1)."""
    result = cli(*settings, "trainer.epochs=1", "hydra.run.dir=r")
    assert result.returncode == 2 and said in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "r").exists()


def test_a_whole_number_given_for_a_setting_torch_takes_as_a_float_is_passed_as_one():
    """OneCycleLR refuses an int pct_start, and Hydra reads `pct_start=0` as one."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.1)
    node = {"name": "one_cycle_lr", "max_lr": 0.1, "total_steps": 10, "pct_start": 0}
    scheduler = SCHEDULERS.build(node, "scheduler", optimizer=optimizer)
    assert scheduler._schedule_phases[0]["end_step"] == -1  # (no warm-up: pct_start 0)


# the schedulers of MEANINGS, with what each needs besides (its length: 12 steps)
# (and periods short enough that 12 steps reach them)
NEEDS = {
    "step_lr": {"step_size": 2},
    "multi_step_lr": {"milestones": [2, 5]},
    "cyclic_lr": {"base_lr": 0.01, "max_lr": 0.1, "step_size_up": 3},
    "one_cycle_lr": {"max_lr": 0.1},
    "cosine_annealing_warm_restarts": {"T_0": 5},
}
MEANT = [
    (name, key)
    for name in SCHEDULERS.names()
    if SCHEDULERS.origin(name) == "torch"
    for key in MEANINGS.get(SCHEDULERS.get(name).__name__, {})
]
number = st.one_of(st.integers(-5, 30), st.floats(-3, 3))


@settings(max_examples=150, deadline=None, database=None)
@given(meant=st.sampled_from(MEANT), value=st.one_of(number, st.lists(number, min_size=1, max_size=3)))
@example(meant=("step_lr", "gamma"), value=-1)  # (negative lrs, exit 0)
@example(meant=("cyclic_lr", "max_momentum"), value=1.5)  # (a momentum that diverges)
@example(meant=("constant_lr", "factor"), value=2.2250738585e-313)  # (found: 1/factor is inf, so the lr)
@example(meant=("one_cycle_lr", "div_factor"), value=5e-324)
def test_a_torch_scheduler_setting_is_refused_outside_its_meaning_and_steps_sanely_inside_it(meant, value):
    """Generated: any number (or list) for a scheduler's setting whose meaning has a range is
    refused in one message where it is out of that range; one accepted steps 12 times with
    every lr finite and not negative, and the momentum it cycles in [0, 1)."""
    name, key = meant
    meaning = MEANINGS[SCHEDULERS.get(name).__name__][key]
    lengths = {k: 12 for k in ("T_max", "total_iters", "total_steps") if k in SCHEDULERS.config_node(name)}
    node = {"name": name, **lengths, **NEEDS.get(name, {}), key: value}
    numbers = value if isinstance(value, list) else [value]
    try:
        SCHEDULERS.check(node, "scheduler")
    except DlbenchError as err:
        assert f"scheduler.{key}" in str(err) and "\n" not in str(err)
        return
    assert all(meaning.holds(n) for n in numbers), f"{name}.{key}={value} was accepted"
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.ones(2))], lr=0.1, momentum=0.9)
    try:
        scheduler = SCHEDULERS.build(node, "scheduler", optimizer=optimizer)
    except DlbenchError:  # (torch's own check of a value's kind or length, milestones=1: one message)
        return
    for _ in range(12):
        optimizer.step()
        scheduler.step(*([1.0] if name == "reduce_lr_on_plateau" else []))  # (a plateau: no gain)
        group = optimizer.param_groups[0]
        assert math.isfinite(group["lr"]) and group["lr"] >= 0, (node, group["lr"])
        assert 0 <= group["momentum"] < 1, (node, group["momentum"])
