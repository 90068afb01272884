# cython: language_level=3
"""What the compiled core does in C; the pure twin is ``_speedups.py`` (same names).

* ``Lock``: a non-reentrant lock whose uncontended ``acquire()``/``release()`` set and
  clear a flag under the GIL (no system call); only a thread that must wait blocks, on
  CPython's own lock primitive, with the GIL released. Typed callers (the compiled
  runtime) call ``acquire``/``release`` as C functions.
* ``LockBase``: the base of the lock-order checker's lock (here: ``Lock`` itself, so a
  checked lock is accepted wherever the compiled runtime expects a ``Lock``; it
  overrides ``acquire``/``release`` in Python).
* ``thread_ident()``, ``call(function, args, kwargs)``: C API calls the compiled
  providers make directly (``threading.get_ident()``, ``function(*args, **kwargs)``
  without copying ``kwargs``).
* ``ready(value)``: an awaitable that is already done (awaiting it gives ``value`` and
  never suspends), and ``DONE``, the one that gives ``None``: what the async scope
  methods hand back when nothing suspends, instead of a new coroutine. Awaiting one
  makes no coroutine frame and no exception object: the iterator stops by setting
  ``StopIteration``'s value the way CPython's own generators do.
* ``var_get``/``var_set``/``var_reset``: ``ContextVar.get()``/``.set()``/``.reset()``
  as C calls (the scope classes switch the active frame with them; a Python-level call
  of the bound method costs about three times as much).
* ``screened(awaitable, small, slow)``: await ``awaitable`` (a server's ``receive()``) and
  hand back its message when it is a text of at most ``small`` characters, else what
  ``slow(message)`` gives: the FastAPI adapter's WebSocket receive guard in its steady
  state, as a C awaitable (no coroutine frame per message; ``await`` goes through its
  ``am_send`` slot). ``watched(deadline, awaitable, small, slow, expired, fallback)``:
  the same awaitable for credentials that expire, its task registered with the
  connection's expiry deadline (``DeadlineSlots``) while it waits (the protocol is the
  pure twin's).
* ``agen_step(agen, exc)``: an async generator finalizer's step (``__anext__()`` or
  ``athrow(exc)``) run until it first suspends, through the C slots (no bound methods).
* ``monotonic()``: ``time.monotonic()`` as a C call (``clock_gettime``, the same clock
  and the same double); ``context_slot(ctx)``: a context's key in a session table, read
  from the model's fields directly (a pydantic model's attribute access goes through
  its ``__getattr__`` hook); ``dict_get(mapping, key)``: ``mapping.get(key)`` as a C
  lookup (the session table is an ``OrderedDict``, whose ``get`` is a method call).
* ``running_loop()``: ``asyncio._get_running_loop()`` without, on 3.11, its
  ``getpid()`` system call per lookup (cached per running-loop holder, forgotten at
  fork); ``running_task()``: ``asyncio.current_task()`` on top of it (``None`` off a
  loop); ``request_id()``: a random UUID4's hex from a pool of ``os.urandom()`` bytes
  (one system call per 256 ids, a new pool in a forked child); ``child_context(ctx)``:
  ``ctx.for_request()``'s copy with a fresh id, its steps as C calls.
"""

cimport cython
from collections.abc import Coroutine

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

from cpython.contextvars cimport PyContextVar_Get, PyContextVar_Reset, PyContextVar_Set
from cpython.dict cimport PyDict_Check, PyDict_CheckExact, PyDict_Copy, PyDict_GetItemWithError
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec
from cpython.exc cimport (
    PyErr_CheckSignals,
    PyErr_Fetch,
    PyErr_NormalizeException,
    PyErr_Restore,
    PyErr_SetObject,
)
from cpython.object cimport PyObject, PyObject_Call
from cpython.pythread cimport PyThread_get_thread_ident
from cpython.ref cimport Py_DECREF, Py_INCREF, Py_XDECREF

from asyncio import CancelledError
from asyncio import current_task as _current_task

