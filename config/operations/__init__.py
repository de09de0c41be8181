"""What an operator watches: readiness, Prometheus metrics and structured logs (docs/operations.md).

It lives in config/, above the apps, because it reads every app's tables (aggregate counts only, never a tenant's
values, names or emails) and wires into the web and Celery processes.
"""
