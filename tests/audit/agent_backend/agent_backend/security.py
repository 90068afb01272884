"""The authenticated caller, kept on one process-wide object."""


class SecurityContext:
    def __init__(self):
        self._user = None
        self._tenant = None
        self._permissions = ()

    def authenticate(self, user, tenant, permissions):
        self._user = user
        self._tenant = tenant
        self._permissions = permissions


security_context = SecurityContext()
