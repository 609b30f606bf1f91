"""The APScheduler executor of agent-side firings (imported only when the node holds a schedule)."""

from __future__ import annotations

import concurrent.futures
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.executors.base import BaseExecutor

logger = logging.getLogger(__name__)


class FiringExecutor(BaseExecutor):
    """Calls each due job as ``func(run_time)``: APScheduler's run_job does not hand the job the time it was due,
    which makes the firing's task id. The executor extension point, as APScheduler's own pool executors use it."""

    def __init__(self) -> None:
        super().__init__()
        self._pool = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="corral-agent-schedules")

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        future = self._pool.submit(self._run, job, run_times)

        def done(finished: concurrent.futures.Future[None]) -> None:
            exc = finished.exception()
            if exc is None:
                self._run_job_success(job.id, [])
            else:
                self._run_job_error(job.id, exc, exc.__traceback__)

        future.add_done_callback(done)

    @staticmethod
    def _run(job: Any, run_times: list[datetime]) -> None:
        run_time = run_times[-1]  # coalesced: one firing for every tick that is due at once
        late = datetime.now(UTC) - run_time
        if job.misfire_grace_time is not None and late > timedelta(seconds=job.misfire_grace_time):
            logger.warning("%s: firing due at %s skipped, %s late", job.name, run_time.isoformat(), late)
            return
        job.func(*job.args, **{**job.kwargs, "fired_at": run_time})

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait)
