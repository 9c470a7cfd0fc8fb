"""The lecture notes' own LeNet-5 loop (seed 001) against `dlbench experiment=lenet5_mnist`.

The seed's loop, as the notes write it: torchvision's MNIST dataset with a per-sample
Resize((32, 32)) + ToTensor transform, DataLoader(batch_size=32, shuffle=True), SGD lr 0.001,
`loss.item()` and `.sum().item()` every step. dlbench trains the same architecture with the same
settings on the same idx files (generated here, so it runs offline; MNIST-shaped, readable
classes), decoding and resizing them once.

    python benchmarks/seed_loop.py [--train 12000] [--test 2000] [--epochs 2]

Prints each side's training time per epoch, their ratio and each side's test accuracy after
the same number of epochs. Target (issue 8): dlbench >= 1.5x faster per epoch, accuracy
within one percentage point.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the idx writer of the tests
from formats import write_mnist  # noqa: E402

from dlbench import compose  # noqa: E402
from dlbench.training import train as dlbench_train  # noqa: E402


class LeNet5(nn.Module):  # the notes' class
    def __init__(self, n_classes):
        super().__init__()
        self.feature_extractor = nn.Sequential(
            nn.Conv2d(in_channels=1, out_channels=6, kernel_size=5, stride=1),
            nn.Tanh(),
            nn.AvgPool2d(kernel_size=2, stride=2),
            nn.Conv2d(in_channels=6, out_channels=16, kernel_size=5, stride=1),
            nn.Tanh(),
            nn.AvgPool2d(kernel_size=2, stride=2),
            nn.Conv2d(in_channels=16, out_channels=120, kernel_size=5, stride=1),
            nn.Tanh(),
        )
        self.classifier = nn.Sequential(
            nn.Linear(in_features=120, out_features=84),
            nn.Tanh(),
            nn.Linear(in_features=84, out_features=n_classes),
        )

    def forward(self, x):
        x = self.feature_extractor(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


def train(train_loader, model, criterion, optimizer):  # the notes' train()
    model.train()
    train_loss = 0
    correct = 0
    for X, y_true in train_loader:
        optimizer.zero_grad()
        y_hat = model(X)
        loss = criterion(y_hat, y_true)
        train_loss += loss.item()
        pred = y_hat.argmax(dim=1, keepdim=True)
        correct += pred.eq(y_true.view_as(pred)).sum().item()
        loss.backward()
        optimizer.step()
    return model, optimizer, train_loss / len(train_loader.dataset), correct / len(train_loader.dataset)


@torch.no_grad()
def test(test_loader, model, criterion):  # the notes' test()
    model.eval()
    correct = 0
    for X, y_true in test_loader:
        pred = model(X).argmax(dim=1, keepdim=True)
        correct += pred.eq(y_true.view_as(pred)).sum().item()
    return correct / len(test_loader.dataset)


def seed_run(root: Path, epochs: int) -> tuple[float, float]:
    """The seed's loop; returns (best training time per epoch, final test accuracy)."""
    trans = transforms.Compose([transforms.Resize((32, 32)), transforms.ToTensor()])
    train_dataset = datasets.MNIST(root=str(root), train=True, transform=trans, download=False)
    test_dataset = datasets.MNIST(root=str(root), train=False, transform=trans)
    train_loader = DataLoader(dataset=train_dataset, batch_size=32, shuffle=True)
    test_loader = DataLoader(dataset=test_dataset, batch_size=32, shuffle=False)
    torch.manual_seed(0)
    model = LeNet5(10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001)
    criterion = nn.CrossEntropyLoss()
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        model, optimizer, _, _ = train(train_loader, model, criterion, optimizer)
        times.append(time.perf_counter() - start)
    return min(times), test(test_loader, model, criterion)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=12000)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="dlbench-seed-"))
    write_mnist(root, n_train=args.train, n_test=args.test)

    seed_epoch, seed_acc = seed_run(root, args.epochs)
    overrides = [
        "experiment=lenet5_mnist",
        f"dataset.root={root}",
        "dataset.download=false",
        "dataset.val_fraction=0",  # the seed trains on every training image
        f"trainer.epochs={args.epochs}",
        "trainer.monitor=train/loss",
        "trainer.progress=none",
        "device=cpu",
    ]
    with contextlib.redirect_stdout(io.StringIO()):  # dlbench's own tables
        metrics = dlbench_train(compose.compose_config(overrides), root / "run")
    ours = metrics["time/epoch_s"]
    print(
        f"LeNet-5, {args.train} images, {args.epochs} epochs, {torch.get_num_threads()} threads, cpu: "
        f"seed loop {seed_epoch:.3f} s/epoch (test acc {seed_acc:.4f}), dlbench {ours:.3f} s/epoch "
        f"(test acc {metrics['test/acc']:.4f}); dlbench is {seed_epoch / ours:.2f}x faster (target >= 1.5)"
    )


if __name__ == "__main__":
    main()