cdef extern from *:
    """
    /* agen_step: start one step of an async generator (`__anext__()`, or `athrow(exc)`
       when exc is not None) and run it until it first suspends. NULL with the error
       set when the step raised anything but StopAsyncIteration. */
    static PyObject *userscope_agen_step(PyObject *agen, PyObject *exc) {
        PyObject *step, *result = NULL, *outcome;
        PyAsyncMethods *am = Py_TYPE(agen)->tp_as_async;
        if (exc != Py_None)
            step = PyObject_CallMethod(agen, "athrow", "O", exc);
        else if (am != NULL && am->am_anext != NULL)
            step = am->am_anext(agen);
        else
            step = PyObject_CallMethod(agen, "__anext__", NULL);
        if (step == NULL)
            return NULL;
        switch (PyIter_Send(step, Py_None, &result)) {
        case PYGEN_NEXT:  /* suspended: the caller awaits the rest */
            outcome = PyTuple_Pack(3, Py_True, step, result);
            Py_DECREF(result);
            break;
        case PYGEN_RETURN:  /* the generator yielded again */
            Py_DECREF(result);
            outcome = PyTuple_Pack(3, Py_False, Py_None, Py_None);
            break;
        default:
            if (PyErr_ExceptionMatches(PyExc_StopAsyncIteration)) {  /* it finished */
                PyErr_Clear();
                Py_INCREF(Py_None);
                outcome = Py_None;
            } else {
                outcome = NULL;
            }
        }
        Py_DECREF(step);
        return outcome;
    }
    """
    object userscope_agen_step(object agen, object exc)

cdef extern from *:
    """
    /* the result of an am_send step as a Python-level `send()` gives it: the yielded
       value, or NULL with StopIteration(value) (or the step's error) set */
    static PyObject *userscope_send_result(int status, PyObject *result) {
        PyObject *stop;
        if (status == PYGEN_NEXT)
            return result;
        if (status == PYGEN_RETURN) {
            if (result == Py_None) {
                PyErr_SetNone(PyExc_StopIteration);
            } else {
                stop = PyObject_CallOneArg(PyExc_StopIteration, result);
                if (stop != NULL) {
                    PyErr_SetObject(PyExc_StopIteration, stop);
                    Py_DECREF(stop);
                }
            }
            Py_DECREF(result);
        }
        return NULL;
    }
    """
    object userscope_send_result(int status, PyObject* result)

cdef extern from *:
    """
    /* `iter.throw(error)` as an am_send step: PYGEN_NEXT with what it yielded,
       PYGEN_RETURN with StopIteration's value, or PYGEN_ERROR with the error set */
    static PySendResult userscope_throw(PyObject *iter, PyObject *error, PyObject **result) {
        PyObject *kind, *stop, *trace, *value;
        value = PyObject_CallMethod(iter, "throw", "O", error);
        if (value != NULL) {
            *result = value;
            return PYGEN_NEXT;
        }
        if (!PyErr_ExceptionMatches(PyExc_StopIteration)) {
            *result = NULL;
            return PYGEN_ERROR;
        }
        PyErr_Fetch(&kind, &stop, &trace);
        PyErr_NormalizeException(&kind, &stop, &trace);
        value = stop != NULL ? PyObject_GetAttrString(stop, "value") : Py_NewRef(Py_None);
        Py_XDECREF(kind);
        Py_XDECREF(stop);
        Py_XDECREF(trace);
        *result = value;
        return value != NULL ? PYGEN_RETURN : PYGEN_ERROR;
    }
    """

cdef extern from "Python.h":
    object PyObject_GenericGetDict(object obj, void* context)
    int PyObject_GenericSetDict(object obj, object value, void* context) except -1
    object PyObject_GenericGetAttr(object obj, object name)
    int PyObject_GenericSetAttr(object obj, object name, object value) except -1
    object PyNumber_Or(object left, object right)
    ctypedef PyObject* (*_iternextfunc "iternextfunc")(PyObject*)
    ctypedef enum PySendResult:
        PYGEN_RETURN
        PYGEN_ERROR
        PYGEN_NEXT
    ctypedef PySendResult (*_sendfunc "sendfunc")(PyObject*, PyObject*, PyObject**)
    ctypedef struct _AsyncMethods "PyAsyncMethods":
        _sendfunc am_send
    ctypedef struct _TypeObject "PyTypeObject":
        _iternextfunc tp_iternext
        _AsyncMethods* tp_as_async
    void PyType_Modified(_TypeObject* type)
    PySendResult PyIter_Send(PyObject* iter, PyObject* arg, PyObject** presult)
    PyObject* _dict_item "PyDict_GetItemWithError"(PyObject* mapping, PyObject* key)
    PyObject* _call_one "PyObject_CallOneArg"(PyObject* function, PyObject* arg)
    bint _is_dict "PyDict_CheckExact"(PyObject* obj)
    bint _is_str "PyUnicode_CheckExact"(PyObject* obj)
    bint _is_coroutine "PyCoro_CheckExact"(PyObject* obj)
    Py_ssize_t _str_length "PyUnicode_GET_LENGTH"(PyObject* obj)
    PyObject* _error_set "PyErr_Occurred"()
    void _decref "Py_DECREF"(PyObject* obj)
    PyObject* PyThreadState_GetDict()
    object PyUnicode_New(Py_ssize_t size, Py_UCS4 maxchar)
    void* PyUnicode_DATA(object text)
    PySendResult userscope_throw(PyObject* iter, PyObject* error, PyObject** result)

