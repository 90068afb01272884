# Augmenting declarations for _creation.py (Cython pure-Python mode; the .py is the
# reference and runs pure). Types the creation protocol's state so the compiled build
# reads its fields as C struct members and calls its helpers directly.
cimport cython

from userscope.container._cleanup cimport run_cleanups_sync
from userscope._speedups cimport Lock
from userscope.container._pending cimport PendingCreation
from userscope.container._session cimport UserSession
from userscope.container._state cimport ScopeState
from userscope.providers._plan cimport is_awaitable, needs_await

cdef object _refuse(tuple frame, ScopeState state, object provider)
cdef object _closed(ScopeState state, object provider)
cdef PendingCreation _waitable(ScopeState state, object provider, object entry)
cdef object _wait_error(object provider, ScopeState state, PendingCreation pending)
cdef object _settle_entry(object entry, object value, object error)

@cython.locals(
    session=UserSession, lock=Lock, pending=dict, finalizer=tuple, creation=PendingCreation
)
cpdef object create(
    object provider, ScopeState state, tuple frame, tuple args, dict kwargs, bint in_loop=*
)

@cython.locals(session=UserSession, lock=Lock)
cdef object _abandon(ScopeState state, object provider, object error)

@cython.locals(state=ScopeState)
cdef inline object _injected(object how, object dependency, tuple frame, bint in_loop)

@cython.locals(positional=list, named=dict, plain=cython.bint)
cpdef object run_plan(object provider, tuple frame)

cpdef bint plan_awaits(object provider) except -1
