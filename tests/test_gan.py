"""GANs: losses, architectures that follow the image size, the paired/unpaired data, exact
resume of every network and optimizer, images in TensorBoard, the judge, predict."""

import pytest
import torch
from browser import open_page
from conftest import read_metrics
from formats import write_unpaired, zip_folder
from PIL import Image

from dlbench import compose
from dlbench.build import build_data
from dlbench.engine import checkpoint
from dlbench.errors import DlbenchError
from dlbench.registry import MODELS
from dlbench.tasks.gan import GANTask, d_loss, g_loss
from dlbench.tasks.image_to_image import ImagePool
from dlbench.training import train

QUIET = ["trainer.progress=none", "device=cpu"]
SMALL = {  # tiny versions of each preset, for the tests
    "gan_mnist": ["model.g_hidden=[32]", "model.d_hidden=[32]"],
    "cgan_mnist": [],
    "dcgan_cifar10": ["model.width=8"],
    "pix2pix_facades": ["dataset.image_size=[32,32]", "model.width=8", "dataset.batch_size=2"],
    "cyclegan_horse2zebra": [
        "dataset.image_size=[32,32]",
        "model.width=8",
        "model.blocks=1",
        "dataset.batch_size=2",
    ],
}


@pytest.fixture
def root(data_root):
    return data_root


def preset(name, root, *extra):
    data = [f"dataset.root={root}", "dataset.download=false"]
    return [f"experiment={name}", *data, *SMALL[name], *extra]


def test_adversarial_losses_on_known_logits():
    zero = torch.zeros(4, 1)
    assert d_loss("vanilla", zero, zero) == pytest.approx(torch.log(torch.tensor(2.0)).item())
    assert g_loss("vanilla", zero) == pytest.approx(0.6931, abs=1e-4)
    assert d_loss("lsgan", torch.ones(4, 1), torch.zeros(4, 1)) == 0  # a perfect D
    assert g_loss("lsgan", torch.ones(4, 1)) == 0
    assert d_loss("hinge", torch.full((4, 1), 2.0), torch.full((4, 1), -2.0)) == 0
    assert g_loss("hinge", torch.full((4, 1), 3.0)) == -3


