# Augmenting declarations for _state.py (Cython pure-Python mode): the compiled build
# makes ScopeState an extension type with typed fields and `detach` a C method (the
# session table calls it on every scope exit); the .py stays the reference.
from userscope.container._session cimport UserSession

cdef class ScopeState:
    cdef public object level
    cdef public UserSession session
    cdef public bint async_
    cdef public dict cache
    cdef public object pending
    cdef public list finalizers
    cdef public bint closed
    cdef public object token
    cdef public object loop

    cpdef list detach(self)
