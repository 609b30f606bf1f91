"""Names of the job functions the manager enqueues and the agent is allowed to run.

The manager enqueues by these dotted names and never imports worker_agent; the agent refuses any job
whose function is not in ALLOWED (RQ alone would import and run whatever a job names).
"""

from __future__ import annotations

START_TASK = "worker_agent.jobs.start_task"
"""Start one task's command as a supervised process; payload: StartTaskSchema."""

STOP_TASKS = "worker_agent.jobs.stop_tasks"
"""Stop the process trees of some tasks; payload: StopTasksSchema."""

RUN_COMMAND = "worker_agent.jobs.run_command"
"""Run one fleet task's command on this node, streaming its output; payload: RunCommandSchema."""

CANCEL_COMMAND = "worker_agent.jobs.cancel_command"
"""Kill the process group of a fleet task's command on this node; payload: CancelCommandSchema."""

SYNC_AGENT_SCHEDULES = "worker_agent.jobs.sync_agent_schedules"
"""Replace this node's set of agent-side (on_agent) schedules when newer; payload: AgentScheduleSetSchema."""

DEPLOY_COMPONENT = "worker_agent.jobs.deploy_component"
"""Start (or replace with a newer generation) one business component; payload: ComponentSpecSchema."""

STOP_COMPONENT = "worker_agent.jobs.stop_component"
"""Stop and remove one business component; payload: StopComponentSchema."""

RUN_INSTANCE = "worker_agent.jobs.run_instance"
"""Start and keep running one app instance (restarted on exit and failing checks); payload: InstanceSpecSchema."""

STOP_INSTANCE = "worker_agent.jobs.stop_instance"
"""Stop one app instance for good and forget it; payload: StopInstanceSchema."""

ALLOWED: frozenset[str] = frozenset(
    {
        START_TASK,
        STOP_TASKS,
        RUN_COMMAND,
        CANCEL_COMMAND,
        SYNC_AGENT_SCHEDULES,
        DEPLOY_COMPONENT,
        STOP_COMPONENT,
        RUN_INSTANCE,
        STOP_INSTANCE,
    }
)
"""The only functions an agent executes."""
