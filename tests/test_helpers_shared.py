"""The small shared helpers: atomic replacement of a file, an error as one line."""

import pytest

from pipeline.core.atomic import replacing, write_text
from pipeline.core.errors import error_line


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "index.html"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with replacing(target) as temporary:
            temporary.write_text("half of the new")
            raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.html"]
    write_text(target, "new")
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["index.html"]


def test_a_named_temporary_is_used_and_replaced(tmp_path):
    target = tmp_path / "clip.mp4"
    with replacing(target, tmp_path / ".clip.tmp.mp4", fsync=True) as temporary:
        assert temporary.name == ".clip.tmp.mp4"
        temporary.write_bytes(b"video")
    assert target.read_bytes() == b"video" and not temporary.exists()


def test_error_line_is_the_last_non_empty_line_with_its_type():
    error = RuntimeError("context line\n  the cause  \n\n")
    assert error_line(error) == "RuntimeError: the cause"
    assert error_line(error, with_type=False) == "the cause"
    assert error_line(ValueError("")) == "ValueError: " and error_line(ValueError(""), with_type=False) == "ValueError"
    assert len(error_line(OSError("x" * 1000), limit=50)) == 50
