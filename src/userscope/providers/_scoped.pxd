# Augmenting declarations for _scoped.py (Cython pure-Python mode; the .py is the
# reference): the compiled build reads the provider's core as a C struct and calls the
# creation protocol as a C function.
from userscope.providers._creation cimport ProviderCore, create
from userscope.container._state cimport ScopeState
from userscope._speedups cimport var_get
from userscope.providers._plan cimport is_awaitable

cdef object _generation

# No fields: the provider classes combine it with dependency-injector's Provider (whose
# layout stays theirs); its __call__ becomes the C call slot they inherit.
cdef class _Resolve:
    pass
