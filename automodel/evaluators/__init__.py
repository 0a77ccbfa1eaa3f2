"""Where candidates train: the evaluator interface and an in-process back end (``base``), worker
processes on this machine (``worker_pool``), and Ray tasks on a cluster (``ray_cluster``, with the
helper process of a private local Ray, ``ray_head``)."""
