"""Compiling the row loops with Numba, calling SciPy's BLAS and LAPACK, and caching them.

SciPy's own ``dsyrk``, ``dgemv`` and ``dposv`` (``scipy.linalg.cython_blas`` /
``cython_lapack``) are registered under fixed symbol names at import, so compiled code calls
them directly and cached machine code links again in a new process.

Compiling the loops takes about 5 s, so the machine code is cached on disk wherever the
package's source allows it (:func:`jit`), whatever way mfspark was imported:

- an installed package or a checkout: Numba's own cache, beside the source (``__pycache__``)
  or, where that is read-only, in Numba's per-user cache directory;
- a zip archive of any name (a ``.zip``, a ``.whl`` or an ``.egg`` on ``--py-files``, or
  ``zipimport`` in general), where Numba finds no source file to key its cache on: a
  per-user directory keyed by the package version and a hash of the module's source
  (:class:`ArchiveCacheLocator`);
- where neither is writable: compiled in each process, without a disk cache.

Which one was used is logged once, at info level.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import tempfile
from collections.abc import Callable
from typing import Any

from mfspark.version import __version__

log = logging.getLogger("mfspark")

try:
    from llvmlite import binding as _llvm
    from numba import njit, types
    from numba.core import caching
    from numba.extending import get_cython_function_address
except ImportError:  # pragma: no cover - exercised where Numba is absent
    njit = caching = None


def _register() -> bool:
    """Expose SciPy's ``dsyrk``, ``dgemv`` and ``dposv`` to compiled code by name."""
    try:
        for module, name in (("blas", "dsyrk"), ("blas", "dgemv"), ("lapack", "dposv")):
            address = get_cython_function_address(f"scipy.linalg.cython_{module}", name)
            _llvm.add_symbol(f"mfspark_{name}", address)
    except (ImportError, ValueError, AttributeError) as err:  # pragma: no cover
        log.warning("mfspark: compiled solver unavailable (%s); using the NumPy path", err)
        return False
    return True


#: Whether the compiled loops can run in this process (Numba and SciPy's entry points).
READY = njit is not None and _register()

if READY:
    _p = types.voidptr  # Fortran BLAS: every argument by reference
    dsyrk = types.ExternalFunction("mfspark_dsyrk", types.void(*[_p] * 10))
    dgemv = types.ExternalFunction("mfspark_dgemv", types.void(*[_p] * 11))
    dposv = types.ExternalFunction("mfspark_dposv", types.void(*[_p] * 8))
else:  # pragma: no cover
    dsyrk = dgemv = dposv = None


def user_cache_dir() -> str:
    """A writable per-user directory for this version's compiled code:
    ``$XDG_CACHE_HOME/mfspark`` (default ``~/.cache/mfspark``), else one under the
    temporary directory named after the user."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    for root in (os.path.join(base, "mfspark"),
                 os.path.join(tempfile.gettempdir(), f"mfspark-{os.getuid()}")):
        path = os.path.join(root, f"numba-{__version__}")
        try:
            os.makedirs(path, exist_ok=True)
            tempfile.TemporaryFile(dir=path).close()
        except OSError:
            continue
        return path
    raise OSError("no writable cache directory")


if caching is not None:
    class ArchiveCacheLocator(caching._CacheLocator):
        """Numba's cache for functions whose module was imported from a zip archive of any
        name: a per-user directory (:func:`user_cache_dir`), the source stamp a hash of
        the module's source text as its loader reads it from the archive."""

        def __init__(self, py_func: Callable, source: bytes, path: str) -> None:
            self._lineno = py_func.__code__.co_firstlineno
            self._stamp = hashlib.sha256(source).hexdigest()
            self._path = path

        def get_cache_path(self) -> str:
            return self._path

        def get_source_stamp(self) -> str:
            return self._stamp

        def get_disambiguator(self) -> str:
            return str(self._lineno)

        @classmethod
        def from_function(cls, py_func: Callable, py_file: str) -> Any:
            if os.path.exists(py_file):
                return None  # a real source file: Numba's own locators serve it
            module = sys.modules.get(py_func.__module__)
            loader = getattr(module, "__loader__", None)
            try:
                source = loader.get_source(py_func.__module__).encode("utf-8")
                path = user_cache_dir()
            except (AttributeError, ImportError, OSError):
                return None
            return cls(py_func, source, path)

    # consulted after Numba's locators of source files on disk, before its own for .zip
    # archives (so that every archive caches in the same per-version directory)
    _locators = (getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl"))
    _locators = _locators._locator_classes
    if ArchiveCacheLocator not in _locators:
        _zip = getattr(caching, "ZipCacheLocator", None)
        _locators.insert(_locators.index(_zip) if _zip in _locators else len(_locators),
                         ArchiveCacheLocator)

#: Where the compiled loops are cached in this process (None: not compiled yet, or no
#: disk cache); set by :func:`jit`.
CACHE: dict[str, str | None] = {}


def jit(fn: Callable) -> Callable:
    """``numba.njit`` with the disk cache of the module docstring (the function itself
    where Numba is absent: it is then never called)."""
    if not READY:
        return fn
    try:
        compiled = njit(cache=True)(fn)
        path = compiled._cache._cache_path
    except (RuntimeError, AttributeError, OSError) as err:
        compiled, path = njit(cache=False)(fn), None
        reason = str(err)
    else:
        reason = None
    if not CACHE:
        if path is None:
            log.info("mfspark: compiled solver has no disk cache here (%s); it is compiled "
                     "in each process", reason)
        else:
            log.info("mfspark: compiled solver cached in %s", path)
    CACHE[fn.__name__] = path
    return compiled
