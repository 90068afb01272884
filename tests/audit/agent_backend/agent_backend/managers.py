"""The half-migrated factory: class-level maps and classmethod-held singletons."""


class UserManager:
    def __init__(self):
        self._history = {}

    def remember(self, thread_id, message):
        self._history.setdefault(thread_id, []).append(message)


class UserManagerFactory:
    _managers: dict = {}  # noqa: RUF012 - the shape the audit must catch

    @classmethod
    def for_user(cls, user_id):
        if user_id not in cls._managers:
            cls._managers[user_id] = UserManager()
        return cls._managers[user_id]

    @classmethod
    def get_global_manager(cls):
        if getattr(cls, "_global_manager", None) is None:
            cls._global_manager = UserManager()
        return cls._global_manager
