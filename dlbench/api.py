"""dlbench from Python (a notebook, a script): the same runs as the command line.

import dlbench
run = dlbench.train("experiment=lenet5_mnist trainer.epochs=2")  # or several strings, or a list
run.metrics["test/acc"], run.folder             # the final metrics; the run's folder
steps, losses = run.curve("train/loss")         # any logged curve, as plain lists (to plot)
model = run.load_model()                        # the trained nn.Module, in eval mode
model = dlbench.load_model("outputs/lenet5_mnist")   # the same from a folder (its newest run)
"""

from __future__ import annotations

import os
import pickle
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from dlbench import errors, preflight, summary
from dlbench import plugins as plugin_loader
from dlbench.errors import DlbenchError
from dlbench.terminal import inert


@dataclass(frozen=True)
class Run(Mapping):
    """A finished run: its folder, its final metrics, its curves and its model. It reads like
    its metrics too (`run["test/acc"]`, `dict(run)`), as train() returned them before."""

    folder: Path
    metrics: dict[str, float] = field(repr=False)

    @classmethod
    def open(cls, folder: str | Path) -> Run:
        """A run folder trained before (its metrics.json); a folder of runs (outputs/NAME) means
        the run in it that finished last, as for `load_model` and every command."""
        from dlbench import files
        from dlbench.engine import checkpoint
        from dlbench.summary import read_metrics

        path = Path(a_path(folder, "Run.open")).expanduser().absolute()
        if checkpoint.holds_runs(path) and not (path / "metrics.json").is_file():
            if (path / "multirun.yaml").is_file():  # (its jobs are runs of their own: dlbench compare)
                raise DlbenchError(f"{folder} is a sweep: open one of its jobs ({folder}/0, ...)")
            path = files.newest_holding(path, "metrics.json", os.path.isfile) or path
        if path.is_file():
            raise DlbenchError(f"{folder} is a file: open its run's folder")
        if not path.is_dir():
            raise DlbenchError(f"{folder}: no such folder")
        metrics = read_metrics(path)
        if metrics is None:
            raise DlbenchError(f"{folder} holds no finished run (no readable metrics.json)")
        return cls(path, metrics)

    def __getitem__(self, key: str) -> float:
        return self.metrics[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.metrics)

    def __len__(self) -> int:
        return len(self.metrics)

    def __repr__(self) -> str:
        shown = ", ".join(  # (a metrics.json is data: text, null, a key with a control character)
            f"{inert(k)}={v:.4g}" if summary.is_number(v) else f"{inert(k)}={inert(repr(v))}"
            for k, v in self.metrics.items()
            if str(k).startswith("test/")
        )
        return f"Run({inert(repr(str(self.folder)))}{', ' + shown if shown else ''})"

    def curves(self) -> dict[str, tuple[list[int], list[float]]]:
        """Every scalar the run logged to TensorBoard: tag -> (steps, values), plain lists."""
        from dlbench import logged

        return logged.curves(self.folder)

    def curve(self, tag: str) -> tuple[list[int], list[float]]:
        """One logged curve (e.g. "train/loss", "val/acc"): its steps and values."""
        from dlbench.errors import unknown_name

        curves = self.curves()
        if tag not in curves:
            raise unknown_name("curve", tag, sorted(curves))
        return curves[tag]

    def load_model(self, plugins: list[str] | None = None) -> torch.nn.Module:
        """The trained model (checkpoints/last.pt), rebuilt and in eval mode."""
        return load_model(self.folder, plugins)


