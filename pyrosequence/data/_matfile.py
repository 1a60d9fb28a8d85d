"""What a MATLAB ``.mat`` file declares, read from its headers without loading its data.

:func:`check_mat_sizes` walks a level 5 MAT-file (MATLAB 5 to 7.2; compressed or not) or a
level 4 one, variable by variable and, inside cell arrays and structs, element by element, and
adds up the memory that SciPy's ``loadmat`` (called as :func:`pyrosequence.data.music.read_mat`
calls it, keeping each array's stored type) would allocate: for a numeric array the bytes stored
for it, for a character array 4 bytes per declared character, for a cell or struct array 8 bytes
per declared element, for a sparse one its declared non-zeros and columns, plus a small overhead
per array. The total is checked against :attr:`Limits.max_decoded_bytes` *as it grows*, so the
walk stops at the first array that would go over, before that array's data is inflated. A
compressed variable is inflated a block at a time and the blocks are discarded, so the walk
itself holds a few hundred kilobytes at most; its uncompressed size, stated in its first eight
bytes, is checked first. ``scipy.io.whosmat`` is not enough for this: it reports the shape of a
cell array, not of the matrices in it, which is where a piano-roll file keeps its data.

HDF5-based files (MATLAB 7.3) are left to SciPy, which does not read them. A file whose headers
do not parse raises :class:`MatFormatError`.
"""

from __future__ import annotations

import math
import struct
import zlib

from pyrosequence.data.limits import Limits

# data types (MAT-file format, table 1-1)
MI_INT8, MI_INT32, MI_UINT32, MI_MATRIX, MI_COMPRESSED = 1, 5, 6, 14, 15
# array classes (table 1-3) -> bytes per element in the array SciPy makes
CELL, STRUCT, OBJECT, CHAR, SPARSE = 1, 2, 3, 4, 5
CLASS_BYTES = {
    CELL: 8, STRUCT: 8, OBJECT: 8, CHAR: 4,
    6: 8, 7: 4, 8: 1, 9: 1, 10: 2, 11: 2, 12: 4, 13: 4, 14: 8, 15: 8,  # double .. uint64
}
COMPLEX_FLAG = 0x0800
ARRAY_OVERHEAD = 128  # bytes counted for every array object (its Python/NumPy header)
MAX_DIMS_BYTES = 4 * 64  # at most 64 dimensions
MAX_NAME_BYTES = 1 << 16
BLOCK = 1 << 16


class MatFormatError(ValueError):
    """The headers of a ``.mat`` file do not parse (the caller names the file)."""


class _FileStream:
    """Reads and skips bytes of the (uncompressed) file, tracking the position."""

    def __init__(self, f, end: int):
        self.f, self.end = f, end
        self.pos = f.tell()

    def read(self, n: int) -> bytes:
        if self.pos + n > self.end:
            raise MatFormatError("a header runs past the end of the file")
        data = self.f.read(n)
        if len(data) != n:
            raise MatFormatError("a header runs past the end of the file")
        self.pos += n
        return data

    def skip(self, n: int) -> None:
        if self.pos + n > self.end:
            raise MatFormatError("an element runs past the end of the file")
        self.pos += n
        self.f.seek(self.pos)


class _ZlibStream:
    """Reads and skips bytes of a compressed element, inflating ``BLOCK`` bytes at a time."""

    def __init__(self, f, compressed: int):
        self.f, self.left = f, compressed
        self.inflate = zlib.decompressobj()
        self.buffer = b""
        self.pos = 0
        self.tail = b""

    def _more(self, want: int) -> bytes:
        try:
            while True:
                if self.tail:
                    data, self.tail = self.inflate.decompress(self.tail, want), b""
                    self.tail = self.inflate.unconsumed_tail
                elif self.left > 0:
                    chunk = self.f.read(min(BLOCK, self.left))
                    if not chunk:
                        raise MatFormatError("a compressed variable runs past the end of the file")
                    self.left -= len(chunk)
                    data = self.inflate.decompress(chunk, want)
                    self.tail = self.inflate.unconsumed_tail
                else:
                    data = self.inflate.flush() if not self.inflate.eof else b""
                    if not data:
                        raise MatFormatError("a compressed variable ends before its headers do")
                if data:
                    return data
        except zlib.error as err:
            raise MatFormatError(f"a compressed variable does not inflate ({err})") from None

    def read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self.buffer += self._more(max(BLOCK, n - len(self.buffer)))
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        self.pos += n
        return data

    def skip(self, n: int) -> None:
        self.pos += n
        while n > len(self.buffer):
            n -= len(self.buffer)
            self.buffer = self._more(min(BLOCK, n) if n else BLOCK)
        self.buffer = self.buffer[n:]


