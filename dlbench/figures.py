"""The pictures the lecture notes draw, as matplotlib figures for TensorBoard: a confusion
matrix (seed 002's name2lang plot), the decision regions of a 2-feature classifier (seed 002's
iris), and activation functions with their derivatives (seed 002's vanishing-gradient lesson)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dlbench.terminal import inert

if TYPE_CHECKING:  # (torch is imported where it is used: `dlbench compare --plot` and `report`
    import torch  # draw curves without it)
    from torch import nn


def new_figure(*grid: int, **options: Any) -> tuple[Any, Any]:
    """A matplotlib Figure and its axes (`fig.subplots(*grid)`), made without pyplot: dlbench's
    pictures go to TensorBoard, and choosing a backend (pyplot's "Agg") would stop a notebook
    that trains with dlbench from showing its own plots."""
    from matplotlib.figure import Figure

    squeeze = options.pop("squeeze", True)
    figure = Figure(**options)
    return figure, figure.subplots(*grid, squeeze=squeeze)


def as_label(name: Any) -> str:
    """A class name as a figure's text: control characters shown (terminal.inert), and no `$`
    read as the start of matplotlib's mathtext (a name like `$\\` would stop the drawing)."""
    return inert(str(name)).replace("$", r"\$")


def curves_figure(curves: list[tuple[str, list[float], list[float]]], metric: str, x_label: str, title: str):
    """Several runs' curves of one metric on one axis, each labelled (the lecture's optimizers,
    schedules and normalisations side by side). The labels (a job's overrides) go below the
    axis, each wrapped to at most three lines, and the figure grows to hold them: a long one
    (a resumed run's `resume=PATH`) inside the axis squeezed the plot to a strip."""
    labels = [legend_label(label) for label, _, _ in curves]
    below = 0.2 * sum(label.count("\n") + 1 for label in labels) if len(curves) > 1 else 0
    figure, ax = new_figure(figsize=(7, 4.5 + below), layout="constrained")
    for (_, xs, ys), label in zip(curves, labels, strict=True):
        ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, label=label)
    # (a title of many shared overrides wrapped, as the labels are: it ran off the figure)
    ax.set(xlabel=x_label, ylabel=as_label(metric), title=legend_label(title, width=80, lines=4))
    if x_label == "epoch":  # (whole epochs: ticks at 1.2, 1.4 said epochs that never were)
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if len(curves) > 1:  # (named: a label that starts with _ is one matplotlib leaves out otherwise)
        figure.legend(ax.get_lines(), labels, loc="outside lower center", fontsize="small")
    return figure


def legend_label(label: str, width: int = 60, lines: int = 3) -> str:
    """A curve's label in the legend: wrapped at `width` characters, cut after `lines` lines
    (as_label line by line: a `\\$` split over two lines would start mathtext)."""
    import textwrap

    wrapped = textwrap.wrap(inert(str(label)), width) or ["(run)"]
    if len(wrapped) > lines:
        wrapped = [*wrapped[: lines - 1], wrapped[lines - 1][: width - 1] + "…"]
    return "\n".join(map(as_label, wrapped))


def confusion_figure(matrix: torch.Tensor, names: list[str], normalize: bool, title: str) -> Any:
    """Rows are the true classes, columns the predicted ones. normalize: each row divided by its
    count, so a cell is the share of a class predicted as another (sklearn's normalize='true').
    The figure grows with the number of classes, so each label stays readable; cells are
    written in up to 30 classes, labels in up to 120 (beyond, the classes are numbered)."""
    counts = matrix.detach().cpu().double()
    values = counts / counts.sum(dim=1, keepdim=True).clamp(min=1) if normalize else counts
    n = len(names)
    inches = min(max(5.0, (0.45 if n <= 40 else 0.2) * n + 2.5), 24.0)  # room for each label
    # (constrained layout is worked out while the figure is drawn: tight_layout drew it twice)
    fig, ax = new_figure(figsize=(inches, inches), dpi=100, layout="constrained")
    image = ax.imshow(values.numpy(), cmap="Blues", vmin=0, vmax=1 if normalize else None)
    font = 9 if n <= 40 else 6
    if n <= 120:
        labels = [as_label(x) for x in names]
        ax.set_xticks(range(n), labels, rotation=90, fontsize=font)
        ax.set_yticks(range(n), labels, fontsize=font)
    ax.set_xlabel("Predicted label")
    ax.set_ylabel("True label")
    ax.set_title(title)
    if n <= 30:
        high = float(values.max()) or 1.0
        for i in range(n):
            for j in range(n):
                value = float(values[i, j])
                text = f"{value:.2f}" if normalize else f"{int(value)}"
                color = "white" if value > 0.6 * high else "black"
                # (inside the image: left out of the layout, which would measure each one)
                size = max(5, font - 2)
                ax.text(j, i, text, ha="center", va="center", fontsize=size, color=color, in_layout=False)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return fig


