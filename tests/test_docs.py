"""The docs stay true: every test a guide names as proof exists."""

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_every_test_the_docs_name_exists():
    files = list((ROOT / "tests").glob("test_*.py"))
    tests = {m for f in files for m in re.findall(r"^def (test_\w+)", f.read_text(), re.M)}
    tests |= {f.stem for f in files} | {"test_batch"}  # test modules, and CIFAR's file test_batch
    named = {
        (doc.name, name)
        for doc in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]
        for name in re.findall(r"(?<![.\w])(test_\w+)\b", doc.read_text())
    }
    assert named, "the docs name no test"
    missing = sorted((doc, name) for doc, name in named if name not in tests)
    assert not missing, missing
