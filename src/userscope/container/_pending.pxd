# Augmenting declarations for _pending.py (Cython pure-Python mode; the .py is the reference).
cdef class PendingCreation:
    cdef public object thread
    cdef public object task
    cdef public bint done
    cdef public object value
    cdef public object error
    cdef public object event
    cdef public list futures
