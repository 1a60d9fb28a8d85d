"""A restricted unpickler for data files: plain containers, numbers, strings and NumPy arrays only.

Unpickling an untrusted file with :mod:`pickle` can run any code: a pickle names the callables
that rebuild its objects (``os.system`` as easily as ``list``). The original polyphonic-music files
(:mod:`pyrosequence.data.music`) are pickles, so they are read with :class:`SafeUnpickler`,
which resolves only these globals and refuses every other one with
``pickle.UnpicklingError("refusing to load module.name ...")``:

- ``builtins``: ``set``, ``frozenset``, ``list``, ``tuple``, ``dict``, ``int``, ``float``,
  ``object`` (and the Python 2 names ``__builtin__``/``copy_reg`` that the original files use);
- ``copyreg._reconstructor``, for plain objects only;
- ``numpy.ndarray``, ``numpy.dtype`` and ``numpy.core.multiarray._reconstruct`` / ``scalar``
  (``numpy._core`` too), which is how NumPy pickles its arrays and scalars.

Allowed is not trusted: each allowed callable is replaced by a checked one. Array shapes and
dtypes are checked against :class:`~pyrosequence.data.limits.Limits` (``max_total_steps`` per
dimension, ``max_decoded_bytes`` for all arrays and containers together) *before* NumPy
allocates, so a small file cannot ask for terabytes; an array's state may be set once, only on an
array ``_reconstruct`` made, and an array cannot be iterated before it has its state; a dtype is
built as a private copy when first used and cannot be changed afterwards (NumPy lets a dtype's
``__setstate__`` change a flexible item size in place, which would let an array read past its
memory); ``numpy.ndarray`` cannot be called directly; integers are capped at 4,300 digits. A
size refusal is a :class:`~pyrosequence.data.limits.LimitError` naming the file.
"""

from __future__ import annotations

import contextvars
import copyreg
import math
import pickle
import reprlib

import numpy as np

from pyrosequence.data.limits import Limits, resolve


def sized(obj) -> int | None:
    """``len(obj)`` for a container, ``None`` for anything without a length (a number, a 0-d array)."""
    if isinstance(obj, (str, bytes)):
        return None
    try:
        return len(obj)
    except TypeError:
        return None


_ITEM_BYTES = 64  # what one item of a list/tuple/set/dict that a pickle builds by a call is counted as


class _PickledArray(np.ndarray):
    """The class a pickle's arrays are rebuilt as: a plain ndarray whose ``__setstate__``
    (the pickle's BUILD) is checked by the unpickler that made it, and that a pickle cannot
    construct directly (only ``_reconstruct``, as NumPy pickles it, makes one)."""

    def __new__(cls, *args, **kwargs):
        raise pickle.UnpicklingError("refusing to call numpy.ndarray directly (NumPy pickles rebuild arrays with _reconstruct)")

    def __setstate__(self, state):
        checker = _UNPICKLING.get()
        if checker is None:
            return np.ndarray.__setstate__(self, state)
        checker.set_array_state(self, state)


class _DtypeSpec:
    """A dtype as a pickle describes it (the arguments of ``numpy.dtype`` and its BUILD state).

    The real ``numpy.dtype`` is made only when an array or scalar uses it, as a private copy, so the
    pickle can never change a dtype that an array already relies on (NumPy lets ``__setstate__``
    change the item size of a flexible dtype in place, which would let an array read past its
    memory)."""

    def __init__(self, args):
        self.args = args
        self.state = None
        self.dtype = None

    def __setstate__(self, state):
        if self.dtype is not None:
            raise pickle.UnpicklingError("refusing to change a numpy dtype after an array used it")
        self.state = state


_UNPICKLING: contextvars.ContextVar = contextvars.ContextVar("pyrosequence_unpickling", default=None)

try:  # NumPy >= 2 names the module numpy._core; the old name still works there, with a warning
    from numpy._core import multiarray as _multiarray
except ImportError:  # pragma: no cover - NumPy 1.x
    from numpy.core import multiarray as _multiarray