@pytest.mark.parametrize("shape, steps", [([1, 28, 28], 2), ([3, 32, 32], 3), ([3, 64, 64], 4)])
def test_dcgan_depth_follows_the_image_size(shape, steps):
    gan = MODELS.build({"name": "dcgan", "input_shape": shape, "width": 8}, "model")
    ups = [m for m in gan.generator.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    downs = [m for m in gan.discriminator.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(ups) == len(downs) == steps
    gan.eval()
    images = gan.generator(torch.randn(2, 100))
    assert list(images.shape) == [2, *shape] and images.abs().max() <= 1
    assert gan.discriminator(images).shape == (2, 1)
    with pytest.raises(DlbenchError, match="4..7 times a power of two"):
        MODELS.build({"name": "dcgan", "input_shape": [3, 30, 30]}, "model")


def test_pix2pix_unet_and_patchgan_shapes():
    gan = MODELS.build({"name": "pix2pix", "input_shape": [3, 256, 256], "width": 8}, "model")
    downs = [m for m in gan.generator.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(downs) == 8  # 256 px down to 1
    drops = [m for m in gan.generator.modules() if isinstance(m, torch.nn.Dropout)]
    assert len(drops) == 3  # the 2, 4 and 8 px decoder steps
    out = gan.generator(torch.randn(1, 3, 256, 256))
    assert out.shape == (1, 3, 256, 256)
    assert gan.discriminator(torch.randn(1, 6, 256, 256)).shape == (1, 1, 30, 30)  # 70x70 patches


def test_paired_images_split_direction_and_shared_jitter(root):
    data = [f"dataset.root={root}", "dataset.download=false", "dataset.image_size=[32,32]"]
    cfg = compose.compose_config(["experiment=pix2pix_facades", *data, "dataset.direction=AtoB"])
    data = build_data(cfg)
    assert (data.size("train"), data.size("val"), data.size("test")) == (4, 4, 4)
    a, b = data.splits["test"][0]
    assert a.shape == b.shape == (3, 32, 32) and a.min() >= -1 and a.max() <= 1
    torch.testing.assert_close(b, -a, atol=0.02, rtol=0)  # B is A's negative: A is the left half
    # the data facts (export's YAML) say what the images were made: x * 2 - 1 (they said null)
    assert data.info.normalization == [[0.5] * 3, [0.5] * 3]
    a, b = data.splits["train"][0]  # jittered: the same crop and flip for both
    torch.testing.assert_close(b, -a, atol=0.05, rtol=0)


def test_unpaired_images_download_from_a_local_server(tmp_path, http_server):
    served, url = http_server
    zip_folder(write_unpaired(tmp_path / "src", "apple2orange"), served / "apple2orange.zip", ".")
    cfg = compose.compose_config(["experiment=cyclegan_horse2zebra", f"dataset.root={tmp_path / 'r'}",
                                    "dataset.archive=apple2orange", f"dataset.url={url}",
                                    "dataset.image_size=[32,32]"])  # fmt: skip
    data = build_data(cfg)
    assert data.size("test") == 4 and data.info.normalization == [[0.5] * 3, [0.5] * 3]
    assert (tmp_path / "r" / "apple2orange" / "trainB").is_dir()


def test_missing_archive_folder_is_one_message(tmp_path):
    cfg = compose.compose_config(
        ["experiment=pix2pix_facades", f"dataset.root={tmp_path}", "dataset.download=false"]
    )
    with pytest.raises(DlbenchError, match="no train/ folder: .* is empty. Expected .*facades/train/"):
        build_data(cfg)


def test_image_pool_state_survives_a_checkpoint():
    pool = ImagePool(3)
    torch.manual_seed(0)
    for _ in range(4):
        pool.query(torch.randn(2, 3, 4, 4))
    copy = ImagePool(3)
    copy.load_state_dict(pool.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(pool.images, copy.images, strict=True))


@pytest.mark.parametrize("name", ["gan_mnist", "cyclegan_horse2zebra"])
def test_resume_restores_every_network_optimizer_and_pool(tmp_path, root, name, caplog):
    common = [*QUIET, *preset(name, root), "trainer.seed=1", "logger=none"]
    train(compose.compose_config([*common, "trainer.epochs=2"]), tmp_path / "full")
    train(compose.compose_config([*common, "trainer.epochs=1"]), tmp_path / "part")
    resume = compose.compose_config([*common, "trainer.epochs=2", f"resume={tmp_path / 'part'}"])
    train(resume, tmp_path / "part")
    assert "resumed at epoch 1" in caplog.text  # it continued, rather than starting again
    full, part = checkpoint.load(tmp_path / "full"), checkpoint.load(tmp_path / "part")
    assert full["task"].keys() == part["task"].keys()
    for key, value in full["task"].items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, part["task"][key]), key
    assert set(full["optimizers"]) == {"generator", "discriminator"}
    for net, state in full["optimizers"].items():
        for i, s in state["state"].items():
            for k, v in s.items():
                assert torch.equal(
                    torch.as_tensor(v), torch.as_tensor(part["optimizers"][net]["state"][i][k])
                ), (net, k)
    if name.startswith("cyclegan"):
        pool, other = (r["task"]["pool_a._extra_state"]["images"] for r in (full, part))
        assert pool and all(torch.equal(a, b) for a, b in zip(pool, other, strict=True))


def tensorboard_tags(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    return set(events.Tags()["images"]), set(events.Tags()["scalars"])


def test_cgan_logs_losses_and_a_grid_per_class_and_predicts_a_png(cli, tmp_path, root, monkeypatch):
    cfg = [*QUIET, *preset("cgan_mnist", root), "trainer.epochs=2", "trainer.log_every_n_steps=1"]
    train(compose.compose_config(cfg), tmp_path / "run")
    images, scalars = tensorboard_tags(tmp_path / "run")
    assert "val/samples" in images
    assert {"train/loss_d_step", "train/loss_g_step", "train/d_real", "train/d_fake"} <= scalars
    result = cli("predict", "run", "--num", "20", "--out", "grid.png")
    assert result.returncode == 0, result.stderr
    with Image.open(tmp_path / "grid.png") as grid:  # 10 per row (one per class), 2 rows of 28 px
        assert grid.size == (10 * 28 + 11 * 2, 2 * 28 + 3 * 2)
    # (eval drew new noise each call: its losses differed in the fourth digit)
    evaluated = [cli("eval", "run", *preset("cgan_mnist", root)) for _ in range(2)]
    losses = [[line for line in e.stdout.splitlines() if "loss" in line] for e in evaluated]
    assert losses[0] and losses[0] == losses[1], evaluated[0].stderr
    ignored = cli("predict", "run", "--top-k", "2")  # (a classifier's option: it was ignored)
    said = " ".join(ignored.stderr.split())
    assert ignored.returncode == 2
    assert "--top-k does nothing for this run (GANTask): it takes --num, --out" in said
    elsewhere = cli("predict", "run", "--out", "nodir/x.png")  # (it made nodir/: compare, export do not)
    assert elsewhere.returncode == 2 and "nodir is no folder here" in elsewhere.stderr
    assert not (tmp_path / "nodir").exists()

    def too_many(self, n=None, labels=None):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(GANTask, "generate", too_many)
    huge = cli("predict", "run", "--num", "100000000", "--out", "huge.png")
    assert huge.returncode == 2 and "drawing 100000000 samples at once: give a smaller --num" in huge.stderr
    assert cli("report", "run", "--out", "gan.html").returncode == 0  # the samples, in the report
    shown, console = open_page(tmp_path / "gan.html")
    pictures = {alt: width for alt, width, _ in shown["images"]}
    assert console == [] and pictures.get("val/samples (step 2)", 0) > 0 and pictures["loss_d"] > 0


def test_pix2pix_triplets_and_translation(cli, tmp_path, root):
    train(
        compose.compose_config([*QUIET, *preset("pix2pix_facades", root), "trainer.epochs=1"]),
        tmp_path / "run",
    )
    assert "val/examples" in tensorboard_tags(tmp_path / "run")[0]
    assert "test/l1" in read_metrics(tmp_path / "run")
    photo = next((root / "facades" / "test").glob("*.png"))
    result = cli("predict", "run", str(photo), "--out", "out")
    assert result.returncode == 0, result.stderr
    with Image.open(tmp_path / "out" / photo.name) as out:
        assert out.size == (32, 32)
    # (a second input of the same name was refused after the first's file was written; a missing
    # one too; --out x.png made a folder x.png)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / photo.name).write_bytes(photo.read_bytes())
    both = cli("predict", "run", str(photo), f"b/{photo.name}", "--out", "two")
    assert both.returncode == 0 and sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(
        [photo.name, f"{photo.stem}-2.png"]
    ), both.stderr
    for words, said in (
        ([str(photo), "nope.png"], "No such file: nope.png"),
        ([str(photo)], "out/" + photo.name + " exists"),
        ([str(photo), "--out", "x.png"], "--out x.png: name a folder for the translated images"),
    ):
        written = sorted(tmp_path.rglob("*"))
        refused = cli("predict", "run", *words, *(["--out", "out"] if "--out" not in words else []))
        assert refused.returncode == 2 and said in refused.stderr, refused.stderr
        assert sorted(tmp_path.rglob("*")) == written


def test_judge_scores_generated_digits(tmp_path, root):
    """A classifier trained on the same data judges the conditional GAN's samples."""
    data = [f"dataset.root={root}", "dataset.download=false", "dataset.normalize=half"]
    judge_cfg = compose.compose_config([*QUIET, "experiment=cnn_mnist", *data, "trainer.epochs=1"])
    train(judge_cfg, tmp_path / "judge")
    runs = compose.compose_config([*QUIET, *preset("cgan_mnist", root), f"task.judge={tmp_path}"])
    with pytest.raises(DlbenchError, match=r"holds runs: name the one that judges.*task\.judge=/.*/judge\)"):
        train(runs, tmp_path / "gan")  # (a folder of runs: the run would not record which judged)
    cfg = compose.compose_config([*QUIET, *preset("cgan_mnist", root), "trainer.epochs=1",
                                    f"task.judge={tmp_path / 'judge'}", "task.judge_samples=50"])  # fmt: skip
    metrics = train(cfg, tmp_path / "gan")
    assert 1 <= metrics["val/judge_score"] <= 10  # an inception score over 10 classes
    assert 0 <= metrics["val/judge_acc"] <= 1 and 0.1 <= metrics["val/judge_confidence"] <= 1


def test_fid_without_its_weights_is_one_message(tmp_path, root):
    cfg = compose.compose_config([*QUIET, *preset("gan_mnist", root), "task.fid=true"])
    with pytest.raises(DlbenchError, match="task.fid=true needs"):
        train(cfg, tmp_path / "run")
