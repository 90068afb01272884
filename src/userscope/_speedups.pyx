# cython: language_level=3
"""What the compiled core does in C; the pure twin is ``_speedups.py`` (same names).

* ``Lock``: a non-reentrant lock on CPython's own lock primitive. ``acquire()`` tries
  without blocking first and only releases the GIL to wait; typed callers (the
  compiled runtime) call ``acquire``/``release`` as C functions.
* ``LockBase``: the base of the lock-order checker's lock (here: ``Lock`` itself, so a
  checked lock is accepted wherever the compiled runtime expects a ``Lock``; it
  overrides ``acquire``/``release`` in Python).
* ``thread_ident()``, ``context_value(var)``, ``call(function, args, kwargs)``: C API
  calls the compiled providers make directly (``threading.get_ident()``,
  ``var.get()``, ``function(*args, **kwargs)`` without copying ``kwargs``).
"""

from cpython.pythread cimport (
    NOWAIT_LOCK,
    PyThread_acquire_lock,
    PyThread_allocate_lock,
    PyThread_free_lock,
    PyThread_release_lock,
)

cdef extern from "pythread.h":
    ctypedef enum _LockStatus "PyLockStatus":
        _ACQUIRED "PY_LOCK_ACQUIRED"
        _INTR "PY_LOCK_INTR"
    _LockStatus PyThread_acquire_lock_timed(
        PyThread_type_lock lock, long long microseconds, int intr_flag
    ) nogil

from cpython.contextvars cimport PyContextVar_Get
from cpython.exc cimport PyErr_CheckSignals
from cpython.object cimport PyObject_Call
from cpython.pythread cimport PyThread_get_thread_ident
from cpython.ref cimport PyObject, Py_XDECREF

__all__ = ["Lock", "LockBase", "call", "context_value", "thread_ident"]


cdef class Lock:
    """A non-reentrant lock: ``acquire(blocking=True, timeout=-1)``, ``release()``,
    ``locked()``, and a context manager, like ``threading.Lock``."""

    def __cinit__(self):
        self._lock = PyThread_allocate_lock()
        if self._lock == NULL:
            raise MemoryError("cannot allocate a lock")

    def __dealloc__(self):
        if self._lock != NULL:
            PyThread_free_lock(self._lock)
            self._lock = NULL

    cpdef bint acquire(self, bint blocking=True, double timeout=-1) except -1:
        cdef long long microseconds
        cdef _LockStatus got
        if PyThread_acquire_lock(self._lock, NOWAIT_LOCK):
            self._held = True
            return True
        if not blocking:
            if timeout != -1:
                raise ValueError("can't specify a timeout for a non-blocking call")
            return False
        if timeout < 0 and timeout != -1:
            raise ValueError("timeout value must be positive")
        microseconds = -1 if timeout == -1 else <long long>(timeout * 1e6)
        while True:
            with nogil:
                got = PyThread_acquire_lock_timed(self._lock, microseconds, 1)
            if got == _INTR:
                PyErr_CheckSignals()  # raises what a signal handler raised
                continue
            if got == _ACQUIRED:
                self._held = True
                return True
            return False

    cpdef release(self):
        # `_held` changes only while the lock is held, with the GIL held: no test-and-set
        # of the lock itself is needed to refuse releasing an unlocked lock
        if not self._held:
            raise RuntimeError("release unlocked lock")
        self._held = False
        PyThread_release_lock(self._lock)

    def locked(self):
        """Whether some thread holds the lock."""
        return self._held

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


LockBase = Lock


cpdef object thread_ident():
    """``threading.get_ident()``: the current thread's identifier."""
    return PyThread_get_thread_ident()


cpdef object context_value(object var):
    """``var.get()``: the variable's value, or its default (``LookupError`` if neither)."""
    cdef PyObject *value = NULL
    PyContextVar_Get(var, NULL, &value)
    if value is NULL:
        raise LookupError(var)
    result = <object>value
    Py_XDECREF(value)  # PyContextVar_Get returned a new reference
    return result


cpdef object call(object function, tuple args, dict kwargs):
    """``function(*args, **kwargs)``, handing ``kwargs`` over as it is (not copied): the
    caller must not use it afterwards."""
    return PyObject_Call(function, args, kwargs)