__all__ = [
    "DONE",
    "DeadlineSlots",
    "Lock",
    "LockBase",
    "agen_step",
    "call",
    "child_context",
    "context_slot",
    "dict_get",
    "monotonic",
    "ready",
    "request_id",
    "running_loop",
    "running_task",
    "screened",
    "thread_ident",
    "var_get",
    "var_reset",
    "var_set",
    "watched",
]


cdef class Lock:
    """A non-reentrant lock: ``acquire(blocking=True, timeout=-1)``, ``release()``,
    ``locked()``, and a context manager, like ``threading.Lock``.

    Who holds it is the ``_held`` flag, tested and set with the GIL held (no other
    thread runs in between, as for any C code that calls nothing of Python's): an
    uncontended ``acquire``/``release`` is a flag and nothing else, no system call.
    Only a thread that must wait touches ``_baton``, a CPython lock kept locked while
    nobody waits: it counts itself in ``_waiters`` and blocks on the baton with the GIL
    released. ``release`` with waiters hands the lock over instead of freeing it
    (``_held`` stays set, ``_handoff`` is set, the baton is released: exactly one
    waiter takes it), so a newcomer cannot barge in between. A waiter whose wait timed
    out or was interrupted takes the GIL, leaves the count, and then tries the baton
    once more without blocking: a handover that raced with its timeout is taken, not
    lost (the count and the handover change only with the GIL held, so a release sees
    either the waiter still counted, and then the waiter finds the baton, or gone).
    """

    def __cinit__(self):
        self._baton = PyThread_allocate_lock()
        if self._baton == NULL:
            raise MemoryError("cannot allocate a lock")
        PyThread_acquire_lock(self._baton, NOWAIT_LOCK)  # locked while nobody waits

    def __dealloc__(self):
        if self._baton != NULL:
            PyThread_free_lock(self._baton)
            self._baton = NULL

    cpdef bint acquire(self, bint blocking=True, double timeout=-1) except -1:
        if not self._held:  # the GIL is held: nothing runs between the test and the set
            self._held = True
            return True
        if not blocking:
            if timeout != -1:
                raise ValueError("can't specify a timeout for a non-blocking call")
            return False
        if timeout < 0 and timeout != -1:
            raise ValueError("timeout value must be positive")
        return self._wait(-1 if timeout == -1 else <long long>(timeout * 1e6))

    cdef bint _wait(self, long long microseconds) except -1:
        """Wait for a handover (the lock is held by another thread)."""
        cdef _LockStatus got
        self._waiters += 1
        while True:
            with nogil:
                got = PyThread_acquire_lock_timed(self._baton, microseconds, 1)
            if got == _ACQUIRED:  # handed over: `_held` stayed set for this thread
                self._waiters -= 1
                self._handoff = False
                return True
            if got == _INTR:
                try:
                    PyErr_CheckSignals()  # raises what a signal handler raised
                except BaseException:
                    self._waiters -= 1
                    if PyThread_acquire_lock(self._baton, NOWAIT_LOCK):  # handed over
                        self._handoff = False
                        self._pass_on()  # ... to a thread that is not leaving
                    raise
                continue
            # timed out; a handover may have raced with the timeout: take it then
            self._waiters -= 1
            if PyThread_acquire_lock(self._baton, NOWAIT_LOCK):
                self._handoff = False
                return True
            return False

    cdef void _pass_on(self) noexcept:
        """Let the lock go (held by the caller): hand it to a waiter, or free it."""
        if self._waiters:
            self._handoff = True
            PyThread_release_lock(self._baton)  # exactly one waiter takes it
        else:
            self._held = False

    cpdef release(self):
        # `_held`, `_waiters` and `_handoff` change only with the GIL held
        if not self._held:
            raise RuntimeError("release unlocked lock")
        if self._handoff:  # being handed to a waiter: only that waiter may release it
            raise RuntimeError("release of a lock that is being handed to a waiting thread")
        self._pass_on()

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


