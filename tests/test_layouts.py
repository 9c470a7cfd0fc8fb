"""Issue 16: every data set reads its folder as users have it (the data folder itself, its parent,
the archive's top folder), and a folder it cannot use gets a message saying what is there and
what was expected. Each layout is written here in its real format, small."""

import shutil
import tarfile

import pytest
import torch
from formats import (
    CALTECH_CLASSES,
    IMAGENET_WNIDS,
    tar_gz,
    write_caltech,
    write_cifar,
    write_image_folder,
    write_imagenet,
    write_mnist,
    write_names,
    write_paired,
    write_pairs,
    write_unpaired,
    zip_folder,
)

from dlbench.config import DataConfig
from dlbench.data.base import DataModule
from dlbench.errors import DlbenchError
from dlbench.registry import DATASETS


def build(name, **kwargs):
    return DATASETS.get(name)(**kwargs)


def test_names_from_the_folder_its_parent_or_the_archives_top_folder(tmp_path):
    folder = write_names(tmp_path / "data")  # tmp/data/names/<Language>.txt, as the zip unpacks
    (folder / "._English.txt").write_bytes(b"\x00\x05\x16\x07\xff")  # (macOS's: no language, not UTF-8)
    for root in (folder, tmp_path / "data", tmp_path):
        source = build("names", root=str(root), download=False)
        assert source.class_names == ["English", "Korean", "Polish"], root
    (tmp_path / "data" / "eng-fra.txt").write_text("Go.\tVa !\n")  # the archive's other file
    assert build("names", root=str(tmp_path / "data"), download=False).num_classes == 3
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "surnames.csv").write_text("Smith,English\n")
    with pytest.raises(
        DlbenchError, match=r"names not found: .*other holds surnames.csv; expected <Language>.txt"
    ):
        build("names", root=str(tmp_path / "other"), download=False)


def test_translation_pairs_from_the_file_or_its_folders(tmp_path):
    path = write_pairs(tmp_path / "data" / "eng-fra.txt")
    for root in (path, tmp_path / "data", tmp_path):
        assert len(build("translation_pairs", root=str(root), download=False).train) == 7, root


def test_pix2pix_and_cyclegan_from_the_data_folder_or_its_parent(tmp_path):
    facades = write_paired(tmp_path)  # tmp/facades/{train,val,test}/
    for root in (facades, tmp_path):
        assert len(build("paired_images", root=str(root), download=False, image_size=[16, 16]).train) == 4
    zebras = write_unpaired(tmp_path)
    for root in (zebras, tmp_path):
        assert len(build("unpaired_images", root=str(root), download=False, image_size=[16, 16]).train) == 4
    (tmp_path / "offline").mkdir()
    tar_gz(facades, tmp_path / "offline" / "facades.tar.gz")  # the archive as downloaded
    assert build("paired_images", root=str(tmp_path / "offline"), download=False).test is not None
    shutil.rmtree(facades / "train")
    with pytest.raises(
        DlbenchError, match=r"facades: no train/ folder: .*facades holds test/, val/\. Expected"
    ):
        build("paired_images", root=str(facades), download=False)


