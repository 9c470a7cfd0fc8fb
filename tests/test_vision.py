"""The image data sets on tiny files in their official formats; download from 127.0.0.1."""

import numpy as np
import pytest
import torch
from formats import draw_digit_png, idx_images, tar_gz, write_cifar, write_image_folder, write_mnist

from dlbench.config import DataConfig
from dlbench.data.base import DataModule
from dlbench.errors import DlbenchError
from dlbench.registry import DATASETS


def test_mnist_reads_idx_files(tmp_path):
    write_mnist(tmp_path)
    source = DATASETS.get("mnist")(root=str(tmp_path), download=False, image_size=[32, 32])
    x, y = source.train.tensors
    assert x.shape == (60, 1, 32, 32) and y.tolist()[:3] == [0, 1, 2]
    assert len(source.test) == 20 and source.class_names[0].startswith("0")
    assert abs(float(x.mean())) < 3  # normalised with MNIST's statistics


def test_fashion_mnist_has_its_own_folder(tmp_path):
    write_mnist(tmp_path, folder="FashionMNIST")
    source = DATASETS.get("fashion_mnist")(root=str(tmp_path), download=False)
    assert source.class_names[0] == "T-shirt/top"


@pytest.mark.parametrize("hundred", [False, True])
def test_cifar_reads_pickled_batches(tmp_path, hundred):
    write_cifar(tmp_path, hundred=hundred)
    source = DATASETS.get("cifar100" if hundred else "cifar10")(root=str(tmp_path), download=False)
    x, y = source.train.tensors
    assert x.shape == (100, 3, 32, 32) and x.dtype == torch.float32
    assert source.num_classes == (100 if hundred else 10)
    data = DataModule(source, DataConfig(val_fraction=0.2))
    assert data.size("train") == 80 and data.size("val") == 20 and data.size("test") == 20


def test_missing_root_names_the_path_and_the_files(tmp_path):
    with pytest.raises(DlbenchError) as err:
        DATASETS.get("mnist")(root=str(tmp_path / "nowhere"), download=False)
    message = str(err.value)
    assert str(tmp_path / "nowhere" / "MNIST" / "raw") in message and "train-images-idx3-ubyte" in message
    write_mnist(tmp_path)
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()  # an incomplete copy
    with pytest.raises(DlbenchError, match="t10k-labels-idx1-ubyte"):
        DATASETS.get("mnist")(root=str(tmp_path), download=False)


def test_a_cifar_batch_that_would_run_code_is_refused(tmp_path):
    import pickle

    folder = write_cifar(tmp_path)

    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    (folder / "test_batch").write_bytes(pickle.dumps({"data": Payload()}))
    with pytest.raises(DlbenchError, match="not a valid CIFAR batch"):
        DATASETS.get("cifar10")(root=str(tmp_path), download=False)


IMAGES = np.zeros((4, 3072), dtype=np.uint8)  # four 3x32x32 images, as a batch holds them
NOT_A_BATCH = {  # what the batch holds: what the message says about it
    "a list": ([IMAGES, [0] * 4], "it holds a list, not a dict"),
    "rows of 100": (
        {"data": IMAGES[:, :100], "labels": [0] * 4},
        "its 'data' is a uint8 array of 4 x 100, not a uint8 array of N x 3072",
    ),
    "floats": ({"data": IMAGES / 255, "labels": [0] * 4}, "its 'data' is a float64 array of 4 x 3072, not"),
    "no labels": ({"data": IMAGES}, r"its 'labels' is missing \(its keys: \['data'\]\), not a list"),
    "text labels": ({"data": IMAGES, "labels": ["cat"] * 4}, "its 'labels' list holds 'cat', not a class"),
    "label 10": (
        {"data": IMAGES, "labels": [0, 1, 2, 10]},
        "its 'labels' list holds 10, not a class number 0..9",
    ),
    "3 labels": ({"data": IMAGES, "labels": [0] * 3}, "it has 4 images but 3 labels"),
    "no images": ({"data": IMAGES[:0], "labels": []}, "it holds no images"),  # (a split of none: exit 0)
}


@pytest.mark.parametrize("case", NOT_A_BATCH)
def test_a_cifar_batch_that_is_not_what_cifar_ships_is_one_message_naming_it(tmp_path, case):
    """A batch must be a dict whose `data` is a uint8 array of N x 3072 and whose `labels` a list
    of N class numbers: anything else is named, with its file, when it is read (it was a
    ValueError, KeyError, AttributeError or AssertionError)."""
    import pickle

    batch, problem = NOT_A_BATCH[case]
    folder = write_cifar(tmp_path, per_batch=4)
    # (protocol 2, as CIFAR ships; an empty array's bytes need 3 or more)
    (folder / "data_batch_3").write_bytes(pickle.dumps(batch, protocol=4 if case == "no images" else 2))
    with pytest.raises(DlbenchError, match=rf"data_batch_3 is not a CIFAR batch file: {problem}"):
        DATASETS.get("cifar10")(root=str(tmp_path), download=False)