cpdef object call(object function, tuple args, dict kwargs):
    """``function(*args, **kwargs)``, handing ``kwargs`` over as it is (not copied): the
    caller must not use it afterwards."""
    return PyObject_Call(function, args, kwargs)
@cython.freelist(16)
cdef class Ready:
    """An awaitable that is already done: ``await ready(value)`` gives ``value``.

    Its own iterator (``__await__`` returns it); the first step stops at once. It also
    has a coroutine's ``send``/``throw``/``close`` and is registered as a
    ``collections.abc.Coroutine``, so ``asyncio.create_task()`` accepts it like the
    coroutine it stands for (``asyncio.iscoroutine()`` is true of it).
    """

    def __await__(self):
        return self

    def send(self, value):
        """The first step: stops at once with the value, whatever is sent."""
        raise StopIteration(self.value)

    def throw(self, typ, val=None, tb=None):
        """An exception thrown in before the first step propagates, as from a coroutine
        that never started."""
        raise _thrown(typ, val, tb)

    def close(self):
        """Nothing to close: it holds no frame."""


cdef object _thrown(object typ, object val, object tb):
    # the exception a coroutine's `throw(typ, val, tb)` raises (any of its call forms)
    if val is None:
        error = typ() if isinstance(typ, type) else typ
    else:
        error = val if isinstance(val, BaseException) else typ(val)
    if tb is not None:
        error = error.with_traceback(tb)
    return error


cdef PyObject* _ready_next(PyObject* self) noexcept:
    # tp_iternext of Ready: stop at once with the value. NULL with no error set stops
    # with None; a tuple or an exception as the value must travel inside a
    # StopIteration instance, anything else is set as StopIteration's bare value
    # (CPython's own `_PyGen_SetStopIterationValue` makes the same choice).
    value = (<Ready>self).value
    if value is None:
        return NULL
    if isinstance(value, (tuple, BaseException)):
        value = StopIteration(value)
    PyErr_SetObject(StopIteration, value)
    return NULL


cdef PySendResult _ready_send(PyObject* self, PyObject* arg, PyObject** result) noexcept:
    # am_send of Ready: what `await` calls first (`PyIter_Send`, and Cython's own
    # coroutines): return the value directly, no StopIteration raised and caught per await
    value = (<Ready>self).value
    Py_INCREF(value)
    result[0] = <PyObject*>value
    return PYGEN_RETURN


(<_TypeObject*>Ready).tp_iternext = _ready_next
(<_TypeObject*>Ready).tp_as_async.am_send = _ready_send
PyType_Modified(<_TypeObject*>Ready)


cpdef object ready(object value):
    """An awaitable already done with ``value`` (allocated from a free list)."""
    cdef Ready done = Ready.__new__(Ready)
    done.value = value
    return done


Coroutine.register(Ready)

DONE = ready(None)


cdef str _TEXT = "text"


cdef class DeadlineSlots:
    """The fields of a connection's expiry deadline that its watched receives read and
    write (``watched()``): the timer's ``handle`` (``None`` once it ran or was dropped),
    the ``waiter`` task registered by the pending receive, and the task the deadline
    ``fired`` on, until that receive took its cancellation back. The FastAPI adapter's
    ``ExpiryDeadline`` subclasses it."""

    cdef public object handle
    cdef public object waiter
    cdef public object fired


