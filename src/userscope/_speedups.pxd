# Declarations of the compiled twin _speedups.pyx (the pure twin is _speedups.py).
from cpython.pythread cimport PyThread_type_lock

cdef class Lock:
    cdef PyThread_type_lock _baton
    cdef bint _held
    cdef bint _handoff
    cdef Py_ssize_t _waiters
    cpdef bint acquire(self, bint blocking=*, double timeout=*) except -1
    cdef bint _wait(self, long long microseconds) except -1
    cdef void _pass_on(self) noexcept
    cpdef release(self)

cpdef object thread_ident()
cpdef object call(object function, tuple args, dict kwargs)
cdef class Ready:
    cdef object value

cpdef object ready(object value)

cpdef object var_get(object var)
cpdef object var_set(object var, object value)
cpdef object var_reset(object var, object token)
cpdef double monotonic() except? -1
cpdef object context_slot(object ctx)
cpdef object dict_get(object mapping, object key)
cpdef object agen_step(object agen, object exc)
cpdef object running_loop()
cpdef object running_task()
cpdef str request_id()
cpdef object child_context(object ctx)
cpdef object screened(object awaitable, Py_ssize_t small, object slow)
cpdef object watched(
    object deadline,
    object awaitable,
    Py_ssize_t small,
    object slow,
    object expired,
    object fallback,
)