def test_a_cifar_batch_pickled_with_protocol_5_reads_as_the_same_batch(tmp_path):
    """A batch saved again with pickle's protocol 5 (an array's bytes through numpy's
    _frombuffer) was refused as if it could run code."""
    import pickle

    folder = write_cifar(tmp_path, per_batch=4)
    before = DATASETS.get("cifar10")(root=str(tmp_path), download=False)
    batch = pickle.loads((folder / "data_batch_1").read_bytes(), encoding="latin1")
    (folder / "data_batch_1").write_bytes(pickle.dumps(batch, protocol=5))
    after = DATASETS.get("cifar10")(root=str(tmp_path), download=False)
    assert torch.equal(before.train.tensors[0], after.train.tensors[0])


@pytest.mark.parametrize(
    "split, size, expected",
    [
        pytest.param(
            "t10k",
            20,
            "train-images-idx3-ubyte holds images of 28x28 but t10k-images-idx3-ubyte "
            "holds images of 20x20: the training and test images must be the same size",
            id="test 20x20",
        ),
        pytest.param(
            "t10k", 0, "t10k-images-idx3-ubyte holds images of 0x0: they have no pixels", id="test 0x0"
        ),
        pytest.param(
            "train", 0, "train-images-idx3-ubyte holds images of 0x0: they have no pixels", id="train 0x0"
        ),
    ],
)
def test_mnist_images_of_another_size_or_none_are_refused_when_read(tmp_path, split, size, expected):
    """Test images of another size than the training images (or of no pixels) are refused when
    the files are read: they crashed the test step, after training (mat1 and mat2 shapes...)."""
    raw = write_mnist(tmp_path)
    n = 60 if split == "train" else 20
    (raw / f"{split}-images-idx3-ubyte").write_bytes(idx_images(np.zeros((n, size, size), np.uint8)))
    with pytest.raises(DlbenchError, match=expected):
        DATASETS.get("mnist")(root=str(tmp_path), download=False)


