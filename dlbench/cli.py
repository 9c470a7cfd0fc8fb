"""dlbench's command line: argv -> subcommand (train is the default), each in dlbench/commands/."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import traceback
import warnings
from collections.abc import Callable

from dlbench import errors
from dlbench.engine.logging import console, print_error
from dlbench.errors import DlbenchError, StopRequested

USAGE = """\
  dlbench [OVERRIDES...]                 train (the default command)
  dlbench -m KEY=A,B [KEY2=C,D ...]      a sweep: one job per combination, then a summary
  dlbench list [KIND] [PATTERN]          registered components and experiments
  dlbench show [OVERRIDES...] [--depth N]  the model: layers, output shapes, params, MACs, memory
  dlbench compare DIR... [--sort METRIC] [--csv F] [--md F] [--plot METRIC]  runs side by side
  dlbench report RUN|SWEEP [--out report.html]  one self-contained HTML page: metrics, curves, pictures
  dlbench lr-find [OVERRIDES...] [--steps N] [--min-lr X] [--max-lr X] [--out DIR]  the lr range test
  dlbench eval RUN [OVERRIDES...]        a saved model's metrics on the test split
  dlbench predict RUN INPUT... [--top-k K]  classify images or names, or translate, with a saved model
  dlbench predict RUN [IMAGE...] [--num N] [--out PATH]  GAN samples, or translated images
  dlbench export RUN --out model.pt|.safetensors|.onnx|.pt2  the model for other tools (+ its .yaml)
  dlbench new experiment NAME [--from PRESET] | new model NAME   start your own (./configs, a plugin)
  dlbench board [DIR] [--port N]         TensorBoard on the runs under DIR (outputs), named by overrides
  dlbench completion bash                shell completion: eval "$(dlbench completion bash)"
  dlbench --help | --hydra-help | --cfg job [OVERRIDES...]
  RUN: a run's folder (its checkpoints/last.pt), outputs/NAME (its newest run), or a .pt file
