# Augmenting declarations for _sessions.py (Cython pure-Python mode; the .py is the
# reference and runs pure). UserSessions stays a Python class; its base _TableHolder is
# an extension type whose one field, the runtime's SessionTable, is a C struct member,
# so opening a scope reads the table without an attribute lookup.
from userscope.container._scopes cimport new_scope
from userscope.container._table cimport SessionTable

cdef class _TableHolder:
    cdef public SessionTable _table
