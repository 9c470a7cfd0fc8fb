"""dlbench eval RUN [OVERRIDES...]: a saved model's metrics on the test split.

The run's own overrides are composed again (the command line's win, e.g. dataset=fashion_mnist)
and the data and task are built with training.py's builders, so eval measures what training did.
"""

from __future__ import annotations

from omegaconf import OmegaConf

from dlbench import preflight, terminal
from dlbench.commands.runs import merge_overrides, require_plugins, saved_overrides
from dlbench.engine import checkpoint
from dlbench.errors import DlbenchError
from dlbench.terminal import key_of, root_of


def eval_command(args: list[str]) -> int:
    usage = "usage: dlbench eval RUN [OVERRIDES...]  (RUN: a run's folder or checkpoint; dataset=...)"
    if not args or args[0].startswith("-"):
        raise DlbenchError(usage)
    if flags := [a for a in args[1:] if a.startswith("-")]:  # (Hydra's lexer would quote its grammar)
        raise DlbenchError(f"dlbench eval takes no option {flags[0]}: only overrides", usage)
    from dlbench.build import build_data, build_task, built_to_fit
    from dlbench.engine.device import resolve_device, seed_everything
    from dlbench.engine.logging import RunLogger, console, err_console, metrics_table, setup_console
    from dlbench.engine.trainer import Trainer

    changed = [a for a in args[1:] if root_of(a) in ("model", "task")]
    if changed:  # (a task of another kind read the outputs as something else: a crash, or a wrong figure)
        raise DlbenchError(
            f"eval measures the run's own model and task, which its weights were trained for: "
            f"{' '.join(changed)} would change them. Leave it out (another data set, dataset=..., is fine)"
        )
    ckpt, run_dir, saved = saved_overrides(args[0])
    run_dir = run_dir or ckpt.parent  # a checkpoint file on its own
    overrides = merge_overrides(saved, args[1:])
    require_plugins(args[0], ckpt, args[1:], ["eval", *args], composes=True)
    cfg = preflight.check(overrides, source=f"the run {run_dir}", mode="show", own=args[1:])[0]
    state = checkpoint.load(ckpt)
    check_same_data(cfg, state, args[1:], ckpt)
    setup_console("plain")
    if preprocessing := prepared_otherwise(cfg, state, args[1:]):  # (0.5 in place of 1.0, unsaid)
        err_console.print(
            terminal.inert(
                f"note: {' '.join(preprocessing)}: the model is measured on images prepared otherwise "
                "than it trained on (the run's settings are in its .hydra/config.yaml)"
            )
        )
    carved = [a for a in args[1:] if key_of(a) in ("dataset.split_seed", "dataset.test_fraction")]
    if carved and not any(key_of(a) == "dataset" for a in args[1:]):  # (a figure that looked like a test's)
        err_console.print(
            terminal.inert(
                f"note: {' '.join(carved)} carves another test split from the run's data: it may hold "
                "samples the run trained on, and then its figures are no test of the model"
            )
        )
    seed_everything(cfg.trainer.seed, cfg.trainer.deterministic)  # (a GAN's noise: one figure each call)
    data = build_data(cfg)
    if not data.size("test"):
        raise no_test_split(cfg, args[1:])
    facts = state.get("data")  # (a checkpoint's: data, of any shape)
    trained_on = facts.get("class_names") if isinstance(facts, dict) else None
    if isinstance(trained_on, list) and data.info.class_names and trained_on != data.info.class_names:
        err_console.print(  # (another folder's classes were scored by their place in the list)
            terminal.inert(
                f"note: the run's classes ({listed(trained_on)}) are not this data's "
                f"({listed(data.info.class_names)}): the model's class i is scored as the data's class i"
            )
        )

    def built_for(info):  # (the task this config builds for data of these facts)
        return lambda trial: build_task(cfg, info, judge=trial, trial=trial)

    try:  # (a saved run's config: built on "meta" first, to fit its weights)
        task = built_to_fit(
            built_for(data.info), state["task"], f"{ckpt} does not fit the model this config builds"
        )
    except DlbenchError as err:  # (another data set: say which of its facts differ)
        raise other_shape(cfg, state, data.info, built_for, ckpt) or err from err
    trainer = Trainer(
        OmegaConf.to_object(cfg.trainer),  # a TrainerConfig, as training.py gives it
        resolve_device(str(cfg.device.type)),
        run_dir,
        RunLogger(run_dir, "none", cfg.logger.figures_budget),
    )
    trainer.setup(task)
    metrics = trainer.evaluate(task, data, "test")
    console.print(metrics_table(metrics, title=f"Test metrics of {ckpt}"))
    if (report := task.report()) is not None:
        console.print_lines(report)
    return 0


