# Augmenting declarations for _scopes.py (Cython pure-Python mode; the .py is the reference).
from userscope.container._state cimport ScopeState

cdef class ScopeCM(ScopeState):
    cdef public object _ctx
    cdef public object _owner
    cdef public object _token
    cdef public object kind

cdef class UserScopeCM:
    cdef public object _ctx
    cdef public object _owner
    cdef public object _session
    cdef public object _token
