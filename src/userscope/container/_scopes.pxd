# Augmenting declarations for _scopes.py (Cython pure-Python mode; the .py is the reference).
cimport cython

from userscope._speedups cimport ready, var_get, var_reset, var_set
from userscope.container._cleanup cimport run_cleanups_sync, start_cleanups
from userscope.container._session cimport UserSession
from userscope.container._table cimport SessionTable
from userscope.container._state cimport ScopeState

cdef class ScopeCM(ScopeState):
    cdef public object _ctx
    cdef public SessionTable _owner
    cdef public object _token
    cdef public object kind

    @cython.locals(session=UserSession, conn=ScopeState, frame=tuple)
    cpdef list _open(self, bint async_)

cdef class UserScopeCM:
    cdef public object _ctx
    cdef public SessionTable _owner
    cdef public UserSession _session
    cdef public object _token

    @cython.locals(outer=UserSession, session=UserSession, frame=tuple)
    cpdef list _open(self, bint async_)

@cython.locals(scope=ScopeCM)
cpdef ScopeCM new_scope(SessionTable owner, object ctx, object kind)