@cython.freelist(8)
cdef class Screened:
    """What ``screened()`` and ``watched()`` return: an awaitable of the screened message.

    Its own iterator (``__await__`` returns it); ``await`` steps it through its
    ``am_send`` slot. It delegates every step to the awaitable it screens, then to the
    slow path's (or, a watched receive that expired, to ``expired()``'s), and has a
    coroutine's ``send``/``throw``/``close`` (registered as a
    ``collections.abc.Coroutine``, so ``asyncio.create_task()`` takes it).
    """

    cdef object _inner  # the iterator stepped now; None: a watched receive not started
    cdef Py_ssize_t _small
    cdef object _slow  # None once the message went to the slow path (or expired)
    # a watched receive (`watched()`; all None for `screened()`):
    cdef DeadlineSlots _deadline  # the deadline, until the receive ended
    cdef object _task  # the task registered as the deadline's waiter, while it is
    cdef object _base  # that task's `cancelling()` count when it registered
    cdef object _receive  # the receive's awaitable, until it is stepped
    cdef object _expired
    cdef object _fallback

    def __await__(self):
        return self

    def __next__(self):
        return self.send(None)

    def send(self, value):
        """One step, ``value`` sent into the awaitable stepped now."""
        cdef PyObject* result = NULL
        status = _screened_send(<PyObject*>self, <PyObject*>value, &result)
        return userscope_send_result(status, result)

    def throw(self, typ, val=None, tb=None):
        """Throw into the awaitable stepped now (a cancellation reaches the server's
        receive); a message it still returns is screened as any other."""
        cdef PyObject* value = NULL
        cdef PyObject* result = NULL
        error = _thrown(typ, val, tb)
        if self._inner is None:  # a watched receive not started: raised as it stands
            self._drop_watch()
            self._inner = _DONE_ITER
            raise error
        status = userscope_throw(<PyObject*>self._inner, <PyObject*>error, &value)
        status = _screened_after(self, status, value, &result)
        return userscope_send_result(status, result)

    def close(self):
        """Close the awaitable stepped now; nothing more is screened (a watched
        receive leaves its deadline, as the coroutine it stands for does)."""
        self._slow = None
        close = getattr(self._inner, "close", None)
        if close is not None:
            close()
        cdef DeadlineSlots deadline
        task = self._task
        if task is not None:
            self._task = None
            deadline = self._deadline
            deadline.waiter = None
            if deadline.fired is task:
                deadline.fired = None
                task.uncancel()
        self._drop_watch()

    cdef void _drop_watch(self) noexcept:
        self._deadline = None
        self._receive = None
        self._expired = None
        self._fallback = None

    cdef int _start(self) except -1:
        # a watched receive's first step: register with the deadline and step the
        # receive, or (the deadline cannot watch it) close that and start the fallback
        cdef DeadlineSlots deadline = self._deadline
        awaitable = self._receive
        self._receive = None
        if deadline.handle is not None and deadline.waiter is None:
            task = running_task()
            if task is not None:
                self._base = task.cancelling()
                deadline.waiter = task
                self._task = task
                try:
                    self._inner = _await_iter(awaitable)
                except BaseException:
                    deadline.waiter = None
                    self._task = None
                    self._drop_watch()
                    self._inner = _DONE_ITER
                    raise
                return 0
        fallback = self._fallback
        self._drop_watch()
        self._inner = _DONE_ITER
        close = getattr(awaitable, "close", None)
        if close is not None:
            close()  # never started: the fallback receives instead
        self._inner = _await_iter(fallback())
        return 0

    cdef PySendResult _unwatch(
        self, PySendResult status, PyObject* value, PyObject** result
    ) except PYGEN_ERROR:
        # the watched receive ended (returned `value`, or raised: the error is set):
        # leave the deadline; when it was the deadline that cancelled it, the outcome is
        # `expired()`'s, else the message is screened or the error propagates
        cdef PyObject* kind = NULL
        cdef PyObject* error = NULL
        cdef PyObject* trace = NULL
        cdef DeadlineSlots deadline = self._deadline
        task, self._task = self._task, None
        expired = self._expired
        self._drop_watch()
        deadline.waiter = None
        if status == PYGEN_RETURN:
            if deadline.fired is not task:
                return _screened_after(self, status, value, result)
            _decref(value)  # the server's receive swallowed the cancellation
            deadline.fired = None
            task.uncancel()
        else:
            if deadline.fired is not task:
                return PYGEN_ERROR  # not the expiry: someone else's cancellation, or an error
            deadline.fired = None
            PyErr_Fetch(&kind, &error, &trace)
            PyErr_NormalizeException(&kind, &error, &trace)
            try:
                counted = task.uncancel()
            except BaseException:
                Py_XDECREF(kind)
                Py_XDECREF(error)
                Py_XDECREF(trace)
                raise
            if counted > self._base or not isinstance(<object>error, CancelledError):
                PyErr_Restore(kind, error, trace)  # another cancellation came too: it wins
                return PYGEN_ERROR
            Py_XDECREF(kind)
            Py_XDECREF(error)
            Py_XDECREF(trace)
        self._slow = None
        self._inner = _await_iter(expired())
        return PyIter_Send(<PyObject*>self._inner, <PyObject*>None, result)