def listed(names: list) -> str:
    """The first few of a list of names, for a line."""
    return ", ".join(map(str, names[:6])) + (", ..." if len(names) > 6 else "")


def no_test_split(cfg, given: list[str]) -> DlbenchError:
    """Why there is no test split to measure: the command's own dataset.test_fraction, or a run
    that held none out (iris_mlp trains on all of iris, as its notes do: it said
    "(dataset.test_fraction=0?)", a guess)."""
    fraction = f"dataset.test_fraction={cfg.dataset.test_fraction}"
    if "dataset.test_fraction" in {key_of(o) for o in given}:
        return DlbenchError(f"dataset '{cfg.dataset.name}' has no test split here: {fraction} leaves none")
    return DlbenchError(
        f"dataset '{cfg.dataset.name}' has no test split here: the run held none out ({fraction}); its "
        "figures are in its metrics.json (a test_fraction given here carves one from samples it may "
        "have trained on)"
    )


def other_shape(cfg, state: dict, info, built_for, ckpt) -> DlbenchError | None:
    """Where the weights do not fit the model built for this data but fit the one built for the
    data the run trained on (`built_for`: the build for data of given facts): the data's facts
    that differ (its inputs, classes, outputs, vocabularies), in place of torch's four lines of
    "size mismatch for model.1.weight"."""
    from dlbench.build import fits_unbuilt
    from dlbench.data.info import DataInfo
    from dlbench.registry import MODEL_FACTS

    try:
        saved = DataInfo.from_dict(state.get("data"))
        fits_unbuilt(built_for(saved), state["task"], "")
    except Exception:  # noqa: BLE001  (not the data: the weights fit no model this config builds)
        return None
    before, now = saved.to_dict(), info.to_dict()
    # (the facts the model takes and its config leaves to the data: a num_outputs=6 of its own is its own)
    left = [k for k in MODEL_FACTS if k in cfg.model and cfg.model[k] is None]
    differ = [k for k in left if before.get(k) != now.get(k)]
    if not differ:
        return None
    return DlbenchError(
        f"{ckpt}'s model was built for data of another shape than dataset={cfg.dataset.name}'s: "
        + ", ".join(f"{k} {terminal.inert(str(before[k]))} there, {now[k]} here" for k in differ)
    )


def check_same_data(cfg, state: dict, given: list[str], ckpt) -> None:
    """The data settings eval composes from the run's saved overrides are the ones its checkpoint
    was trained with, but for those the command line changes (a run folder's overrides.yaml is
    data: one edited to another split_seed measured the model on its own training images)."""
    from dlbench import resume

    if (saved := saved_dataset(state, given)) is None:
        return
    now = OmegaConf.to_container(cfg.dataset, resolve=False)
    changed = set(map(key_of, given))
    differ = {
        k: v
        for k, v in resume.changes({"dataset": saved}, {"dataset": now}).items()
        if resume.ABSENT not in v and k not in changed and k.split(".")[1] not in NOT_MEASURED
        and "${" not in str(v[1])  # (as composed: resolved later, from the data)
    }  # fmt: skip
    if differ:
        said = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in differ.items())
        raise DlbenchError(
            f"{ckpt} was trained on other data than the run's saved overrides compose ({said}, the "
            "checkpoint's first): its .hydra/overrides.yaml was edited, or dlbench's defaults changed "
            "since. Give the settings you mean on the command line"
        )


# dataset settings that change how eval's images are prepared from how the run's were
PREPROCESSING = ("dataset.normalize", "dataset.image_size", "dataset.grayscale")


def saved_dataset(state: dict, given: list[str]) -> dict | None:
    """The dataset node the checkpoint was trained with, unless the command line names another
    data set (dataset=OTHER: asked for, with its own settings) or the checkpoint holds none."""
    from dlbench import files

    if any(key_of(a) == "dataset" for a in given):
        return None
    saved = files.load_yaml(state["config"]).get("dataset")
    return saved if isinstance(saved, dict) else None


def prepared_otherwise(cfg, state: dict, given: list[str]) -> list[str]:
    """The words of the command line that prepare the images otherwise than the run did."""
    if (saved := saved_dataset(state, given)) is None:
        return []
    now = OmegaConf.to_container(cfg.dataset, resolve=True)
    keys = {a: key_of(a).split(".")[-1] for a in given if key_of(a) in PREPROCESSING}
    return [a for a, key in keys.items() if saved.get(key) != now.get(key)]


# dataset settings that do not change what eval measures: how it is read, and training's own
NOT_MEASURED = ("batch_size", "eval_batch_size", "num_workers", "in_memory", "download", "augment")
NOT_MEASURED += ("mixup", "cutmix")