def _pad8(n: int) -> int:
    return (n + 7) & ~7


def _tag(stream, endian: str) -> tuple[int, int, bytes | None]:
    """``(data type, byte count, small-element data or None)`` of the next data element."""
    first, second = struct.unpack(endian + "II", stream.read(8))
    if first >> 16:  # small data element: size and type in 4 bytes, up to 4 bytes of data after
        size = first >> 16
        if size > 4:
            raise MatFormatError(f"a small data element claims {size} bytes")
        return first & 0xFFFF, size, struct.pack(endian + "I", second)[:size]
    return first, second, None


def _element(stream, endian: str, expected: tuple[int, ...], limit: int, what: str) -> bytes:
    mdtype, nbytes, small = _tag(stream, endian)
    if mdtype not in expected:
        raise MatFormatError(f"expected the {what} of an array, found data type {mdtype}")
    if small is not None:
        return small
    if nbytes > limit:
        raise MatFormatError(f"the {what} of an array claims {nbytes:,} bytes")
    data = stream.read(nbytes)
    stream.skip(_pad8(nbytes) - nbytes)
    return data


def _matrix(stream, nbytes: int, endian: str, counter, name: str, depth: int, leaves: list) -> str:
    """Walk one miMATRIX element of ``nbytes`` bytes whose tag was just read; append the dimensions
    of every array in it that is not a cell or struct to ``leaves``; return its name."""
    if depth > 32:
        raise MatFormatError("cell arrays or structs are nested more than 32 deep")
    if nbytes == 0:  # an empty array
        counter.add(ARRAY_OVERHEAD)
        leaves.append((0, 0))
        return ""
    end = stream.pos + nbytes
    flags = _element(stream, endian, (MI_UINT32,), 8, "flags")
    if len(flags) != 8:
        raise MatFormatError("the array flags are not 8 bytes")
    word, nzmax = struct.unpack(endian + "II", flags)
    cls, is_complex = word & 0xFF, bool(word & COMPLEX_FLAG)
    dims_raw = _element(stream, endian, (MI_INT32,), MAX_DIMS_BYTES, "dimensions")
    if not dims_raw or len(dims_raw) % 4:
        raise MatFormatError("the dimensions of an array are not whole int32 values")
    dims = struct.unpack(endian + f"{len(dims_raw) // 4}i", dims_raw)
    if min(dims) < 0:
        raise MatFormatError(f"an array has negative dimensions {dims}")
    if cls == OBJECT:  # the class name comes before the array name here: both are short strings
        _element(stream, endian, (MI_INT8,), MAX_NAME_BYTES, "class name")
    own = _element(stream, endian, (MI_INT8,), MAX_NAME_BYTES, "name").decode("latin1")
    label = f"{name}{own}" if not name or not own else f"{name}.{own}"
    count = math.prod(dims)
    if cls in (CELL, STRUCT, OBJECT):
        counter.add(ARRAY_OVERHEAD + count * CLASS_BYTES[cls])
        while stream.pos < end:
            mdtype, size, small = _tag(stream, endian)
            if small is not None:
                continue
            if mdtype == MI_MATRIX:
                _matrix(stream, size, endian, counter, label, depth + 1, leaves)
            else:  # field names of a struct
                counter.add(_pad8(size))
                stream.skip(_pad8(size))
    else:
        stored = end - stream.pos  # the data elements: loadmat keeps the stored type (mat_dtype=False)
        if cls == SPARSE:
            declared = nzmax * (16 if is_complex else 8) + nzmax * 4 + (dims[-1] + 1) * 8
        elif cls == CHAR:
            declared = count * CLASS_BYTES[CHAR]  # characters become 4-byte unicode
        else:
            declared = 0
        counter.add(ARRAY_OVERHEAD + max(declared, stored))
        leaves.append(dims)
        stream.skip(stored)
    if stream.pos != end:
        raise MatFormatError(f"the contents of {label or 'an array'} overrun its declared size")
    return own