class SafeUnpickler(pickle.Unpickler):
    """Builds plain containers, numbers, strings and NumPy arrays; refuses every other global.

    Every allowed callable is replaced by a checked one, so sizes are refused *before* anything is
    allocated: an array's shape and dtype (``_reconstruct``, ``ndarray.__setstate__``, ``scalar``)
    against ``max_total_steps`` per dimension and ``max_decoded_bytes`` for all arrays together;
    the items of every list/tuple/set/dict built by a call against ``max_decoded_bytes`` too.
    A refusal is a :class:`LimitError` naming the file.
    """

    ALLOWED = {
        ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "list"), ("builtins", "tuple"),
        ("builtins", "dict"), ("builtins", "int"), ("builtins", "float"), ("copyreg", "_reconstructor"),
        ("builtins", "object"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
    }
    _PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}

    def __init__(self, file, path=None, limits: Limits | None = None, **kwargs):
        super().__init__(file, **kwargs)
        self.path = path if path is not None else getattr(file, "name", "pickle")
        self.limits = resolve(limits)
        self.decoded = self.limits.counter(self.path, "max_decoded_bytes", "the arrays and containers the pickle builds", "bytes")
        self.pending = {}  # id -> array made by _reconstruct and not yet given its state
        self.globals = {
            ("builtins", "set"): self._container(set),
            ("builtins", "frozenset"): self._container(frozenset),
            ("builtins", "list"): self._container(list),
            ("builtins", "tuple"): self._container(tuple),
            ("builtins", "dict"): self._container(dict),
            ("builtins", "int"): self._int,
            ("builtins", "float"): float,
            ("builtins", "object"): object,
            ("copyreg", "_reconstructor"): self._reconstructor,
            ("numpy", "ndarray"): _PickledArray,
            ("numpy", "dtype"): self._dtype_spec,
        }
        for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            self.globals[(module, "_reconstruct")] = self._reconstruct
            self.globals[(module, "scalar")] = self._scalar

    def load(self):
        token = _UNPICKLING.set(self)
        try:
            return super().load()
        finally:
            _UNPICKLING.reset(token)
            self.pending.clear()

    def find_class(self, module, name):
        module = self._PY2_MODULES.get(module, module)
        if (module, name) in self.ALLOWED:
            return self.globals[(module, name)]
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only lists, numbers and arrays are expected)")

    # -- checks
    def _shape(self, shape) -> tuple[int, ...]:
        if isinstance(shape, (int, np.integer)) and not isinstance(shape, (bool, np.bool_)):
            shape = (shape,)
        if not isinstance(shape, (tuple, list)) or len(shape) > 32:
            raise pickle.UnpicklingError(f"an array shape must be a tuple of at most 32 sizes, got {reprlib.repr(shape)}")
        dims = []
        for d in shape:
            if isinstance(d, (bool, np.bool_)) or not isinstance(d, (int, np.integer)) or d < 0:
                raise pickle.UnpicklingError(f"an array shape must hold sizes >= 0, got {reprlib.repr(shape)}")
            self.limits.check(self.path, "max_total_steps", int(d),
                              f"an array in the pickle has a dimension of {int(d):,} (shape {reprlib.repr(shape)})")
            dims.append(int(d))
        return tuple(dims)

    def _dtype(self, spec) -> np.dtype:
        if isinstance(spec, _DtypeSpec):
            if spec.dtype is None:
                spec.dtype = self._make_dtype(spec)
            return spec.dtype
        if isinstance(spec, (str, bytes)) and len(spec) <= 64:
            try:
                dtype = np.dtype(spec.decode("latin1") if isinstance(spec, bytes) else spec)
            except TypeError as err:
                raise pickle.UnpicklingError(f"not a NumPy type code: {spec!r} ({err})") from None
            return self._check_itemsize(dtype)
        raise pickle.UnpicklingError(f"expected a NumPy dtype, got {type(spec).__name__}")

    def _make_dtype(self, spec: _DtypeSpec) -> np.dtype:
        args = spec.args
        if not 1 <= len(args) <= 3 or not isinstance(args[0], (str, bytes)) or len(args[0]) > 64:
            raise pickle.UnpicklingError(f"unexpected numpy.dtype arguments {reprlib.repr(args)}")
        code = args[0].decode("latin1") if isinstance(args[0], bytes) else args[0]
        align = bool(args[1]) if len(args) > 1 else False
        dtype = np.dtype(code, align, True)  # always a new object: never a shared built-in dtype
        if spec.state is not None:
            dtype.__setstate__(self._resolve_state(spec.state))
        return self._check_itemsize(dtype)

    def _resolve_state(self, value, depth: int = 0):
        """A dtype state with the nested dtype descriptions (of fields, subarrays) made real."""
        if depth > 16:
            raise pickle.UnpicklingError("a numpy dtype nested more than 16 deep")
        if isinstance(value, _DtypeSpec):
            return self._dtype(value)
        if isinstance(value, tuple):
            return tuple(self._resolve_state(v, depth + 1) for v in value)
        if isinstance(value, dict):
            return {k: self._resolve_state(v, depth + 1) for k, v in value.items()}
        return value

    def _check_itemsize(self, dtype: np.dtype) -> np.dtype:
        self.limits.check(self.path, "max_decoded_bytes", dtype.itemsize,
                          f"a NumPy dtype in the pickle has items of {dtype.itemsize:,} bytes")
        return dtype

    def _count_array(self, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.decoded.add(math.prod(shape) * dtype.itemsize)

    # -- the allowed callables
    def _reconstruct(self, subtype, shape, dtype):
        if subtype is not _PickledArray:
            raise pickle.UnpicklingError("numpy _reconstruct may only rebuild a numpy.ndarray")
        shape, dtype = self._shape(shape), self._dtype(dtype)
        self._count_array(shape, dtype)
        array = _multiarray._reconstruct(_PickledArray, shape, dtype)
        self.pending[id(array)] = array
        return array

    def set_array_state(self, array, state) -> None:
        if self.pending.pop(id(array), None) is not array:
            raise pickle.UnpicklingError("refusing to set the state of an array twice (or of one not rebuilt by _reconstruct)")
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise pickle.UnpicklingError(f"unexpected numpy array state of type {type(state).__name__}")
        head = state[:-4]
        shape, dtype, fortran, raw = state[-4:]
        shape, dtype = self._shape(shape), self._dtype(dtype)
        self._count_array(shape, dtype)
        np.ndarray.__setstate__(array, head + (shape, dtype, fortran, raw))

    def _scalar(self, dtype, *args):
        dtype = self._dtype(dtype)
        self.decoded.add(dtype.itemsize)
        return _multiarray.scalar(dtype, *args)

    def _dtype_spec(self, *args):
        return _DtypeSpec(args)

    def _container(self, kind):
        def build(*args):
            if len(args) > 1:
                raise pickle.UnpicklingError(f"{kind.__name__}() takes at most one argument here")
            if args:
                if id(args[0]) in self.pending:
                    raise pickle.UnpicklingError("refusing to iterate an array before its state is set")
                items = sized(args[0])
                if items is None and not isinstance(args[0], (str, bytes)):
                    raise pickle.UnpicklingError(f"{kind.__name__}() of a {type(args[0]).__name__} (no length)")
                self.decoded.add(_ITEM_BYTES * (len(args[0]) if items is None else items))
            return kind(*args)

        build.__name__ = kind.__name__
        return build

    @staticmethod
    def _int(*args):
        if args and isinstance(args[0], (str, bytes)) and len(args[0]) > 4300:
            raise pickle.UnpicklingError(f"an integer of {len(args[0]):,} digits")
        return int(*args)

    @staticmethod
    def _reconstructor(cls, base, state):
        if base is not object or state is not None:
            raise pickle.UnpicklingError("copyreg._reconstructor is only accepted for plain objects")
        return copyreg._reconstructor(cls, object, None)
