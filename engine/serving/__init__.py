"""Many sessions in one process (`reactdiff-serve`): a shared inference scheduler that batches the windows due
from every session, the inference services it runs batches on (in-process, Ray Serve), admission control, the
Prometheus metrics, and the HTTP API that creates, lists and stops sessions."""
