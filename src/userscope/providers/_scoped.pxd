# Augmenting declarations for _scoped.py (Cython pure-Python mode; the .py is the
# reference): the compiled build reads the provider's core as a C struct and calls the
# creation protocol as a C function.
from userscope.providers._creation cimport ProviderCore, begin_acreate, create
from userscope.container._state cimport ScopeState
from userscope._speedups cimport ready, var_get
from userscope.providers._plan cimport is_awaitable

cdef object _generation
cdef Py_ssize_t _ASYNC

# No fields: the provider classes combine it with dependency-injector's Provider (whose
# layout stays theirs); its __call__ becomes the C call slot they inherit.
cdef class _Resolve:
    pass

# Reading a provider's `_core` slot in place (`_slot_at` in the .py: its pure twin).
cdef extern from *:
    """
    #include "structmember.h"
    /* The offset of an object slot (a __slots__ member of `owner`), else 0. */
    static Py_ssize_t userscope_member_offset(PyObject* descr, PyObject* owner) {
        PyMemberDescrObject* member;
        if (Py_TYPE(descr) != &PyMemberDescr_Type) return 0;
        member = (PyMemberDescrObject*)descr;
        if (member->d_member->type != T_OBJECT_EX) return 0;
        if ((PyObject*)PyDescr_TYPE(member) != owner) return 0;
        return member->d_member->offset;
    }
    /* The slot at `offset` of `obj` if `obj` is an instance of `owner` and it is set,
       else None (a new reference either way). */
    static PyObject* userscope_slot_at(PyObject* obj, PyObject* owner, Py_ssize_t offset) {
        PyObject* found = Py_None;
        if (offset > 0 && PyType_IsSubtype(Py_TYPE(obj), (PyTypeObject*)owner)) {
            PyObject* value = *(PyObject**)((char*)obj + offset);
            if (value != NULL) found = value;
        }
        Py_INCREF(found);
        return found;
    }
    """
    Py_ssize_t _member_offset "userscope_member_offset"(object descr, object owner)
    object _slot_at "userscope_slot_at"(object obj, object owner, Py_ssize_t offset)

cdef object _SCOPED_CLASS
cdef Py_ssize_t _CORE_OFFSET