def test_mnist_from_raw_its_parents_or_the_downloaded_gz_files(tmp_path):
    raw = write_mnist(tmp_path)  # tmp/MNIST/raw/
    for root in (raw, raw.parent, tmp_path):
        source = build("mnist", root=str(root), download=False)
        assert len(source.train) == 60 and len(source.test) == 20, root
    gz = write_mnist(tmp_path / "gz", folder="files", gz=True)  # the four .gz files, as served
    assert len(build("mnist", root=str(gz), download=False).train) == 60
    assert (gz / "train-images-idx3-ubyte").is_file()  # unpacked beside them
    for file in ("train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):  # two unpacked, two not (refused)
        (gz / file).unlink()
    assert len(build("mnist", root=str(gz), download=False).test) == 20
    none = write_mnist(tmp_path / "none", n_test=0)
    with pytest.raises(DlbenchError, match=r"mnist: .*t10k-images-idx3-ubyte holds no images"):
        build("mnist", root=str(none), download=False)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("digits go here")
    with pytest.raises(DlbenchError, match=r"empty/MNIST/raw\. Expected .*; .*/empty holds readme.txt"):
        build("mnist", root=str(tmp_path / "empty"), download=False)


def test_cifar_from_the_batches_folder_its_parent_or_the_archive(tmp_path):
    batches = write_cifar(tmp_path / "a")  # tmp/a/cifar-10-batches-py/
    for root in (batches, tmp_path / "a"):
        assert len(build("cifar10", root=str(root), download=False).train) == 100, root
    (tmp_path / "b").mkdir()
    tar_gz(batches, tmp_path / "b" / "cifar-10-python.tar.gz")  # the archive as downloaded, not unpacked
    assert len(build("cifar10", root=str(tmp_path / "b"), download=False).train) == 100  # unpacked offline


def test_image_folder_of_class_folders_carves_stratified_splits(tmp_path):
    write_image_folder(tmp_path / "flowers", splits=("",), classes=("daisy", "rose", "tulip"), per_class=10)
    for root in (tmp_path / "flowers", tmp_path):  # the folder, or the one folder above it
        source = build("image_folder", root=str(root), image_size=[8, 8])
        assert source.class_names == ["daisy", "rose", "tulip"] and source.test is None
    data = DataModule(source, DataConfig(name="image_folder", test_fraction=0.3, val_fraction=0.0))
    test_labels = [data.splits["test"][i][1] for i in range(data.size("test"))]
    assert sorted(test_labels) == [0, 0, 0, 1, 1, 1, 2, 2, 2]  # 3 of each class's 10
    (tmp_path / "loose").mkdir()
    (tmp_path / "loose" / "notes.txt").write_text("")
    with pytest.raises(DlbenchError, match=r"loose holds notes.txt; expected .*/train/<class>/<images>"):
        build("image_folder", root=str(tmp_path / "loose"))


def test_caltech101_in_every_layout_users_have(tmp_path):
    categories = write_caltech(tmp_path)  # tmp/caltech101/101_ObjectCategories/<class>/
    for root in (tmp_path, tmp_path / "caltech101", categories):
        source = build("caltech101", root=str(root), download=False, image_size=[16, 16])
        assert source.class_names == list(CALTECH_CLASSES), root  # no BACKGROUND_Google
        assert len(source.train) == 30 and source.val is None and source.test is None
    assert source.train[0][0].shape == (3, 16, 16)
    with pytest.raises(DlbenchError, match=r"caltech101: dataset.image_size=\[0, 16\]: give \[height"):
        build("caltech101", root=str(tmp_path), download=False, image_size=[0, 16])  # (torch's, at batch 1)
    data = DataModule(source, DataConfig(name="caltech101", test_fraction=0.2, val_fraction=0.125))
    assert (data.size("train"), data.size("val"), data.size("test")) == (21, 3, 6)
    assert sorted(data.splits["test"][i][1] for i in range(6)) == [0, 0, 1, 1, 2, 2]  # stratified

    # the archive kept offline, in the folder the data.caltech.edu zip unpacks to
    archive = tmp_path / "zip" / "caltech-101" / "101_ObjectCategories.tar.gz"
    archive.parent.mkdir(parents=True)
    tar_gz(categories, archive)
    assert build("caltech101", root=str(tmp_path / "zip"), download=False).num_classes == 3
    with pytest.raises(
        DlbenchError, match=r"caltech101: .*nothing does not exist; expected .*101_ObjectCategories"
    ):
        build("caltech101", root=str(tmp_path / "nothing"), download=False)


def test_caltech101_download_from_a_local_server(tmp_path, http_server):
    served, url = http_server
    tar_gz(write_caltech(tmp_path / "src"), served / "101_ObjectCategories.tar.gz")
    source = build("caltech101", root=str(tmp_path / "r"), url=f"{url}/101_ObjectCategories.tar.gz")
    assert source.num_classes == 3 and (tmp_path / "r" / "101_ObjectCategories" / "accordion").is_dir()


def test_imagenet_standard_layout_and_the_devkit(tmp_path):
    base = write_imagenet(tmp_path / "std")  # train/<wnid>/, val/<wnid>/
    (base / "LOC_synset_mapping.txt").write_text(
        "\n".join(f"{w} fish {i}, a fish" for i, w in enumerate(IMAGENET_WNIDS))
    )
    for root in (base, base.parent):
        source = build("imagenet", root=str(root), image_size=[16, 16])
        assert source.class_names == ["fish 0", "fish 1", "fish 2"] and len(source.test) == 6
    x, y = source.train[0]
    assert x.shape == (3, 16, 16) and y == 0
    torch.testing.assert_close(
        source.train[0][0], x
    )  # the same random crop for the same (seed, epoch, index)
    source.train.epoch = 1
    assert not torch.equal(source.train[0][0], x)  # another epoch, another crop
    with pytest.raises(DlbenchError, match=r"imagenet: dataset.image_size=\[16\]: give \[height"):
        build("imagenet", root=str(base), image_size=[16])

    flat = write_imagenet(tmp_path / "flat", flat_val=True)  # flat val/ and the devkit archive
    source = build("imagenet", root=str(flat), image_size=[16, 16])
    assert source.class_names == ["tench", "goldfish", "great white shark"]
    assert source.test.targets == [0, 0, 1, 1, 2, 2]
    (flat / "ILSVRC2012_devkit_t12.tar.gz").unlink()
    with pytest.raises(
        DlbenchError, match=r"val holds 6 images and no class folders, and there is no devkit"
    ):
        build("imagenet", root=str(flat))
    with tarfile.open(flat / "ILSVRC2012_devkit_t12.tar.gz", "w:gz"):
        pass  # an empty archive under the devkit's name
    with pytest.raises(DlbenchError, match="is not ImageNet's devkit"):
        build("imagenet", root=str(flat))
    with pytest.raises(DlbenchError, match=r"imagenet: .*nothing does not exist; expected .*train/<wnid>"):
        build("imagenet", root=str(tmp_path / "nothing"))


def test_a_damaged_archive_and_a_fifo_in_the_data_are_named(tmp_path):
    """A .gz damaged inside was zlib's 'unexpected error'; a damaged data.zip was passed over (the
    data "not found" beside it); a FIFO named like a language's file hung the run, and its stop
    signal with it."""
    import os

    gz = write_mnist(tmp_path / "gz", folder="files", gz=True)
    packed = bytearray((gz / "train-images-idx3-ubyte.gz").read_bytes())
    packed[30:60] = bytes(b ^ 0xFF for b in packed[30:60])
    (gz / "train-images-idx3-ubyte.gz").write_bytes(bytes(packed))
    with pytest.raises(DlbenchError, match=r"idx3-ubyte\.gz is not an archive that can be extracted"):
        build("mnist", root=str(gz), download=False)
    (tmp_path / "offline").mkdir()
    (tmp_path / "offline" / "data.zip").write_bytes(b"PK\x03\x04" + bytes(60))  # (the names' archive)
    with pytest.raises(DlbenchError, match=r"data\.zip is not an archive .*not a tar, zip or \.gz archive"):
        build("names", root=str(tmp_path / "offline"), download=False)
    folder = write_names(tmp_path / "data")
    os.mkfifo(folder / "Fifo.txt")
    with pytest.raises(DlbenchError, match=r"names: .*Fifo\.txt is not a file \(a folder, a FIFO"):
        build("names", root=str(folder), download=False)


def test_a_download_cut_short_is_removed_and_an_encrypted_zip_is_named(tmp_path, http_server):
    """A download cut short (or any file that is not the archive) stayed in the data folder, and
    every later run refused it without downloading again; an encrypted zip was an 'unexpected
    error' (RuntimeError, exit 1)."""
    served, url = http_server
    whole = zip_folder(write_names(tmp_path / "src" / "data"), tmp_path / "data.zip", "data").read_bytes()
    (served / "data.zip").write_bytes(whole[:300])  # (what a connection dropped midway leaves)
    root = tmp_path / "root"
    cut = r"data\.zip is not an archive .*was cut short .*removed: run again"
    with pytest.raises(DlbenchError, match=cut):
        build("names", root=str(root), url=f"{url}/data.zip")
    assert not root.exists()  # (the folder it made for the download: gone with it)
    (served / "data.zip").write_bytes(whole)
    source = build("names", root=str(root), url=f"{url}/data.zip")
    assert source.class_names == ["English", "Korean", "Polish"]
    locked = bytearray(whole)  # the encryption flag of the first member, local and central headers
    locked[6] |= 1
    locked[locked.find(b"PK\x01\x02") + 8] |= 1
    (tmp_path / "offline").mkdir()
    (tmp_path / "offline" / "data.zip").write_bytes(bytes(locked))
    locked_message = r"data\.zip is not an archive .*encrypted.*Remove it and run again"
    with pytest.raises(DlbenchError, match=locked_message):
        build("names", root=str(tmp_path / "offline"), download=False)


def test_an_image_size_below_one_and_a_pair_one_pixel_wide_are_named(tmp_path):
    """dataset.image_size=[0,8] was torch's resize error, and a 1-pixel-wide file among pix2pix's
    pairs a reshape error, each an 'unexpected error' at the first batch."""
    from PIL import Image

    write_image_folder(tmp_path / "images", per_class=4)
    with pytest.raises(
        DlbenchError, match=r"image_folder: dataset.image_size=\[0, 8\]: give \[height, width\]"
    ):
        build("image_folder", root=str(tmp_path / "images"), image_size=[0, 8])
    facades = write_paired(tmp_path)
    Image.new("RGB", (1, 1)).save(facades / "train" / "9.png")
    source = build("paired_images", root=str(facades), download=False, image_size=[16, 16])
    with pytest.raises(DlbenchError, match=r"9\.png is 1 pixel wide: a pair is A and B side by side"):
        [source.train[i] for i in range(len(source.train))]


def test_a_line_too_long_to_be_a_name_is_named(tmp_path):
    """Every name is padded to the longest: a line of 200,000 letters made the data N x 200,000 ids
    and a step that did not end in minutes."""
    folder = write_names(tmp_path / "data")
    (folder / "Long.txt").write_text("Smith\n" + "a" * 200_000 + "\n")
    with pytest.raises(DlbenchError, match=r"names: .*Long\.txt line 2 is 200,000 characters long: a name"):
        build("names", root=str(folder), download=False)
