"""Built-in Bach chorales from the music21 corpus: quantisation, a small build, the cache, the
split, and the message when music21 is missing."""

import sys

import numpy as np
import pytest

from pyrosequence.data import bach, load_split
from pyrosequence.data.music import roll_to_notes

LIMIT = 12


def test_missing_music21_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "music21", None)
    with pytest.raises(ImportError, match=r'pip install "pyrosequence\[music\]"'):
        bach.load_bach("train", tmp_path, limit=2)


def test_cache_folder_choice(monkeypatch, tmp_path):
    monkeypatch.delenv("PYROSEQUENCE_CACHE", raising=False)
    assert str(bach.cache_dir()).endswith(".cache/pyrosequence")
    monkeypatch.setenv("PYROSEQUENCE_CACHE", str(tmp_path / "env"))
    assert bach.cache_dir() == tmp_path / "env"
    assert bach.cache_dir(tmp_path / "given") == tmp_path / "given"


def test_split_assignment_is_fixed_and_in_jsb_proportions():
    which = bach.split_assignment(331)
    assert np.array_equal(which, bach.split_assignment(331))
    assert np.bincount(which).tolist() == [199, 66, 66]
    assert not np.array_equal(which, bach.split_assignment(331, seed=1))


def test_quarter_note_quantisation():
    music21 = pytest.importorskip("music21")
    part = music21.stream.Part()
    part.insert(0.0, music21.note.Note(60, quarterLength=2.0))  # beats 0, 1
    part.insert(0.5, music21.note.Note(64, quarterLength=0.5))  # between beats: not sampled
    part.insert(2.0, music21.chord.Chord([48, 67], quarterLength=1.0))  # beat 2
    part.insert(3.5, music21.note.Note(72, quarterLength=1.0))  # sounds at beat 4 only
    score = music21.stream.Score([part])
    roll = bach.score_to_roll(score)
    assert roll.shape == (5, 88) and roll.dtype == np.uint8
    assert roll_to_notes(roll) == [[60], [60], [48, 67], [], [72]]


@pytest.fixture(scope="module")
def small_cache(tmp_path_factory):
    pytest.importorskip("music21")
    root = tmp_path_factory.mktemp("bach-cache")
    splits = {s: bach.load_bach(s, root, limit=LIMIT) for s in ("train", "valid", "test")}
    return root, splits


def test_small_build(small_cache):
    root, splits = small_cache
    sizes = [len(splits[s]) for s in ("train", "valid", "test")]
    kept = sum(sizes)
    assert 0 < kept <= LIMIT
    assert sizes == np.bincount(bach.split_assignment(kept), minlength=3).tolist()
    for data in splits.values():
        assert data.x_dim == 88
        assert set(data.x.unique().tolist()) <= {0.0, 1.0}
        assert int(data.x.sum(-1).max()) <= 4  # four voices
    files = list(root.iterdir())
    assert len(files) == 1 and files[0].name.startswith("bach-chorales-v1-music21-")
    assert files[0].name.endswith(f"-first{LIMIT}.npz")


def test_cache_is_read_back_without_rebuilding(small_cache, monkeypatch):
    root, splits = small_cache

    def no_build(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(bach, "build_bach", no_build)
    again = bach.load_bach("valid", root, limit=LIMIT)
    assert np.array_equal(again.x.numpy(), splits["valid"].x.numpy())
    assert np.array_equal(again.lengths.numpy(), splits["valid"].lengths.numpy())


def test_registry_passes_root_as_the_cache_folder(small_cache, monkeypatch):
    root, splits = small_cache
    from pyrosequence.data import registry

    calls = []

    def limited(split, root=None):
        calls.append((split, root))
        return bach.load_bach(split, root, limit=LIMIT)  # the registry builds all chorales; a test only a few

    monkeypatch.setattr(registry, "load_bach", limited)
    data = load_split("bach", "test", str(root))
    assert calls == [("test", str(root))]
    assert np.array_equal(data.x.numpy(), splits["test"].x.numpy())
    assert registry.DATASETS["bach"].likelihood == "bernoulli"


def test_an_unreadable_cache_is_named(tmp_path):
    pytest.importorskip("music21")
    path = bach._cache_file(tmp_path, 3)
    path.write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"unreadable Bach chorale cache .*delete it to rebuild"):
        bach.load_bach("train", tmp_path, limit=3)