cdef object _DONE_ITER = iter(())  # what a receive that failed to start steps: nothing

cdef object _await_iter(object awaitable):
    # what `await awaitable` steps: a coroutine itself, else its `__await__()`
    if _is_coroutine(<PyObject*>awaitable):
        return awaitable
    return awaitable.__await__()


cdef PySendResult _screened_send(
    PyObject* self, PyObject* arg, PyObject** result
) except PYGEN_ERROR:
    # am_send of Screened (an error is PYGEN_ERROR with the exception set, as the slot
    # wants): step the awaitable, then see to its outcome
    cdef Screened screened = <Screened>self
    cdef PyObject* value = NULL
    if screened._inner is None:
        screened._start()
    cdef PySendResult status = PyIter_Send(<PyObject*>screened._inner, arg, &value)
    if status == PYGEN_NEXT:
        result[0] = value
        return status
    return _screened_after(screened, status, value, result)


cdef inline PySendResult _screened_after(
    Screened screened, PySendResult status, PyObject* value, PyObject** result
) except PYGEN_ERROR:
    # the outcome of one step (`value`: what it yielded or returned, NULL on an error,
    # whose reference goes on): a watched receive leaves its deadline; a returned message
    # comes back when it passes, else the slow path takes over and is started here
    cdef PyObject* text
    if status == PYGEN_NEXT:
        result[0] = value
        return status
    if screened._task is not None:
        return screened._unwatch(status, value, result)
    if status != PYGEN_RETURN or screened._slow is None:
        result[0] = value
        return status
    if _is_dict(value):
        text = _dict_item(value, <PyObject*>_TEXT)
        if text != NULL:
            if _is_str(text) and _str_length(text) <= screened._small:
                result[0] = value  # the step's reference goes to the caller
                return PYGEN_RETURN
        elif _error_set() != NULL:
            _decref(value)
            return PYGEN_ERROR
    message = <object>value
    _decref(value)  # `message` holds its own reference
    slow, screened._slow = screened._slow, None
    screened._inner = _await_iter(slow(message))
    return PyIter_Send(<PyObject*>screened._inner, <PyObject*>None, result)


(<_TypeObject*>Screened).tp_as_async.am_send = <_sendfunc>_screened_send
PyType_Modified(<_TypeObject*>Screened)
Coroutine.register(Screened)


cpdef object screened(object awaitable, Py_ssize_t small, object slow):
    """An awaitable of ``awaitable``'s message (a server's ``receive()``): the message
    itself when it is a dict whose ``"text"`` is a str of at most ``small`` characters,
    else what ``await slow(message)`` gives."""
    cdef Screened guard = Screened.__new__(Screened)
    guard._inner = _await_iter(awaitable)
    guard._small = small
    guard._slow = slow
    return guard


cpdef object watched(
    object deadline,
    object awaitable,
    Py_ssize_t small,
    object slow,
    object expired,
    object fallback,
):
    """``await awaitable`` (a server's ``receive()``) watched by ``deadline`` (the
    connection's expiry deadline), screened as ``screened()`` does; see the pure twin for
    the protocol. Nothing is registered before the first step."""
    cdef Screened guard = Screened.__new__(Screened)
    guard._small = small
    guard._slow = slow
    guard._deadline = deadline
    guard._receive = awaitable
    guard._expired = expired
    guard._fallback = fallback
    return guard


cpdef object var_get(object var):
    """``var.get()``: its value in the current context, else its default."""
    cdef PyObject* value = NULL
    PyContextVar_Get(var, NULL, &value)
    if value == NULL:
        raise LookupError(var)
    result = <object>value
    Py_DECREF(result)  # PyContextVar_Get handed over a reference; `result` took its own
    return result


cpdef object var_set(object var, object value):
    """``var.set(value)``: returns the token."""
    return PyContextVar_Set(var, value)


