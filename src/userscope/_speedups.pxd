# Declarations of the compiled twin _speedups.pyx (the pure twin is _speedups.py).
from cpython.pythread cimport PyThread_type_lock

cdef class Lock:
    cdef PyThread_type_lock _lock
    cdef bint _held
    cpdef bint acquire(self, bint blocking=*, double timeout=*) except -1
    cpdef release(self)

cpdef object thread_ident()
cpdef object context_value(object var)
cpdef object call(object function, tuple args, dict kwargs)
