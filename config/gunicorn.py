"""gunicorn's settings wherever Steerco's web runs (docker-compose, Kubernetes, `make load`):
`gunicorn -c python:config.gunicorn config.wsgi:application`; flags on the command line win over these.

The application is loaded once, in the master, before it forks the workers (config.wsgi imports every view and
compiles every template): a worker starts ready instead of spending its first requests on about a second of
imports, and so does each worker that replaces a recycled one.
"""

preload_app = True
# Workers are recycled after about 1,000 requests: large ingestion bodies leave the C heap fragmented (RSS creeps).
max_requests = 1000
max_requests_jitter = 100
