"""Config files of components: written atomically under the files root; anything escaping it is refused
before a single file is written."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import pytest

from worker_agent.components.config_files import ConfigFileError, write_config_files


def test_files_are_written_under_the_root_and_replaced_whole(tmp_path: Path) -> None:
    root = tmp_path / "files"
    written = write_config_files(
        root, [{"path": "/etc/app/app.conf", "content": "a=1\n"}, {"path": "b", "content": ""}]
    )

    assert written == [
        (PurePosixPath("/etc/app/app.conf"), root / "etc" / "app" / "app.conf"),
        (PurePosixPath("/b"), root / "b"),
    ]
    assert (root / "etc" / "app" / "app.conf").read_text() == "a=1\n" and (root / "b").read_text() == ""
    write_config_files(root, [{"path": "etc/app/app.conf", "content": "a=2\n"}])
    assert (root / "etc" / "app" / "app.conf").read_text() == "a=2\n"
    assert [p.name for p in (root / "etc" / "app").iterdir()] == ["app.conf"]  # no temp file left


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("../outside.conf", "climbs out of its root"),
        ("/etc/../../outside.conf", "climbs out of its root"),
        ("etc/app\x00.conf", "NUL byte"),
        ("", "path is empty"),
        ("/", "names no file"),
    ],
)
def test_unsafe_paths_are_refused_and_nothing_is_written(tmp_path: Path, path: str, reason: str) -> None:
    root = tmp_path / "files"
    with pytest.raises(ConfigFileError, match=reason):
        write_config_files(root, [{"path": "/first.conf", "content": "x"}, {"path": path, "content": "y"}])
    assert list(root.iterdir()) == []
    assert not (tmp_path / "outside.conf").exists()


def test_a_symlinked_parent_directory_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "files"
    outside = tmp_path / "outside"
    outside.mkdir()
    root.mkdir()
    (root / "etc").symlink_to(outside)

    with pytest.raises(ConfigFileError, match="etc is a symlink"):
        write_config_files(root, [{"path": "/ok.conf", "content": "x"}, {"path": "/etc/app.conf", "content": "y"}])
    assert list(outside.iterdir()) == [] and not (root / "ok.conf").exists()


def test_a_parent_symlink_that_stays_inside_is_refused_too(tmp_path: Path) -> None:
    root = tmp_path / "files"
    (root / "real").mkdir(parents=True)
    (root / "alias").symlink_to(root / "real")
    with pytest.raises(ConfigFileError, match="alias is a symlink"):
        write_config_files(root, [{"path": "/alias/app.conf", "content": "y"}])


def test_a_symlinked_target_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "files"
    root.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (root / "app.conf").symlink_to(victim)

    with pytest.raises(ConfigFileError, match="target is a symlink"):
        write_config_files(root, [{"path": "/app.conf", "content": "overwritten"}])
    assert victim.read_text() == "precious" and os.path.islink(root / "app.conf")


def test_a_parent_that_is_a_file_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "files"
    root.mkdir()
    (root / "etc").write_text("")
    with pytest.raises(ConfigFileError, match="etc is not a directory"):
        write_config_files(root, [{"path": "/etc/app.conf", "content": "y"}])
