# Augmenting declarations for _creation.py (Cython pure-Python mode; the .py is the
# reference and runs pure). Types the creation protocol's state so the compiled build
# reads its fields as C struct members and calls its helpers directly.
cimport cython

from userscope.container._cleanup cimport run_cleanups_sync
from userscope._speedups cimport Lock, call, ready, running_loop, running_task, thread_ident
from userscope.container._pending cimport PendingCreation
from userscope.container._session cimport UserSession
from userscope.container._state cimport ScopeState
from userscope.providers._plan cimport is_awaitable, needs_await

cdef int _VALUE, _CONTEXT, _SCOPED
cdef Py_ssize_t _ASYNC
cdef object _generation
cdef bint _observing
cdef set _PLAIN

cdef class ProviderCore:
    cdef public object provider
    cdef public Py_ssize_t scope
    cdef public tuple plan
    cdef public object provides
    cdef public object factory
    cdef public bint is_async
    cdef public bint closing
    cdef public bint overridden
    cdef public object guard
    cdef public bint awaits
    cdef public bint keywords
    cdef public tuple scoped
    cdef public bint suspends

    @cython.locals(how=cython.int, scoped=list)
    cpdef set_plan(self, tuple plan)

cdef object _refuse(tuple frame, ScopeState state, object provider)
cdef object _closed(ScopeState state, object provider)
cdef PendingCreation _waitable(ScopeState state, object provider, object entry)
cdef object _wait_error(object provider, ScopeState state, PendingCreation pending)
cdef object _settle_entry(object entry, object value, object error)

@cython.locals(
    session=UserSession, lock=Lock, pending=dict, finalizer=tuple, creation=PendingCreation
)
cpdef object create(
    ProviderCore core, ScopeState state, tuple frame, tuple args, dict kwargs, bint in_loop=*
)

@cython.locals(session=UserSession, lock=Lock, pending=dict)
cdef bint _publish(
    ScopeState state, tuple frame, object provider, object value, tuple finalizer
) except -1

@cython.locals(
    session=UserSession,
    lock=Lock,
    pending=dict,
    dependency_core=ProviderCore,
    dependency_state=ScopeState,
    finalizer=tuple,
)
cpdef object begin_acreate(ProviderCore core, ScopeState state, tuple frame)

@cython.locals(session=UserSession, lock=Lock)
cdef object _abandon(ScopeState state, object provider, object error, object locked=*)

@cython.locals(state=ScopeState)
cdef inline object _injected(
    int how, object dependency, ProviderCore dependency_core, tuple frame, bint in_loop
)

@cython.locals(positional=list, named=dict, plain=cython.bint, step=tuple, how=cython.int)
cpdef object run_plan(ProviderCore core, tuple frame)
