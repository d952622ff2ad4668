"""Settings for benchmark runs: the product's settings plus two no-op probes.

The probes measure the ceilings that the pipelines are compared with: a DRF
view that does nothing (`bench.bench_urls`) on the same gunicorn, and a
Celery task that does nothing (`bench.bench_tasks`) on the same worker.
Nothing else differs from production; `bench/run.py` sets the rest through
environment variables, as a deployment would.
"""

from whatsapp_saas.settings import *  # noqa: F403

ROOT_URLCONF = "bench.bench_urls"

CELERY_IMPORTS = ["bench.bench_tasks"]
