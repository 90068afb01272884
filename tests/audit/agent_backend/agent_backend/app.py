"""Module-level instances of classes defined elsewhere in the tree."""

from agent_backend.ws.pool import WebSocketConnectionPool

from .service import ExecutionMonitor, JobQueueManager, NotificationService

pool = WebSocketConnectionPool()
notifications = NotificationService()
monitor = ExecutionMonitor()
jobs = JobQueueManager()
