"""Download the original polyphonic music pickles of Boulanger-Lewandowski et al. (ICML 2012).

The authors publish ``JSB Chorales.pickle``, ``Piano-midi.de.pickle``, ``Nottingham.pickle`` and
``MuseData.pickle`` at ``http://www-etud.iro.umontreal.ca/~boulanni/`` (the format is described
in :mod:`pyrosequence.data.music`). Nothing is downloaded unless :func:`fetch_music` is called.
"""

from __future__ import annotations

import hashlib
import http.client
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from pyrosequence.data._io import atomic_write
from pyrosequence.data.music import music_set, music_url, read_pickle

#: Known sha256 of each original pickle. None: not known to this project, so a download is
#: checked by parsing it instead (it must read as a valid music pickle, see ``read_pickle``).
SHA256: dict[str, str | None] = {"jsb": None, "piano": None, "nottingham": None, "muse": None}


class FetchError(ConnectionError):
    """A download failed; the message says which file to put in which folder by hand."""


def _download(url: str, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        status = getattr(response, "status", None)
        if status is not None and url.lower().startswith("http") and status != 200:
            raise urllib.error.HTTPError(url, status, f"HTTP status {status}", response.headers, None)
        return response.read()


def fetch_music(name: str, root, url: str | None = None, timeout: float = 60.0, force: bool = False) -> Path:
    """Download the original pickle of music data set ``name`` into the folder ``root``.

    The file is saved as ``root/<original name>`` (for example ``root/JSB Chorales.pickle``),
    which :func:`pyrosequence.data.music.find_music_file` finds. ``url`` defaults to the authors'
    page (:func:`music_url`); any URL ``urllib`` opens works, ``file://`` included. An existing
    file is kept unless ``force=True``.

    The download is verified before it is kept: against :data:`SHA256` when a checksum is known
    (none is recorded yet), and always by parsing it as a Boulanger-Lewandowski pickle. It is
    written atomically (a temporary file renamed into place), so a failure never leaves a
    partial file.

    Raises :class:`FetchError` (a ``ConnectionError``) on any network failure, with a message
    naming the file to download by hand, from where, and the folder to save it in; ``ValueError``
    when the downloaded bytes fail the checksum or do not parse.
    """
    spec = music_set(name)
    folder = Path(root).expanduser()
    dest = folder / spec.original
    if dest.is_file() and not force:
        return dest
    source = url or music_url(name)
    try:
        payload = _download(source, timeout)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as err:
        reason = getattr(err, "reason", None) or err
        raise FetchError(
            f"could not download {source} ({type(err).__name__}: {reason}). To install {spec.title} by hand: "
            f"download {music_url(name)} on a machine with internet access and save it as "
            f"{str(dest)!r} (file name {spec.original!r} in the folder {str(folder)!r}); then pass "
            f"root={str(folder)!r} (--data-root on the command line)."
        ) from err
    expected = SHA256.get(name)
    if expected is not None:
        digest = hashlib.sha256(payload).hexdigest()
        if digest != expected:
            raise ValueError(f"{source}: sha256 {digest} does not match the expected {expected}; not saved")

    def write(tmp: Path) -> None:
        tmp.write_bytes(payload)
        try:
            read_pickle(tmp)
        except ValueError as err:
            raise ValueError(f"{source}: the downloaded file is not a valid {spec.title} pickle; not saved ({err})") from None

    return atomic_write(dest, write)
