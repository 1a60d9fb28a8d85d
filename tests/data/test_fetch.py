"""Downloading the original music pickles, without touching the network: an unreachable address
gives a message saying what to put where, and a local ``file://`` address is the success path."""

import pickle

import pytest

from pyrosequence.data import load_split
from pyrosequence.data.fetch import SHA256, FetchError, fetch_music, music_url

UNREACHABLE = "http://127.0.0.1:9/JSB%20Chorales.pickle"  # the discard port: connection refused


def _pickle_bytes():
    seq = [(60, 64, 67), (), (62,)]
    return pickle.dumps({"train": [seq, seq], "valid": [seq], "test": [seq]}, protocol=2)


def test_public_addresses():
    assert music_url("jsb") == "http://www-etud.iro.umontreal.ca/~boulanni/JSB%20Chorales.pickle"
    assert music_url("piano") == "http://www-etud.iro.umontreal.ca/~boulanni/Piano-midi.de.pickle"
    assert music_url("nottingham") == "http://www-etud.iro.umontreal.ca/~boulanni/Nottingham.pickle"
    assert music_url("muse") == "http://www-etud.iro.umontreal.ca/~boulanni/MuseData.pickle"
    assert set(SHA256) == {"jsb", "piano", "nottingham", "muse"}
    with pytest.raises(ValueError, match=r"unknown music dataset 'bach'"):
        music_url("bach")


def test_network_failure_says_which_file_to_put_where(tmp_path):
    root = tmp_path / "music"
    with pytest.raises(FetchError) as info:
        fetch_music("jsb", root, url=UNREACHABLE, timeout=5)
    message = str(info.value)
    assert isinstance(info.value, ConnectionError)
    assert f"could not download {UNREACHABLE}" in message
    assert "download http://www-etud.iro.umontreal.ca/~boulanni/JSB%20Chorales.pickle" in message
    assert repr(str(root / "JSB Chorales.pickle")) in message
    assert "file name 'JSB Chorales.pickle'" in message and repr(str(root)) in message
    assert not root.exists() or not any(root.iterdir())


def test_file_url_downloads_atomically_and_loads(tmp_path):
    source = tmp_path / "mirror" / "Nottingham.pickle"
    source.parent.mkdir()
    source.write_bytes(_pickle_bytes())
    root = tmp_path / "data"
    path = fetch_music("nottingham", root, url=source.as_uri())
    assert path == root / "Nottingham.pickle"
    assert path.read_bytes() == source.read_bytes()
    assert sorted(p.name for p in root.iterdir()) == ["Nottingham.pickle"]  # no temporary file left
    data = load_split("nottingham", "train", str(root))
    assert len(data) == 2 and data.total_steps == 6 and data.x_dim == 88


def test_existing_file_is_kept_unless_forced(tmp_path):
    source = tmp_path / "src.pickle"
    source.write_bytes(_pickle_bytes())
    root = tmp_path / "data"
    root.mkdir()
    (root / "MuseData.pickle").write_bytes(b"old")
    assert fetch_music("muse", root, url=UNREACHABLE).read_bytes() == b"old"  # no download attempted
    fetch_music("muse", root, url=source.as_uri(), force=True)
    assert (root / "MuseData.pickle").read_bytes() == source.read_bytes()


def test_a_download_that_does_not_parse_is_not_kept(tmp_path):
    source = tmp_path / "broken.pickle"
    source.write_bytes(b"<html>404 not found</html>")
    root = tmp_path / "data"
    with pytest.raises(ValueError, match=r"not a valid Piano-midi.de pickle; not saved"):
        fetch_music("piano", root, url=source.as_uri())
    assert not any(root.iterdir())


def test_a_checksum_mismatch_is_not_kept(tmp_path, monkeypatch):
    source = tmp_path / "src.pickle"
    source.write_bytes(_pickle_bytes())
    monkeypatch.setitem(SHA256, "jsb", "0" * 64)
    root = tmp_path / "data"
    with pytest.raises(ValueError, match=r"does not match the expected 0{64}; not saved"):
        fetch_music("jsb", root, url=source.as_uri())
    assert not (root / "JSB Chorales.pickle").exists()


def test_a_missing_local_source_is_a_fetch_error(tmp_path):
    with pytest.raises(FetchError, match=r"could not download file://"):
        fetch_music("jsb", tmp_path / "data", url=(tmp_path / "absent.pickle").as_uri())
