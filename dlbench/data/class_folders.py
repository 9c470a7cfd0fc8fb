"""torchvision's ImageFolder, with its files found the way dlbench walks a folder (folders.py):
symbolic links followed, each real folder and file once, a loop or a file reached twice named.
torchvision's own walk (`os.walk(followlinks=True)`) goes round a loop until the path is too
long, counting the same images again each time (24 images became 984 samples)."""

from __future__ import annotations

from pathlib import Path

from torchvision import datasets as tv

from dlbench.data.folders import walk_files


class ClassFolders(tv.ImageFolder):
    """One folder per class under `root` (less the classes in `leave_out`: Caltech's background
    clutter); `what` names the data set in messages."""

    def __init__(self, root: Path, what: str = "image_folder", leave_out: tuple[str, ...] = (), **kwargs):
        self.what, self.leave_out = what, leave_out
        super().__init__(str(root), **kwargs)

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        # (a hidden folder is no class: Jupyter's .ipynb_checkpoints/ was one, of no images)
        found = super().find_classes(directory)[0]
        classes = [c for c in found if c not in self.leave_out and not c.startswith(".")]
        if not classes:
            raise FileNotFoundError(f"Found no class folder in {directory} (hidden folders are passed over)")
        return classes, {c: i for i, c in enumerate(classes)}

    def make_dataset(self, directory, class_to_idx, extensions=None, is_valid_file=None, allow_empty=False):
        valid = is_valid_file or (lambda path: tv.folder.has_file_allowed_extension(path, extensions))
        samples, empty, seen = [], [], {}  # seen: each real file once, across the classes too
        for name, label in sorted(class_to_idx.items()):
            found = [p for p in walk_files(Path(directory) / name, self.what, seen) if valid(str(p))]
            samples += [(str(path), label) for path in found]
            empty += [] if found else [name]
        if empty and not allow_empty:
            raise FileNotFoundError(f"Found no valid file for the classes {', '.join(empty)}")
        return samples