def decision_regions_figure(
    predict: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    names: list[str],
    title: str,
    steps: int = 300,
) -> Any:
    """Seed 002's iris picture: the class `predict` gives each point of a grid over the first two
    features (1 beyond the data on each side), and the samples coloured by their true class with
    an edge of the predicted one. Other features, if any, are held at their mean."""
    import matplotlib
    import torch
    from matplotlib.colors import ListedColormap

    x, y = x.detach().float().cpu(), y.detach().cpu()
    low, high = x[:, :2].min(dim=0).values - 1, x[:, :2].max(dim=0).values + 1
    gx, gy = (torch.linspace(float(low[i]), float(high[i]), steps) for i in range(2))
    xx, yy = torch.meshgrid(gx, gy, indexing="xy")
    grid = x.mean(dim=0).repeat(steps * steps, 1)
    grid[:, 0], grid[:, 1] = xx.flatten(), yy.flatten()
    regions = predict(grid).cpu().reshape(steps, steps)
    predicted = predict(x).cpu()

    colors = matplotlib.colormaps["tab10" if len(names) <= 10 else "tab20"].colors[: len(names)]
    fig, ax = new_figure(figsize=(6, 5), dpi=100)
    levels = torch.arange(len(names) + 1) - 0.5  # one colour band per class
    ax.contourf(xx, yy, regions, levels=levels, cmap=ListedColormap(colors), alpha=0.2)
    ax.scatter(
        x[:, 0],
        x[:, 1],
        c=[colors[int(i)] for i in y],
        edgecolors=[colors[int(i)] for i in predicted],
        linewidths=1.5,
    )
    for i, name in enumerate(names):
        ax.scatter([], [], color=colors[i], label=as_label(name))
    ax.legend(loc="upper right", fontsize=8)
    extra = " (other features at their mean)" if x.shape[1] > 2 else ""
    ax.set_xlabel("feature 0")
    ax.set_ylabel("feature 1" + extra)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def activation_figure(module: nn.Module, name: str) -> Any:
    """Seed 002's two pictures of an activation function φ: φ(x) and φ'(x) on [-10, 10] (by
    autograd), and the gradient through 1 to 4 layers of it, d/dx φ(φ(...φ(x))), which is the
    vanishing-gradient lesson (for sigmoid it shrinks with every layer, for ReLU it does not)."""
    import torch

    module = copy.copy(module)
    if hasattr(module, "inplace"):
        module.inplace = False  # autograd needs its input kept
    x = torch.linspace(-10, 10, 400, requires_grad=True)
    fig, (left, right) = new_figure(1, 2, figsize=(10, 4), dpi=100)
    with torch.enable_grad():
        y = module(x)
        (grad,) = torch.autograd.grad(y.sum(), x)
        left.plot(x.detach(), y.detach(), label="φ(x)")
        left.plot(x.detach(), grad, label="∂φ(x)/∂x")
        out = x
        for layers in range(1, 5):
            out = module(out)
            (grad,) = torch.autograd.grad(out.sum(), x, retain_graph=True)
            right.plot(x.detach(), grad, label=f"{layers}-layer")
    left.set_title(name)
    right.set_title(f"{name}: gradient through 1 to 4 layers")
    right.set_ylim(bottom=0)
    for ax in (left, right):
        ax.grid()
        ax.legend()
    fig.tight_layout()
    return fig


def activations_of(model: nn.Module) -> dict[str, nn.Module]:
    """The model's activation modules, one per kind (LeakyReLU(0.1) and (0.2) are two kinds)."""
    from torch import nn

    kinds = (nn.Sigmoid, nn.Tanh, nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Softplus)
    found: dict[str, nn.Module] = {}
    for module in model.modules():
        if isinstance(module, kinds):
            extra = module.extra_repr().replace("inplace=True", "").strip(", ")
            found.setdefault(f"{type(module).__name__}({extra})" if extra else type(module).__name__, module)
    return found