cpdef object var_reset(object var, object token):
    """``var.reset(token)``."""
    PyContextVar_Reset(var, token)


cpdef double monotonic() except? -1:
    """``time.monotonic()``: the same clock (``CLOCK_MONOTONIC``), the same double."""
    cdef timespec now
    cdef long long nanoseconds
    if clock_gettime(CLOCK_MONOTONIC, &now) != 0:
        from time import monotonic as _monotonic  # the error as Python reports it

        return _monotonic()
    nanoseconds = <long long>now.tv_sec * 1000000000 + now.tv_nsec
    return <double>nanoseconds / 1e9  # what CPython's time.monotonic() computes


cpdef object context_slot(object ctx):
    """A context's key in a session table: ``user_id`` without a tenant, else
    ``(tenant_id, user_id)``, read from the instance's fields (its ``__dict__``) directly;
    through the attributes when they are not there."""
    cdef PyObject* user_id
    cdef PyObject* tenant_id
    fields = PyObject_GenericGetDict(ctx, NULL)
    if PyDict_CheckExact(fields):
        user_id = PyDict_GetItemWithError(fields, "user_id")
        tenant_id = PyDict_GetItemWithError(fields, "tenant_id")
        if user_id != NULL and tenant_id != NULL:
            if <object>tenant_id is None:
                return <object>user_id
            return (<object>tenant_id, <object>user_id)
    tenant = ctx.tenant_id
    return ctx.user_id if tenant is None else (tenant, ctx.user_id)


cpdef object dict_get(object mapping, object key):
    """``mapping.get(key)``; a dict (or a subclass that keeps dict's lookup, such as
    ``OrderedDict``) is looked up in C."""
    cdef PyObject* value
    if not PyDict_Check(mapping):
        return mapping.get(key)
    value = PyDict_GetItemWithError(mapping, key)
    return None if value == NULL else <object>value


cpdef object agen_step(object agen, object exc):
    """Start ``agen.__anext__()`` (or ``agen.athrow(exc)`` when ``exc`` is not ``None``)
    and run it until it first suspends. ``None``: the generator finished
    (``StopAsyncIteration``); ``(True, step, yielded)``: the step suspended (await the
    rest of ``step``, which yielded ``yielded``); ``(False, None, None)``: the generator
    yielded again. Anything else the step raised propagates."""
    return userscope_agen_step(agen, exc)


import asyncio.tasks
import os
import sys
from asyncio import _get_running_loop

# the running task of each loop (what `asyncio.current_task()` reads), where this
# Python keeps it in a dict
_tasks_by_loop = getattr(asyncio.tasks, "_current_tasks", None)
cdef dict _TASKS = _tasks_by_loop if type(_tasks_by_loop) is dict else None


# Python 3.11 keeps the running loop in a holder object in the thread's state dict, and
# checks the holder's process id against getpid() -- a system call -- on every lookup;
# 3.12 on keep it without that check (no cache needed there)
cdef bint _HOLDERS = (
    sys.version_info < (3, 12) and getattr(_get_running_loop, "__module__", None) == "_asyncio"
)
cdef str _LOOP_KEY = "__asyncio_running_event_loop__"
# (holder, its loop): the holder last looked up (a strong reference, so that its
# address is never another holder's) and the loop asyncio found in it; one tuple,
# replaced whole
cdef tuple _last_loop = (None, None)


# random bytes for request ids, drawn from os.urandom() 4 KiB at a time (one system call
# per 256 ids instead of one per id); taken 16 at a time with the GIL held
cdef Py_ssize_t _POOL_SIZE = 4096
cdef bytes _pool = b""
cdef Py_ssize_t _pool_at = 0


def _after_fork():
    # in a child process after fork(): the parent's running-loop holder is not running
    # here, and the bytes left in the pool are the parent's next request ids
    global _last_loop, _pool, _pool_at
    _last_loop = (None, None)
    _pool = b""
    _pool_at = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


cdef char* _HEX = b"0123456789abcdef"