def _check_v5(f, size: int, endian: str, limits: Limits, path) -> dict:
    variables = {}
    counter = limits.counter(path, "max_decoded_bytes", "the arrays the variables declare", "bytes")
    pos = 128
    while pos + 8 <= size:
        f.seek(pos)
        stream = _FileStream(f, size)
        mdtype, nbytes, small = _tag(stream, endian)
        if small is not None:
            pos += 8
            continue
        start = pos + 8
        if start + nbytes > size:
            raise MatFormatError(f"a variable at byte {pos:,} claims {nbytes:,} bytes, past the end of the file")
        if mdtype == MI_COMPRESSED:
            inner = _ZlibStream(f, nbytes)
            kind, inner_bytes, inner_small = _tag(inner, endian)
            if kind == MI_MATRIX and inner_small is None:
                limits.check(path, "max_decoded_bytes", inner_bytes,
                             f"a compressed variable at byte {pos:,} inflates to {inner_bytes:,} bytes")
                leaves = []
                variables.setdefault(_matrix(inner, inner_bytes, endian, counter, "", 0, leaves), leaves)
        elif mdtype == MI_MATRIX:
            leaves = []
            variables.setdefault(_matrix(stream, nbytes, endian, counter, "", 0, leaves), leaves)
        pos = start + nbytes
    return variables


_V4_BYTES = {0: 8, 1: 4, 2: 4, 3: 2, 4: 2, 5: 1}


def _check_v4(f, size: int, limits: Limits, path) -> dict:
    variables = {}
    counter = limits.counter(path, "max_decoded_bytes", "the arrays the variables declare", "bytes")
    pos = 0
    while pos < size:
        f.seek(pos)
        header = f.read(20)
        if len(header) < 20:
            raise MatFormatError("a MATLAB 4 variable header is cut short")
        mopt = struct.unpack("<i", header[:4])[0]
        endian = "<" if 0 <= mopt < 5000 else ">"
        mopt, rows, cols, imagf, namlen = struct.unpack(endian + "5i", header)
        zero, precision, kind = (mopt // 100) % 10, (mopt // 10) % 10, mopt % 10  # the thousands digit (machine format) is read from the byte order
        if not 0 <= mopt < 5000 or zero != 0 or precision not in _V4_BYTES or kind not in (0, 1):
            what = "a sparse MATLAB 4 matrix (not read)" if kind == 2 else f"MATLAB 4 type code {mopt}"
            raise MatFormatError(what)
        if rows < 0 or cols < 0 or not 0 < namlen <= MAX_NAME_BYTES:
            raise MatFormatError(f"a MATLAB 4 variable has {rows} x {cols} elements and a {namlen}-byte name")
        stored = rows * cols * _V4_BYTES[precision] * (2 if imagf else 1)
        counter.add(ARRAY_OVERHEAD + max(stored, rows * cols * CLASS_BYTES[CHAR] if kind == 1 else 0))
        f.seek(pos + 20)
        name = f.read(namlen).split(b"\0", 1)[0].decode("latin1")
        variables.setdefault(name, [(rows, cols)])
        pos += 20 + namlen + stored
    return variables


def check_mat_sizes(path, limits: Limits) -> dict[str, list[tuple[int, ...]]] | None:
    """Raise :class:`~pyrosequence.data.limits.LimitError` when the arrays that the ``.mat`` file
    ``path`` declares would take more than ``limits.max_decoded_bytes``; :class:`MatFormatError`
    when its headers do not parse. Reads headers only (see the module docstring).

    Returns ``{variable name: [dimensions of each array in it, in file order]}`` (for a cell array,
    the matrices in its cells; the first variable of a name wins, as in ``loadmat``), or ``None``
    for a file left to SciPy (MATLAB 7.3)."""
    with open(path, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(0)
        head = f.read(128)
        if len(head) >= 4 and 0 in head[:4]:
            return _check_v4(f, size, limits, path)
        if len(head) < 128:
            raise MatFormatError("shorter than the 128-byte header of a MATLAB 5 file")
        indicator = head[126:128]
        if indicator not in (b"IM", b"MI"):
            raise MatFormatError("no MATLAB 5 endian indicator in the header")
        endian = "<" if indicator == b"IM" else ">"
        version = struct.unpack(endian + "H", head[124:126])[0]
        if version != 0x0100:
            return None  # MATLAB 7.3 (HDF5) or unknown: SciPy reports it
        return _check_v5(f, size, endian, limits, path)