def words(overrides: tuple[str | list[str], ...]) -> list[str]:
    """The overrides as the command line has them: a string is split as a shell splits it
    ("experiment=iris_mlp trainer.epochs=20" is two), a list is taken as it is."""
    out: list[str] = []
    for item in overrides:
        if isinstance(item, str):
            try:
                out += shlex.split(item)
            except ValueError as err:
                raise DlbenchError(f"cannot split {item!r} into overrides: {err}") from None
        elif isinstance(item, (list, tuple)) and all(isinstance(word, str) for word in item):
            for word in item:  # (one item holding several overrides: the grammar's error quoted it whole)
                try:
                    split = shlex.split(word) if word.count("=") > 1 and " " in word else [word]
                except ValueError:  # (a quote of its own: one value)
                    split = [word]
                if len(split) > 1 and all("=" in part for part in split):
                    raise DlbenchError(
                        f"{word!r} holds several overrides, and a list's item is one: give them as "
                        f"items of their own, {split!r}, or as one string, which is split"
                    )
            out += list(item)
        else:
            raise DlbenchError(f"dlbench.train() takes strings or lists of strings, not {item!r}")
    if flags := [word for word in out if word.startswith("-")]:  # (Hydra's LexerNoViableAltException)
        raise DlbenchError(
            f"dlbench.train() takes overrides, not the command line's flags ({flags[0]}): a sweep is "
            "the command line's (dlbench -m ...); a config folder of yours, os.environ['DLBENCH_CONFIG_PATH']"
        )
    return out


def train(*overrides: str | list[str], **named: object) -> Run:
    """Train one run, as `dlbench OVERRIDES...` does: the same checks, the same run setup
    (launch.run_once: folder, log file, environment), the same files. Returns the Run; every
    mistake in the input is raised as one DlbenchError (its message is what the command line
    prints; a bug in a plugin's code, as its own exception), Ctrl-C as KeyboardInterrupt. The
    process's settings a run changes (torch's threads, deterministic algorithms and cuDNN
    autotuning, the random generators it seeds, the environment hydra.job.env_set sets, the
    logging handlers Hydra's config replaces) are as they were after it: the next call, and the
    notebook's own torch code, start from them."""
    from dlbench import launch
    from dlbench.commands.runs import resume_overrides
    from dlbench.config_store import new_run_id

    if named:  # (keyword arguments: Python's own TypeError)
        text = " ".join(f"{key}={value}" for key, value in named.items())
        raise DlbenchError(f"dlbench.train() takes overrides as text: dlbench.train({text!r})")
    from dlbench.engine.device import rng_state, set_rng_state

    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    benchmark, generators = torch.backends.cudnn.benchmark, rng_state()
    environment = dict(os.environ)
    os.environ["DLBENCH_RUN_ID"] = new_run_id()  # the checks and the run name the same folder
    plugin_loader.end_only_named()  # (a limit left by a helper called on its own is not this call's)
    try:
        given = words(overrides)
        overrides = resume_overrides(given, plugin_loader.Call("dlbench.train", given))
        checked, _, hydra_node = preflight.check_command(overrides, "dlbench.train()", mode="run")
        if len(checked) > 1:
            raise DlbenchError(
                "dlbench.train() trains one run; a sweep is the command line's: dlbench -m ..."
            )
        if checked[0].trainer.devices > 1 or checked[0].trainer.nodes > 1:
            raise DlbenchError("trainer.devices > 1 runs several processes: start it from the command line")
        task_overrides = list(hydra_node.hydra.overrides.task)
        metrics = launch.run_once(checked[0], hydra_node, task_overrides, raise_errors=True) or {}
        return Run(Path(str(hydra_node.hydra.run.dir)).absolute(), dict(metrics))
    finally:
        plugin_loader.end_only_named()  # (a resume's limit on plugins ends with it)
        os.environ.clear()
        os.environ.update(environment)  # (DLBENCH_RUN_ID, env_set's variables: as they were)
        torch.set_num_threads(threads)  # (trainer.threads=1 kept later runs' auto at one)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.backends.cudnn.benchmark = benchmark
        set_rng_state(generators)  # (seeded by the run: the notebook's torch.rand drew the same each time)


