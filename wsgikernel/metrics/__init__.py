"""/metrics: what the service counts, where the counts live, and their exposition.

- ``files``: each web worker's counts in an mmap'd file of the state dir (any worker's
  scrape sums every worker's), archived when its process is gone;
- ``kernels``: what kernels count (kernel/counters.py, in each env dir's
  kernel.counts), read at a scrape and folded into a worker's counts before that file goes;
- ``exposition``: the metric families, declared once, and the Prometheus text format;
- ``scrape``: one scrape: the counts above, the gauges read now (envs, pool, memory,
  queues) and the serving process's own metrics.
"""
