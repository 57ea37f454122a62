"""One BLAS thread per caller: the service already runs one photo per core.

NumPy brings an OpenBLAS that starts a thread per core for a matrix product over a few thousand rows
(the belt's fit). In a server whose preprocess pool already keeps every core busy, those threads
only compete with the other photos and spin while they wait, so the service limits BLAS to the
calling thread, process-wide, once as it is built; the camera benchmark does the same, so that its
per-stage figures are the service's."""

from __future__ import annotations

from threadpoolctl import threadpool_limits


def one_blas_thread() -> None:
    """Limit every BLAS library loaded so far (NumPy's, once anything has imported it) to one
    thread, for the process's life."""
    threadpool_limits(limits=1, user_api="blas")
