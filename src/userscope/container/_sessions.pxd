# Augmenting declarations for _sessions.py (Cython pure-Python mode; the .py is the
# reference and runs pure). The compiled build makes _SessionTable, the base of
# UserSessions, an extension type: the fields the hot path reads are C struct members,
# the hold/leave/release protocol is called as C methods by the scope classes.
# UserSessions stays a Python class (its instances keep a __dict__ for the rest).
cimport cython

from userscope._speedups cimport Lock
from userscope.container._scopes cimport ScopeCM
from userscope.container._session cimport UserSession

cdef class _SessionTable:
    cdef public object _users
    cdef public object _max_users
    cdef public object _max_age
    cdef public object _max_instances_per_user
    cdef public object _clock
    cdef public Lock _lock
    cdef public bint _limited
    cdef public bint _closed
    cdef public bint _timed
    cdef public object _idle_timeout
    cdef public object _observer
    cdef public object _cleanup_timeout
    cdef public set _open_states
    cdef public set _retired
    cdef public object _expiry
    cdef public Py_ssize_t _expired
    cdef public Py_ssize_t _evictions
    cdef public object _refusals
    cdef public bint leak_check

    cpdef object _take_hold(self, UserSession session, object kind)

    @cython.locals(session=UserSession, lock=Lock, joined=cython.bint)
    cpdef tuple _hold_user(self, object ctx, object kind, bint async_)

    @cython.locals(lock=Lock)
    cpdef object _hold_nested(self, UserSession session)

    cpdef object _unhold(self, UserSession session, ScopeCM scope)

    @cython.locals(session=UserSession, lock=Lock)
    cpdef tuple _leave(self, ScopeCM scope)

    cpdef object _release(self, UserSession session, ScopeCM scope, Py_ssize_t ran, list failures)

    @cython.locals(session=UserSession)
    cpdef tuple _acquire(self, object ctx, object kind, bint async_)

    cpdef object _schedule(self, UserSession session)
    cpdef object _retire(self, UserSession session)
