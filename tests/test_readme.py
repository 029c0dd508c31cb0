"""The README's promises that a test can hold it to."""

from pathlib import Path

from ldaq.settings import markdown_table

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_readme_documents_every_setting_with_its_default():
    assert markdown_table() in README


def test_quick_start_is_make_demo_and_make_test():
    quick_start = README.split("## Quick start", 1)[1].split("##", 1)[0]
    assert "make demo" in quick_start and "make test" in quick_start