def load_model(run: str | Path, plugins: list[str] | None = None) -> torch.nn.Module:
    """The trained model of a run folder (its checkpoints/last.pt: checkpoint.find), a
    checkpoint file, or a file `dlbench export` wrote, rebuilt and in eval mode. `plugins`:
    the modules the run needs (dlbench imports none because a saved run names it)."""
    from dlbench.build import task_from_checkpoint
    from dlbench.engine import checkpoint

    if plugins is not None and not (
        isinstance(plugins, (list, tuple)) and all(isinstance(p, str) for p in plugins)
    ):  # (a string's letters are no modules: 'my_net' is not [m, y, _, ...])
        like = f" (plugins=[{plugins!r}])" if isinstance(plugins, str) else ""
        raise DlbenchError(
            f"load_model(plugins=...) takes a list of module names or .py files{like}, not {plugins!r}"
        )
    plugin_loader.load_entry_points()
    plugin_loader.load(list(plugins or []), "load_model(plugins=...)")
    path = Path(a_path(run, "load_model")).expanduser()
    if path.is_file() and path.with_suffix(".yaml").is_file() and not _is_checkpoint(path):
        return load_exported(path)
    state = checkpoint.load(path)
    plugin_loader.check_saved(state.get("plugins"), str(run), f"dlbench.load_model({str(run)!r}, plugins=")
    task, _, _ = task_from_checkpoint(state, str(run))
    return task.model.eval()


def a_path(value: object, function: str) -> str | Path:
    """A folder or file named as text or a path-like object (None, 5 or bytes were pathlib's
    TypeError)."""
    if isinstance(value, Run):  # (what train() returned)
        value = value.folder
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value:
        raise DlbenchError(f"dlbench.{function}() takes a folder or file as a str or Path, not {value!r}")
    return value


def _is_checkpoint(path: Path) -> bool:
    from dlbench.engine import checkpoint

    try:
        return "task" in checkpoint.load(path)
    except DlbenchError:
        return False


# what the .yaml `dlbench export` writes holds: each key, and the type of its value
SPEC = {"model": dict, "data": dict, "plugins": list, "from": str, "format": str}


def exported_spec(spec: object) -> bool:
    """Whether `spec` is what `dlbench export` writes: its keys (model and data, at least) and
    their types, and a model node with a name."""
    return (
        isinstance(spec, dict)
        and {"model", "data"} <= spec.keys()
        and all(key in SPEC and isinstance(value, SPEC[key]) for key, value in spec.items())
        and isinstance(spec["model"].get("name"), str)
    )


def load_exported(path: Path) -> torch.nn.Module:
    """A model `dlbench export` wrote: model.pt (a plain state_dict) or model.safetensors,
    beside model.yaml."""
    from dlbench.data.info import DataInfo
    from dlbench.files import read_yaml
    from dlbench.registry import MODELS

    spec = read_yaml(path.with_suffix(".yaml"))
    if not exported_spec(spec):
        raise DlbenchError(
            f"{path.with_suffix('.yaml')} is not a file dlbench export wrote: that holds model (a config "
            "node with a name), data (the data facts), and plugins (a list), from and format (text)"
        )
    plugin_loader.check_saved(spec.get("plugins"), str(path), f"dlbench.load_model({str(path)!r}, plugins=")
    from dlbench.build import built_to_fit
    from dlbench.engine.checkpoint import EXPORT_READERS, check_declared_sizes, refused

    if path.suffix.lower() == ".yaml":
        raise DlbenchError(f"{path} describes an export: name the model file beside it")
    if (kind := spec.get("format")) in EXPORT_READERS:  # (torch.load said they "could run code")
        raise DlbenchError(
            f"{path} is a --format {kind} export, which {EXPORT_READERS[kind]}(...) reads; load_model "
            "rebuilds the model of a run, a checkpoint, or a .pt or .safetensors export"
        )

    check_declared_sizes(path)
    try:
        if path.suffix.lower() == ".safetensors":  # (read without pickle)
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise refused(path) from err
    except Exception as err:  # (a file cut short or damaged)
        raise DlbenchError(f"Could not read {path}: {errors.first_line(err)}") from err
    if not (isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())):
        raise DlbenchError(f"{path} holds no model weights (a state_dict: names and tensors)")
    facts = DataInfo.from_dict(spec["data"])
    what = f"{path} does not fit the model {path.with_suffix('.yaml')} describes"
    try:
        model = built_to_fit(lambda _: MODELS.build(spec["model"], "model", facts=facts), state, what)
    except (TypeError, ValueError, KeyError, AttributeError, IndexError) as err:  # (the .yaml is data)
        raise DlbenchError(f"{what}: {errors.first_line(err)}") from err
    return model.eval()
