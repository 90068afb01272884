"""Services whose names say nothing; their bodies say everything."""


class NotificationService:
    def __init__(self):
        self._subscribers = {}

    def subscribe(self, user_id, callback):
        self._subscribers.setdefault(user_id, []).append(callback)


class ExecutionMonitor:
    def __init__(self):
        self._runs = {}

    def started(self, run_id, info):
        self._runs[run_id] = info


class JobQueueManager:
    def __init__(self):
        self._jobs = []

    def push(self, job):
        self._jobs.append(job)