"""

EXAMPLES = """\
  dlbench                                          the default: an MLP on scikit-learn's digits, CPU
  dlbench model=linear optimizer=sgd optimizer.lr=0.1
  dlbench experiment=lenet5_mnist trainer.epochs=15
  dlbench -m optimizer.lr=0.1,0.01 model=mlp,linear
  dlbench -m experiment=optimizers                 a lesson sweep (also lr_schedulers, norms, ...)
  dlbench compare outputs/multirun/* --sort test/acc   every sweep's jobs, best first
  dlbench resume=outputs/digits_mlp trainer.epochs=20   the newest digits_mlp run, on to epoch 20
  dlbench lr-find experiment=digits_mlp            suggest an lr (a loss-against-lr plot too)
  dlbench list models
  dlbench list models resnet                       its keys: defaults, types, meaning
  dlbench list experiments mnist                   the presets with mnist in their name
  dlbench 'plugins=[my_models]' model=tiny_net     your own model (docs/extending.md)
  dlbench show experiment=resnet_cifar10
  dlbench show model=resnet model.depth=50 model.stem=imagenet model.num_outputs=1000
  dlbench eval outputs/cnn_mnist dataset=fashion_mnist   the newest cnn_mnist run, on other data
  dlbench predict outputs/cnn_mnist my_digit.png --top-k 3
  dlbench predict outputs/name2lang_rnn Choi Jane Daniel Chow Tanaka --top-k 5
  dlbench --cfg job model=linear                   print the composed config, train nothing
  dlbench board                                    TensorBoard on ./outputs, runs named by their overrides
"""

COMMON = """\
  device=cpu|cuda|mps|auto   trainer.epochs=N  trainer.max_steps=N  trainer.seed=N
  trainer.precision=32|bf16|16|auto  trainer.channels_last=true  trainer.compile=true
  trainer.grad_clip=X  trainer.grad_clip_mode=norm|value  trainer.patience=N  trainer.monitor=val/acc
  trainer.accumulate=K  trainer.ema=0.999  trainer.swa_start=EPOCH  trainer.profile=N
  dataset.mixup=0.2  dataset.cutmix=1.0
  dataset.batch_size=N  dataset.num_workers=N  dataset.val_fraction=F  optimizer.lr=X
  trainer.devices=N (DDP)  trainer.checkpoint_every_n_steps=N  trainer.nonfinite=stop|skip|off
  dataset.in_memory=auto|true|false  -m hydra/launcher=slurm|joblib
"""


def print_help() -> None:
    """dlbench --help: the usage, examples, common overrides and every config group's options.
    The text is printed as written (its brackets are part of the commands), headings styled."""
    from rich.text import Text

    from dlbench import compose

    console.print(Text.assemble(("dlbench", "bold"), ": config-driven deep-learning training\n"))
    for heading, body in (("Usage", USAGE), ("Examples", EXAMPLES), ("Common overrides", COMMON)):
        console.print(Text(heading, style="bold"))
        console.print_lines(body, soft_wrap=True)
    console.print(Text.assemble(("Config groups", "bold"), " (choose one option with GROUP=OPTION)"))
    groups = compose.groups()
    width = max(map(len, groups)) + 1
    for group, options in groups.items():
        console.print(f"  {group:<{width}} {', '.join(options)}", soft_wrap=True)


OWN_HELP = ("train", "lr-find")  # (their --help: dlbench's own, as `dlbench --help`, and argparse's)


def without_spaced_equals(words: list[str]) -> list[str] | None:
    """The command line with `trainer.epochs = 3`, `trainer.epochs= 3` or `model =mlp` written
    as one word each, if it holds any; else None."""
    out: list[str] = []
    i = 0
    while i < len(words):
        word, following = words[i], words[i + 1] if i + 1 < len(words) else None
        key_before = bool(out) and "=" not in out[-1] and not out[-1].startswith("-")  # (a KEY alone)
        if word == "=" and key_before and following is not None and "=" not in following:
            out[-1], i = f"{out[-1]}={following}", i + 2
        elif word.startswith("=") and word != "=" and key_before:
            out[-1], i = out[-1] + word, i + 1
        elif (
            word.endswith("=")
            and word.count("=") == 1
            and following
            and not following.startswith("-")
            and ("=" not in following)
        ):
            out.append(word + following)
            i += 2
        else:
            out.append(word)
            i += 1
    return out if out != words else None


def without_spaced_commas(words: list[str]) -> list[str] | None:
    """The command line with `optimizer.lr=0.1, 0.01` (a sweep's values, a space after a comma)
    written as one word, if it holds any; else None."""
    out: list[str] = []
    for word in words:
        if out and out[-1].endswith(",") and "=" in out[-1] and "=" not in word and not word.startswith("-"):
            out[-1] += word
        else:
            out.append(word)
    return out if out != words else None


def subcommand_usage(name: str) -> str:
    """`dlbench NAME --help`: its lines of the usage, and where the docs say more."""
    lines = [line for line in USAGE.splitlines() if line.startswith(f"  dlbench {name} ")]
    examples = [line for line in EXAMPLES.splitlines() if line.startswith(f"  dlbench {name} ")]
    return "\n".join(["Usage", *lines, *(["Examples", *examples] if examples else [])])


def command(name: str) -> Callable[[list[str]], int]:
    """A subcommand's function, imported when it is used."""
    import importlib

    module, function = COMMANDS[name]
    return getattr(importlib.import_module(module), function)


COMMANDS = {
    "train": ("dlbench.commands.train", "train_command"),
    "eval": ("dlbench.commands.evaluate", "eval_command"),
    "predict": ("dlbench.commands.predict", "predict_command"),
    "list": ("dlbench.commands.listing", "list_command"),
    "show": ("dlbench.show", "show_command"),
    "compare": ("dlbench.commands.compare", "compare_command"),
    "export": ("dlbench.commands.export", "export_command"),
    "new": ("dlbench.commands.new", "new_command"),
    "board": ("dlbench.commands.board", "board_command"),
    "completion": ("dlbench.commands.completion", "completion_command"),
    "lr-find": ("dlbench.commands.lr_find", "lr_find_command"),
    "report": ("dlbench.commands.report", "report_command"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # a log line that cannot be written (a full disk) is dropped without a traceback; the
    # run's next checkpoint or TensorBoard write stops it with one message
    logging.raiseExceptions = False
    end_only_named()
    try:
        if argv[:1] == ["help"] and argv[1:2]:  # `help list`: as `list --help`
            if argv[1] not in COMMANDS:
                raise DlbenchError(
                    f"dlbench help {argv[1]}: '{argv[1]}' is not a command."
                    f"{errors.did_you_mean(argv[1], COMMANDS)}",
                    f"Commands: {', '.join(COMMANDS)} (dlbench --help)",
                )
            argv = [argv[1], "--help"]
        if argv[:1] in (["-h"], ["--help"]):
            print_help()
            return 0
        if "--version" in argv and (not argv or argv[0] not in COMMANDS):  # (where Hydra's would answer)
            from importlib.metadata import version

            console.print(f"dlbench {version('dlbench')} (Hydra {version('hydra-core')})")
            return 0
        if argv[:1] == ["train"] and {"-h", "--help"} & set(argv[1:]):  # (Hydra's listed internal configs)
            print_help()
            return 0
        if argv and argv[0] in COMMANDS and argv[0] != "train" and {"-h", "--help"} & set(argv[1:]):
            if argv[0] in OWN_HELP:  # (wherever --help is: its own help)
                return command(argv[0])(["--help"])
            console.print_lines(subcommand_usage(argv[0]), soft_wrap=True)
            return 0
        overriding = not argv or argv[0] not in COMMANDS or argv[0] in ("train", "lr-find", "eval", "show")
        if overriding and (joined := without_spaced_equals(argv)) is not None:  # (Hydra's grammar error)
            from dlbench import terminal

            raise DlbenchError(
                f"A setting is one word, KEY=VALUE, without spaces around the =: {terminal.command(*joined)}"
            )
        if overriding and (joined := without_spaced_commas(argv)) is not None:
            from dlbench import terminal

            raise DlbenchError(
                f"A sweep's values are one word, KEY=a,b,c, without spaces after the commas: "
                f"{terminal.command(*joined)}"
            )
        if argv and argv[0] in COMMANDS:
            if argv[0] != "train":
                refuse_config_dir(argv[0], argv[1:])
            return command(argv[0])(argv[1:])
        if argv[:1] == ["help"]:
            print_help()
            return 0
        if argv and argv[0].isidentifier():  # a word that is neither a command nor KEY=VALUE
            from dlbench.compose import groups

            if (options := groups().get(argv[0])) is not None:
                raise DlbenchError(f"'{argv[0]}' is a config group: choose an option, {argv[0]}=OPTION",
                                   f"Its options: {', '.join(options)}")  # fmt: skip
            closest = " Did you mean: dlbench --version" if argv[0] == "version" else bare_option(argv)
            if closest is None and len(argv) > 1 and "=" not in argv[1] and not argv[1].startswith("-"):
                from dlbench import terminal
                from dlbench.compose import key_named  # (`dlbench resume outputs/x`: a setting and its value)

                if (key := key_named(argv[0])) is not None:
                    closest = f" Did you mean: {terminal.command(setting(key, argv[1]), *argv[2:])}"
            raise DlbenchError(
                f"'{argv[0]}' is not a command, nor a setting (KEY=VALUE, GROUP=OPTION)."
                f"{closest or errors.did_you_mean(argv[0], COMMANDS, rough=False)}",
                f"Commands: {', '.join(COMMANDS)} (dlbench --help)",
            )
        return command("train")(argv)
    except KeyboardInterrupt:
        print_error("interrupted")
        return 130
    except StopRequested as stop:
        return stopped_outside_a_run(stop)
    except Exception as err:
        user_error = errors.as_user_error(err)
        if isinstance(user_error, DlbenchError):
            print_error(*user_error.lines)
            return 2
        # a bug, not a user error: say so, keep the traceback for DLBENCH_DEBUG
        if os.environ.get("DLBENCH_DEBUG"):
            traceback.print_exc()
        print_error(f"unexpected error (set DLBENCH_DEBUG=1 for the traceback): {errors.first_line(err)}")
        return 1
    finally:
        end_only_named()


READ_CONFIGS = ("eval", "predict", "export", "list", "show", "lr-find", "new")  # (compose or read presets)


def refuse_config_dir(name: str, args: list[str]) -> None:
    """--config-dir is training's flag (Hydra's); the other commands read the config folders of
    DLBENCH_CONFIG_PATH and ./configs. Said, with the command that names the folder that way
    where it pastes (a folder given, whose name holds no os.pathsep). Words after `--`, or an
    option's value (`new ... --from -cd`), are not flags."""
    from dlbench import terminal
    from dlbench.searchpath import ENV

    for i, arg in enumerate(args):
        if arg == "--":
            return
        flag, equals, folder = arg.partition("=")
        after_option = i > 0 and args[i - 1].startswith("-") and "=" not in args[i - 1]
        if flag not in ("--config-dir", "-cd") or after_option:
            continue
        if name not in READ_CONFIGS:
            raise DlbenchError(f"dlbench {name} reads no config folder: leave out {flag}")
        if not equals:
            folder = args[i + 1] if i + 1 < len(args) else ""
        said = f"dlbench {name} takes no {flag}: it reads the config folders of {ENV} (and ./configs)"
        if not folder or os.pathsep in folder:
            raise DlbenchError(f"{said}: set {ENV} to your config folder before the command")
        rest = [a for j, a in enumerate(args) if j != i and (equals or j != i + 1)]
        folders = os.pathsep.join(f for f in (folder, os.environ.get(ENV)) if f)  # (yours first)
        raise DlbenchError(
            f"{said}. Name yours there: {ENV}={terminal.shell_word(folders)} {terminal.command(name, *rest)}"
        )


def stopped_outside_a_run(stop: StopRequested) -> int:
    """A stop signal while no run was being built or trained: said, and its exit status."""
    name = signal.Signals(stop.signum).name
    if os.environ.get("RANK", "0") == "0":  # (torchrun's other processes: the first one speaks)
        print_error(f"stopped by {name} while no run was in progress: nothing was left half written")
    return 128 + stop.signum


def end_only_named() -> None:
    """A saved run's limit on plugins (plugins.only_named) is its command's alone."""
    if (loader := sys.modules.get("dlbench.plugins")) is not None:  # (imported only where used)
        loader.end_only_named()


def stop_outside_a_run(signum: int, frame) -> None:
    """SIGTERM, SIGUSR1, SIGUSR2 from the command's start: a clean exit, not the default
    death by signal (a run, once it is being built, catches them itself: engine/signals.StopSignals,
    which puts this handler back afterwards, and never hands a signal on to it)."""
    raise StopRequested(signum)


stop_outside_a_run.dlbench_own = True  # cluster.hand_on: not a handler to hand a signal on to


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Python's warnings (a library's, quoting a file it read), printed as text."""
    from dlbench import terminal

    terminal.write(warnings.formatwarning(message, category, filename, lineno, line), stderr=True)


def entrypoint() -> None:
    warnings.showwarning = show_warning
    from dlbench.engine.signals import STOP_SIGNALS

    for stop_signal in STOP_SIGNALS:
        signal.signal(stop_signal, stop_outside_a_run)
    try:
        status = main()
    except SystemExit as stop:  # a run's exit status (75: stopped by a signal, with last.pt)
        status = stop.code
    except StopRequested as stop:  # (a signal in main's first lines, before its own `try`)
        status = stopped_outside_a_run(stop)
    for stop_signal in STOP_SIGNALS:  # the command is over: a signal now (torchrun ending the other
        signal.signal(stop_signal, signal.SIG_DFL)  # workers of a failed run) ends it as by default,
    # rather than raise StopRequested inside an atexit callback (a traceback, "Exception ignored")
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if "torch" in sys.modules and isinstance(status, int) and not others:
        exit_without_teardown(status)
    sys.exit(status)  # (a worker pool's threads are left to Python's own shutdown)


def exit_without_teardown(status: int) -> None:
    """Exit as Python does (atexit handlers run: logging's flush, multiprocessing's children;
    streams flushed), but skip the interpreter's teardown of every module: once torch and
    torch._dynamo are imported (every run: an optimizer imports it), that teardown alone took
    1.4 s of `dlbench`'s wall time (0.6 s after `import torch` alone), for nothing a finished
    command needs."""
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (dlbench list | head)
            pass
    os._exit(status)


def bare_option(argv: list[str]) -> str | None:
    """' Did you mean: COMMAND' (no question mark: pasted, it was a glob) for a bare word that
    names what a setting or a command would: an option of a group (`dlbench iris_mlp`:
    experiment=iris_mlp), a kind to list (`dlbench models`: dlbench list models). None for any
    other word."""
    from dlbench import terminal
    from dlbench.commands.listing import KINDS
    from dlbench.compose import groups

    word, rest = argv[0], argv[1:]
    if word in KINDS:
        return f" Did you mean: {terminal.command('list', word)}"
    named = [
        terminal.command(f"{group}={word}", *rest) for group, options in groups().items() if word in options
    ]
    return f" Did you mean: {' or '.join(named)}" if named else None


def setting(key: str, value: str) -> str:
    """`key=value` as typed where Hydra reads it as one value (`trainer.epochs=3`), else in
    quotes, as text (`name "it's"`, `name a,b`: a quote, a sweep)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from dlbench import terminal

    try:  # (`${` in it: text, escaped; as typed, the command read an interpolation in its place)
        if (
            "${" not in value
            and not OverridesParser.create().parse_override(f"{key}={value}").is_sweep_override()
        ):
            return f"{key}={value}"
    except Exception:  # noqa: BLE001 (Hydra's grammar cannot read it as it is)
        pass
    return terminal.override(key, value)
