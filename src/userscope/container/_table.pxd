# Augmenting declarations for _table.py (Cython pure-Python mode; the .py is the
# reference and runs pure). The compiled build makes SessionTable an extension type:
# the fields are C struct members (all of them: an extension type has no __dict__),
# the hold/leave/release protocol is called as C methods by the scope classes.
cimport cython

from userscope._speedups cimport Lock, context_slot, dict_get, monotonic
from userscope.container._scopes cimport ScopeCM
from userscope.container._session cimport UserSession

cdef class SessionTable:
    cdef public object users
    cdef public object max_users
    cdef public object max_age
    cdef public object max_instances_per_user
    cdef public object clock
    cdef public Lock lock
    cdef public bint limited
    cdef public bint closed
    cdef public bint timed
    cdef public object idle_timeout
    cdef public object observer
    cdef public object cleanup_timeout
    cdef public set open_states
    cdef public set retired
    cdef public object expiry
    cdef public Py_ssize_t expired
    cdef public Py_ssize_t evictions
    cdef public object refusals
    cdef public bint leak_check
    cdef public object max_connections_per_user
    cdef public object max_requests_per_user
    cdef public Py_ssize_t cleanups_run
    cdef public Py_ssize_t cleanups_failed
    cdef public object recent_failures
    cdef public object leak_watch
    cdef public list leaks
    cdef public object reaper
    cdef public set background
    cdef public set observer_failed

    cdef double _now(self) except? -1

    cpdef object _take_hold(self, UserSession session, object kind)

    @cython.locals(session=UserSession, lock=Lock, joined=cython.bint)
    cpdef tuple hold_user(self, object ctx, object kind, bint async_)

    @cython.locals(lock=Lock)
    cpdef object hold_nested(self, UserSession session)

    cpdef object _unhold(self, UserSession session, ScopeCM scope)

    @cython.locals(session=UserSession, lock=Lock)
    cpdef object leave(self, ScopeCM scope)

    cpdef object release(self, UserSession session, ScopeCM scope, Py_ssize_t ran, list failures)

    @cython.locals(session=UserSession)
    cpdef tuple _acquire(self, object ctx, object kind, bint async_)

    cpdef object schedule(self, UserSession session)
    cpdef object retire(self, UserSession session)
