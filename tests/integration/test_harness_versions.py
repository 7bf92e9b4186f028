"""The harness runs tests labelled with a yggdrasil version only on a binary of that version."""

from __future__ import annotations

from pathlib import Path

import pytest

from . import harness


def fake_yggdrasil(directory: Path, version: str, config: str = "{}") -> Path:
    """A stand-in printing ``version`` for -version and ``config`` for -genconf."""
    directory.mkdir()
    for name in ("yggdrasil", "yggdrasilctl"):
        script = directory / name
        script.write_text(
            f"#!/bin/sh\nif [ \"$1\" = -version ]; then echo 'Build version: {version}'; "
            f"else echo '{config}'; fi\n"
        )
        script.chmod(0o755)
    return directory / "yggdrasil"


def test_a_binary_of_another_series_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YGG_04", str(fake_yggdrasil(tmp_path / "new", "0.5.12")))
    with pytest.raises(harness.HarnessError, match=r"labelled yggdrasil 0\.4\.7 .* is yggdrasil 0\.5\.12"):
        harness.yggdrasil_binary("0.4.7")


def test_a_binary_of_the_labelled_series_is_taken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    binary = fake_yggdrasil(tmp_path / "old", "0.4.7")
    monkeypatch.setenv("YGG_04", str(binary))
    assert harness.yggdrasil_binary("0.4.7") == binary


def test_an_unknown_build_version_is_told_by_its_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Debian's 0.4.7 says "Build version: unknown"; only 0.4 writes PublicKey into its config."""
    monkeypatch.setenv("YGG_04", str(fake_yggdrasil(tmp_path / "deb04", "unknown", '{"PublicKey": "00"}')))
    monkeypatch.setenv("YGG_05", str(fake_yggdrasil(tmp_path / "deb05", "unknown", '{"PrivateKey": "00"}')))
    assert harness.yggdrasil_binary("0.4.7").parent.name == "deb04"
    assert harness.yggdrasil_binary("0.5.12").parent.name == "deb05"
    monkeypatch.setenv("YGG_04", str(tmp_path / "deb05" / "yggdrasil"))
    with pytest.raises(harness.HarnessError, match=r"is yggdrasil 0\.5\.x"):
        harness.yggdrasil_binary("0.4.7")
