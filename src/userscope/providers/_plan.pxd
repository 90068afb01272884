# Augmenting declarations for _plan.py (Cython pure-Python mode; the .py is the
# reference): the awaitable checks are C functions for the compiled creation path.
cpdef bint needs_await(object result) except -1
cpdef bint is_awaitable(object value) except -1
cdef set _PLAIN, _AWAITABLE
cdef object _COROUTINE