cpdef str request_id():
    """A random UUID4 as 32 lowercase hex digits (what ``uuid.uuid4().hex`` gives), from
    a pool of ``os.urandom()`` bytes refilled 4 KiB at a time; a forked child starts a
    pool of its own."""
    global _pool, _pool_at
    cdef unsigned char byte
    cdef Py_ssize_t at, i
    if _pool_at + 16 > len(_pool):
        fresh = os.urandom(_POOL_SIZE)  # may let other threads run: they may refill too
        _pool = fresh
        _pool_at = 0
    pool = _pool  # held here: the bytes stay valid whatever replaces the pool
    at = _pool_at  # reserved before anything else can run: no other thread takes them
    _pool_at = at + 16
    cdef const unsigned char* raw = <const unsigned char*><char*>pool
    text = PyUnicode_New(32, 127)
    cdef unsigned char* out = <unsigned char*>PyUnicode_DATA(text)
    for i in range(16):
        byte = raw[at + i]
        if i == 6:
            byte = (byte & 0x0F) | 0x40  # version 4
        elif i == 8:
            byte = (byte & 0x3F) | 0x80  # RFC 4122 variant
        out[2 * i] = _HEX[byte >> 4]
        out[2 * i + 1] = _HEX[byte & 0x0F]
    return text


cpdef object running_loop():
    """``asyncio._get_running_loop()``: this thread's running event loop, or ``None``.

    On Python 3.11 the answer is cached per holder (what ``asyncio._set_running_loop()``
    puts in the thread's state): the same holder as last time gives the same loop without
    asyncio's ``getpid()`` system call (about 200 ns each). A child process forgets the
    cache at fork. Elsewhere, asyncio's own call.
    """
    global _last_loop
    cdef PyObject* state
    cdef PyObject* holder
    if not _HOLDERS:
        return _get_running_loop()
    state = PyThreadState_GetDict()
    if state == NULL:
        return _get_running_loop()
    holder = _dict_item(state, <PyObject*>_LOOP_KEY)
    if holder == NULL:
        if _error_set() != NULL:
            raise
        _last_loop = (None, None)  # no loop runs here: let the last one go
        return None
    last = _last_loop
    if <object>holder is last[0]:
        return last[1]
    loop = _get_running_loop()
    _last_loop = (<object>holder, loop)
    return loop


cpdef object running_task():
    """``asyncio.current_task()`` as C calls, ``None`` off a running loop (no error): the
    task of this thread's running loop, read from asyncio's loop-to-task dict; asyncio's
    own answer where the dict has no entry (a loop callback, or a Python whose asyncio
    no longer keeps that dict)."""
    cdef PyObject* task
    loop = running_loop()
    if loop is None:
        return None
    if _TASKS is not None:
        task = PyDict_GetItemWithError(_TASKS, loop)
        if task != NULL:
            return <object>task
        if _error_set() != NULL:
            raise
    return _current_task(loop)


cdef frozenset _COPIED = frozenset({"request_id", "metadata"})  # set anew in a child
cdef str _REQUEST_ID = "request_id"
cdef str _METADATA = "metadata"
cdef str _FIELDS_SET = "__pydantic_fields_set__"
cdef str _EXTRA = "__pydantic_extra__"
cdef str _PRIVATE = "__pydantic_private__"


cpdef object child_context(object ctx):
    """``ctx`` copied with a fresh ``request_id()`` (``ctx.for_request()``): the pure
    twin's steps as C calls (allocation, the field dict's copy, the model's slots set
    past its frozen ``__setattr__``)."""
    cdef type kind = type(ctx)
    child = object.__new__(kind)  # as the pure twin: no subclass __new__ runs
    fields = PyDict_Copy(PyObject_GenericGetDict(ctx, NULL))
    fields[_REQUEST_ID] = request_id()
    metadata = fields[_METADATA]
    fields[_METADATA] = PyDict_Copy(metadata) if PyDict_CheckExact(metadata) else dict(metadata)
    PyObject_GenericSetDict(child, fields, NULL)
    PyObject_GenericSetAttr(
        child, _FIELDS_SET, PyNumber_Or(PyObject_GenericGetAttr(ctx, _FIELDS_SET), _COPIED)
    )
    extra = PyObject_GenericGetAttr(ctx, _EXTRA)
    PyObject_GenericSetAttr(child, _EXTRA, None if extra is None else dict(extra))
    private = PyObject_GenericGetAttr(ctx, _PRIVATE)
    PyObject_GenericSetAttr(child, _PRIVATE, None if private is None else dict(private))
    return child