def test_mnist_download_from_a_local_server(tmp_path, http_server):
    served, url = http_server
    write_mnist(served, folder=".", gz=True)  # served/./raw/*.gz
    root = tmp_path / "data"
    source = DATASETS.get("mnist")(root=str(root), download=True, url=f"{url}/raw/")
    assert len(source.train) == 60
    assert (root / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file()


def test_cifar_download_and_extract_from_a_local_server(tmp_path, http_server):
    served, url = http_server
    tar_gz(write_cifar(tmp_path / "src"), served / "cifar-10-python.tar.gz")
    root = tmp_path / "data"
    source = DATASETS.get("cifar10")(root=str(root), download=True, url=f"{url}/cifar-10-python.tar.gz")
    assert len(source.train) == 100 and (root / "cifar-10-batches-py" / "data_batch_1").is_file()


def test_download_failure_is_one_message(tmp_path, http_server):
    _, url = http_server
    with pytest.raises(DlbenchError, match="Could not download"):
        DATASETS.get("cifar10")(root=str(tmp_path), download=True, url=f"{url}/missing.tar.gz")


def test_an_image_is_read_upright_on_white_and_a_float_one_at_its_brightness(tmp_path):
    """A review (predict on a digit): a drawing on transparent pixels (0, 0, 0, 0) was read
    black on black, a phone's JPEG with EXIF orientation 6 sideways, a float TIFF in [0, 1]
    black: each was classified as another digit, exit 0. Training on an image folder reads
    files the same way."""
    import numpy as np
    from PIL import Image

    from dlbench.data.images import open_image

    drawn = np.full((20, 30), 255, np.uint8)
    drawn[5:15, 10:14] = 0  # a black bar on white: what each file below shows
    want = open_image(_saved(Image.fromarray(drawn), tmp_path / "plain.png"), "L")
    rgba = np.zeros((20, 30, 4), np.uint8)  # transparent black...
    rgba[5:15, 10:14] = [0, 0, 0, 255]  # ...around an opaque black bar
    assert np.array_equal(
        np.asarray(open_image(_saved(Image.fromarray(rgba), tmp_path / "t.png"), "L")), np.asarray(want)
    )
    exif = Image.Exif()
    exif[0x0112] = 6  # (Orientation: the stored pixels are turned 90 degrees)
    stored = Image.fromarray(drawn).transpose(Image.Transpose.ROTATE_90)
    stored.save(tmp_path / "r.jpg", exif=exif, quality=100)
    turned = np.asarray(open_image(tmp_path / "r.jpg", "L"), dtype=int)
    assert turned.shape == (20, 30) and np.abs(turned - np.asarray(want, dtype=int)).max() < 40
    floats = Image.fromarray(drawn.astype(np.float32) / 255.0, mode="F")
    assert np.array_equal(np.asarray(open_image(_saved(floats, tmp_path / "f.tif"), "L")), np.asarray(want))


def _saved(image, path):
    image.save(path)
    return path


def test_image_folder_with_and_without_val(tmp_path):
    write_image_folder(tmp_path / "imgs")
    source = DATASETS.get("image_folder")(root=str(tmp_path / "imgs"), image_size=[8, 8])
    assert source.class_names == ["cat", "dog"] and source.val is None and len(source.test) == 12
    data = DataModule(source, DataConfig(val_fraction=0.25))
    assert data.input_shape == [3, 8, 8] and data.size("val") == 3 and data.size("train") == 9
    gray = DATASETS.get("image_folder")(root=str(tmp_path / "imgs"), image_size=[8, 8], grayscale=True)
    assert gray.train[0][0].shape == (1, 8, 8)
    from PIL import Image

    Image.new("LAB", (8, 8)).save(tmp_path / "imgs" / "train" / "cat" / "lab.tif")  # (no gray of it in PIL)
    assert len(DATASETS.get("image_folder")(root=str(tmp_path / "imgs"), image_size=[8, 8]).train) == 13
    with pytest.raises(DlbenchError, match=r"lab\.tif is not a readable image .*conversion from LAB"):
        DATASETS.get("image_folder")(root=str(tmp_path / "imgs"), image_size=[8, 8], grayscale=True)
    # hidden entries are no data: Jupyter's checkpoints folder was a class of no images (refused),
    # macOS's ._x.png (not an image) a file that failed the check
    (tmp_path / "imgs" / "train" / "cat" / "lab.tif").unlink()
    (tmp_path / "imgs" / "train" / ".ipynb_checkpoints").mkdir()
    (tmp_path / "imgs" / "train" / "dog" / "._1.png").write_bytes(b"\x00\x05\x16\x07")
    source = DATASETS.get("image_folder")(root=str(tmp_path / "imgs"), image_size=[8, 8])
    assert source.class_names == ["cat", "dog"] and len(source.train) == 12
    # (imagenet's flat val/ and a translation folder counted them: a devkit's count did not match)
    from dlbench.data.folders import class_folders
    from dlbench.data.translation_images import image_files

    (tmp_path / "imgs" / "train" / "._x").mkdir()
    (tmp_path / "imgs" / "train" / "._x" / "1.png").write_bytes(b"")
    assert [p.name for p in class_folders(tmp_path / "imgs" / "train")] == ["cat", "dog"]
    assert len(image_files(tmp_path / "imgs" / "train" / "dog")) == 6
    with pytest.raises(DlbenchError, match="none does not exist; expected .*train/<class>"):
        DATASETS.get("image_folder")(root=str(tmp_path / "none"))


def test_augmentations_are_applied_to_the_train_split_only(tmp_path):
    write_cifar(tmp_path)
    source = DATASETS.get("cifar10")(root=str(tmp_path), download=False)
    augment = {"hflip": 1.0, "noise_std": 0.1, "crop_padding": 2, "rotation": 5.0, "color_jitter": 0.2}
    data = DataModule(source, DataConfig(val_fraction=0.2, augment=augment))
    train = data.splits["train"]
    x1, _ = train[0]
    assert torch.equal(x1, train[0][0])  # drawn from (seed, epoch, sample): the same within an epoch
    train.epoch = 1
    x2, _ = train[0]
    assert x1.shape == (3, 32, 32) and not torch.equal(x1, x2)  # and new each epoch
    v1, v2 = data.splits["val"][0][0], data.splits["val"][0][0]
    assert torch.equal(v1, v2)


def test_predict_prepares_a_user_png_like_the_seed(tmp_path):
    from dlbench.data.images import image_input as load_image

    png = draw_digit_png(tmp_path / "digit.png")
    x = load_image(png, [1, 28, 28], None, light_on_dark=True)
    assert x.shape == (1, 28, 28)
    assert float(x[0, 0, 0]) < 0.1 and float(x.max()) > 0.9  # white paper became a black background
    # only for a model of light-on-dark images (MNIST's): a grayscale image folder's bright
    # images were inverted too, and predicted as the dark class (a review: 24 of 36 agreed with eval)
    kept = load_image(png, [1, 28, 28], None, light_on_dark=False)
    assert float(kept[0, 0, 0]) > 0.9 and torch.allclose(kept, 1 - x, atol=1e-6)


def test_a_cifar_meta_file_of_another_number_of_classes_is_refused(tmp_path):
    """A batches.meta of 5,000 names made a model of 5,000 outputs (CIFAR-10 has 10 classes)."""
    import pickle

    folder = write_cifar(tmp_path, per_batch=4)
    meta = {"label_names": [f"class{i}" for i in range(5000)], "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    with pytest.raises(DlbenchError, match=r"batches\.meta has no list of 10 class names under"):
        DATASETS.get("cifar10")(root=str(tmp_path), download=False)
