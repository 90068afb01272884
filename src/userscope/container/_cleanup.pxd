# Augmenting declarations for _cleanup.py (Cython pure-Python mode; the .py is the
# reference): the compiled scope exit calls the sync runner as a C function.
cpdef list run_cleanups_sync(list finalizers, object exc, object observe=*)
cpdef tuple start_cleanups(list finalizers, object exc, list failures, object observe=*)
