# Augmenting declarations for _session.py (Cython pure-Python mode; the .py is the reference).
from userscope._speedups cimport Lock
from userscope.container._state cimport ScopeState

cdef class UserSession:
    cdef object __weakref__
    cdef public Py_ssize_t active
    cdef public Py_ssize_t cleanups_failed
    cdef public Py_ssize_t cleanups_run
    cdef public Py_ssize_t connections
    cdef public double created_at
    cdef public double expires_at
    cdef public Py_ssize_t instances
    cdef public object key
    cdef public Lock lock
    cdef public double max_expiry
    cdef public object max_instances
    cdef public Py_ssize_t requests
    cdef public bint retired
    cdef public bint scheduled
    cdef public object slot
    cdef public ScopeState state
    cdef public object tenant_id
    cdef public object user_id
