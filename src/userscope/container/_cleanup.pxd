# Augmenting declarations for _cleanup.py (Cython pure-Python mode; the .py is the
# reference): the compiled scope exit calls the sync runner as a C function.
cimport cython

from userscope._speedups cimport agen_step

@cython.locals(index=Py_ssize_t)
cpdef list run_cleanups_sync(list finalizers, object exc, object observe=*)
@cython.locals(index=Py_ssize_t)
cpdef tuple start_cleanups(list finalizers, object exc, list failures, object observe=*)
