"""Fleet simulator: thousands of lightweight agents in a few processes, speaking the agent's protocol.

Every simulated node joins through the manager's real join endpoint, heartbeats through
shared.heartbeat, takes jobs from its own RQ queue (JSON serializer, shared.keys.node_queue) and answers
through shared.report_streams, exactly as worker_agent does; only the work itself is simulated (a fleet command
`echo X` answers X, anything else answers nothing with exit code 0; deployment tasks report RUNNING; app
instances report running and healthy with their ports given from 20000 up, and stopped when stopped).

    python bench/fleet_sim.py --manager-url http://127.0.0.1:8080 --token-file var/join-token \
        --nodes 1000 --processes 2 --interval 5

Each node's join answer carries a Redis URL of that node's own user, which reaches only that node's keys:
thousands of nodes sharing a few connections cannot use them. So the simulator works through one URL for
all its nodes, --redis-url: the manager's own (`<data dir>/corral-redis/password` and `port`), or an
--agent-redis-url an operator gave every agent. The per-node users' checks cost Redis next to nothing.

Runs until SIGTERM/SIGINT, or for --seconds. Prints one line when every node has joined.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import signal
import threading
import time
import uuid
import zlib
from pathlib import Path
from typing import Any, NamedTuple

import redis
import requests
from redis.client import Pipeline
from rq import Queue
from rq.exceptions import DequeueTimeout
from rq.job import Job
from rq.serializers import JSONSerializer

from shared import api, heartbeat, job_signing, jobs, keys, report_streams
from shared.defaults import PROTOCOL_VERSION
from worker_agent.join import paced_wait

logger = logging.getLogger("fleet_sim")


def node_id_for(hostname: str) -> str:
    """A stable id per simulated hostname, so a rerun reuses the nodes it registered before."""
    return uuid.uuid5(uuid.NAMESPACE_DNS, hostname + ".corral-sim").hex


def node_secret_for(hostname: str) -> str:
    """A stable secret per simulated hostname, so a rerun can join as the nodes it registered before."""
    return uuid.uuid5(uuid.NAMESPACE_DNS, hostname + ".corral-sim-secret").hex


def node_document(hostname: str, i: int) -> dict[str, Any]:
    """A document 003 §5.1.1 node document, varied by ``i`` so that node queries select part of the fleet: half
    the nodes are tagged web (the others db), cpus run 1-8, one address each in 10.0.0.0/8."""
    address = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
    return {
        "hostname": hostname,
        "agentAddress": f"http://{address}:8081",
        "os": {"name": "Linux", "version": "12", "cpus": 1 + i % 8, "architecture": "x86_64"},
        "memory": {"total": (2 + i % 4) * 2**30, "ram": (2 + i % 4) * 2**30},
        "networks": [{"address": address, "name": "eth0", "mtu": 1500, "type": "Ethernet"}],
        "disks": [{"dirName": "/", "devName": "/dev/vda1", "sysTypeName": "ext4", "option": "rw", "total": 2**36}],
        "tags": ["web" if i % 2 == 0 else "db", f"rack-{i % 10}"],
    }


JOIN_ATTEMPTS = 5
"""Tries of one join whose connection broke (a worker restarted on a machine loaded by other work)."""


def _post_join(session: requests.Session, manager_url: str, token: str, body: dict[str, Any]) -> requests.Response:
    """POST one join; a connection reset or refused is tried again (a join is idempotent: same id, same secret),
    as a real agent retries its join, rather than ending this simulator process and with it half the fleet."""
    for attempt in range(JOIN_ATTEMPTS):
        try:
            return session.post(manager_url + api.JOIN_PATH, json=body, headers=api.bearer(token), timeout=30)
        except requests.ConnectionError:
            if attempt == JOIN_ATTEMPTS - 1:
                raise
            logger.warning("join of %s: connection broke, trying again", body["hostname"])
            time.sleep(0.5 * 2**attempt)
    raise AssertionError("unreachable")


def join_all(manager_url: str, token: str, hostnames: list[str], interval: float) -> dict[str, bytes]:
    """Join every simulated node; returns each node's job key."""
    session = requests.Session()
    job_keys: dict[str, bytes] = {}
    for i, hostname in enumerate(hostnames):
        body = {
            "node_id": node_id_for(hostname),
            "hostname": hostname,
            "ip": f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}",
            "interval": interval,
            "protocol": PROTOCOL_VERSION,
            "version": "fleet-sim",
            "facts": {"labels": {"sim": "yes", "rack": f"r{i % 10}"}, "node": node_document(hostname, i)},
            "node_secret": node_secret_for(hostname),
        }
        answer = _post_join(session, manager_url, token, body)
        while answer.status_code == 429:  # paced by --join-rate-limit (every simulated node shares one address)
            time.sleep(paced_wait(float(answer.headers.get("Retry-After", "1"))))
            answer = _post_join(session, manager_url, token, body)
        answer.raise_for_status()
        job_keys[body["node_id"]] = bytes.fromhex(answer.json()["job_key"])
    return job_keys


def heartbeat_loop(
    client: redis.Redis, hostnames: list[str], job_keys: dict[str, bytes], interval: float, stop: threading.Event
) -> None:
    """Heartbeat every node once per interval, spread evenly over the interval, signed as an agent signs."""
    ids = [node_id_for(h) for h in hostnames]
    gap = interval / max(1, len(ids))
    offset = heartbeat.redis_now(client) - time.time()
    while not stop.is_set():
        started = time.monotonic()
        for i, (node_id, hostname) in enumerate(zip(ids, hostnames, strict=True)):
            # On a schedule, not a fixed gap after each write: the writes' own time must not stretch the interval.
            if gap > 0.001 and (wait := started + i * gap - time.monotonic()) > 0 and stop.wait(wait):
                return
            stamped = heartbeat.write(
                client,
                node_id,
                {"interval": interval, "hostname": hostname, "cpu_usage_percent": 5.0, "memory_usage_percent": 20.0},
                key=job_keys[node_id],
                clock_offset=offset,
            )
            offset = stamped - time.time()
        stop.wait(max(0.0, interval - (time.monotonic() - started)))


def answer(client: redis.Redis, node_id: str, key: bytes, func_name: str, payload: dict[str, Any]) -> None:
    """Carry out one job the way an agent reports it (signed with the node's ``key``); with a pipeline as
    ``client``, the reports are queued on it (the caller executes it)."""
    now = time.time()
    if func_name == jobs.RUN_COMMAND:
        command = payload["command"]
        out = command[5:] + "\n" if command.startswith("echo ") else ""
        base = {"task_id": payload["task_id"], "node_id": node_id, "started_at": now}
        # As an agent sends a short command's reports: running, output, final in one transaction.
        pipe = client if isinstance(client, Pipeline) else client.pipeline(transaction=True)
        report_streams.publish_command_report(pipe, base | {"status": "running", "at": now, "pid": 1}, key=key)
        if out:
            report_streams.append_output(pipe, payload["task_id"], node_id, "stdout", [out.rstrip("\n")], key=key)
        report_streams.publish_command_report(
            pipe,
            base
            | {"status": "succeeded", "at": time.time(), "exit_code": 0, "stdout": out, "finished_at": time.time()},
            key=key,
        )
        if pipe is not client:
            pipe.execute()
    elif func_name == jobs.START_TASK:
        report_streams.publish(
            client,
            {
                "task_id": payload["task_id"],
                "deployment_id": payload["deployment_id"],
                "node_id": node_id,
                "state": "RUNNING",
                "at": now,
                "pid": 1,
                "started_at": now,
            },
            key=key,
        )
    elif func_name in (jobs.RUN_INSTANCE, jobs.STOP_INSTANCE):
        running = func_name == jobs.RUN_INSTANCE
        ports = [20000 + i if port == 0 else port for i, port in enumerate(payload.get("ports", []))]
        report_streams.publish_instance_report(
            client,
            {
                "app": payload["app"],
                "instance_id": payload["instance_id"],
                "node_id": node_id,
                "version": payload.get("version", 1),
                "state": "running" if running else "stopped",
                "health": "healthy" if running else "unknown",
                "at": now,
                "pid": 1 if running else None,
                "ports": ports if running else [],
                "started_at": now if running else None,
            },
            key=key,
        )
    elif func_name == jobs.STOP_TASKS:
        for task_id in payload["task_ids"]:
            report_streams.publish(
                client,
                {
                    "task_id": task_id,
                    "deployment_id": payload.get("deployment_id", ""),
                    "node_id": node_id,
                    "state": "STOPPED",
                    "at": now,
                    "exit_code": -15,
                },
                key=key,
            )


def consume_loop(client: redis.Redis, hostnames: list[str], job_keys: dict[str, bytes], stop: threading.Event) -> None:
    """Take jobs from every simulated node's own queue; like an agent, run only allowed functions signed with the
    node's key.

    One BLPOP over all the queues waits for the first job; then every queue is popped in one pipeline, again
    until none holds a job, and the jobs of a round are answered in one pipeline. A BLPOP per job over a few
    thousand keys cost Redis more than the manager's work for a fleet task, where real agents each wait on one
    queue of their own.
    """
    queues = [Queue(keys.node_queue(node_id_for(h)), connection=client, serializer=JSONSerializer) for h in hostnames]
    by_key = {queue.key: queue for queue in queues}
    prefix = len(Queue.redis_queue_namespace_prefix) + len("corral.node.")
    while not stop.is_set():
        try:
            result = Queue.dequeue_any(queues, 1, connection=client, serializer=JSONSerializer)
        except DequeueTimeout:
            continue
        except redis.RedisError as exc:
            logger.warning("dequeue failed: %s", exc)
            stop.wait(1)
            continue
        if result is None:
            continue
        job, queue = result
        first = Taken(job.id, str(job.func_name), list(job.args), dict(job.kwargs), job.meta, job.origin)
        taken = [(first, queue)]
        while taken:
            with client.pipeline(transaction=False) as pipe:
                for job, queue in taken:
                    handle(pipe, job, queue.key[prefix:], job_keys)
                pipe.execute()
            taken = drain(client, by_key)


class Taken(NamedTuple):
    """What a simulated node needs of one job it popped: what an agent checks and runs."""

    id: str
    func_name: str
    args: list[Any]
    kwargs: dict[str, Any]
    meta: dict[str, Any]
    origin: str


def fetch_many(client: redis.Redis, job_ids: list[str]) -> list[Taken | None]:
    """The jobs of ``job_ids`` in one pipeline (None for one gone): only the fields an agent checks and runs.

    Not rq.job.Job.fetch_many: that builds a whole Job per job (every date parsed, the serializer checked
    against a typing Protocol), work a real agent does once per job but which, thousands of times a round, was
    the simulator's biggest cost beside Redis. The fields are decoded as RQ stores them (``data`` compressed
    JSON of [function, instance, args, kwargs]; ``meta`` JSON), through RQ's own JSON serializer.
    """
    with client.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hmget(Job.key_for(job_id), "data", "meta", "origin")
        rows = pipe.execute()
    taken: list[Taken | None] = []
    for job_id, (data, meta, origin) in zip(job_ids, rows, strict=True):
        if data is None:
            taken.append(None)
            continue
        func_name, _instance, args, kwargs = JSONSerializer.loads(zlib.decompress(data))
        meta_dict = JSONSerializer.loads(meta) if meta else {}
        taken.append(Taken(job_id, func_name, args, kwargs, meta_dict, (origin or b"").decode()))
    return taken


def drain(client: redis.Redis, by_key: dict[str, Queue]) -> list[tuple[Taken, Queue]]:
    """One job off every queue that has one, in one pipeline (and their jobs fetched in another)."""
    with client.pipeline(transaction=False) as pipe:
        for key in by_key:
            pipe.lpop(key)
        popped = [(key, job_id) for key, job_id in zip(by_key, pipe.execute(), strict=True) if job_id]
    if not popped:
        return []
    fetched = fetch_many(client, [job_id.decode() for _, job_id in popped])
    return [(job, by_key[key]) for (key, _), job in zip(popped, fetched, strict=True) if job is not None]


def handle(pipe: Pipeline, job: Taken, node_id: str, job_keys: dict[str, bytes]) -> None:
    """Answer one job on ``pipe`` if it is allowed and signed for its node, then delete it."""
    signature = job.meta.get(job_signing.META_FIELD)
    signed = job_signing.verify(job_keys[node_id], signature, job.func_name, job.args, job.kwargs, job.id, job.origin)
    if job.func_name in jobs.ALLOWED and signed:
        try:
            answer(pipe, node_id, job_keys[node_id], job.func_name, job.args[0])
        except Exception:  # noqa: BLE001 - one bad job must not cost the others of the round their answers
            logger.exception("node %s: job %s (%s) could not be answered", node_id, job.id, job.func_name)
    else:
        logger.warning("node %s: job %s (%s) refused: not allowed or not signed", node_id, job.id, job.func_name)
    # A plain DEL: the job was popped off its queue and no worker registered it anywhere, so RQ's
    # job.delete() (registries, dependents: several round trips) has nothing more to clean.
    pipe.delete(Job.key_for(job.id))


def run_slice(
    manager_url: str, token: str, redis_url: str, hostnames: list[str], interval: float, seconds: float, ready: Any
) -> None:
    """One simulator process: join its nodes, then heartbeat and consume until told to stop."""
    stop = threading.Event()
    # Signals are taken with sigtimedwait below, never by a handler: a handler calling stop.set() while the
    # main thread sits in stop.wait() deadlocks on the Event's lock. Threads inherit the blocked mask.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    job_keys = join_all(manager_url, token, hostnames, interval)
    client = redis.Redis.from_url(redis_url, max_connections=8)
    threads = [
        threading.Thread(target=heartbeat_loop, args=(client, hostnames, job_keys, interval, stop), daemon=True),
        threading.Thread(
            target=consume_loop, args=(redis.Redis.from_url(redis_url), hostnames, job_keys, stop), daemon=True
        ),
    ]
    for t in threads:
        t.start()
    ready.release()
    if seconds > 0:
        signal.sigtimedwait({signal.SIGTERM, signal.SIGINT}, seconds)
    else:
        signal.sigwait({signal.SIGTERM, signal.SIGINT})
    stop.set()
    for t in threads:
        t.join(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manager-url", default="http://127.0.0.1:8080")
    parser.add_argument("--token", default=os.environ.get("CORRAL_JOIN_TOKEN"))
    parser.add_argument("--token-file")
    parser.add_argument("--redis-url", required=True, help="one URL for every simulated node (see above)")
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=0, help="stop after this long (0 = until signalled)")
    parser.add_argument("--prefix", default="sim")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s fleet_sim: %(message)s")
    token = args.token or (Path(args.token_file).read_text().strip() if args.token_file else "")
    if not token:
        parser.error("give --token, --token-file or CORRAL_JOIN_TOKEN")
    hostnames = [f"{args.prefix}-{i:05d}" for i in range(args.nodes)]
    slices = [hostnames[i :: args.processes] for i in range(args.processes)]
    ready = multiprocessing.Semaphore(0)
    started = time.monotonic()
    procs = [
        multiprocessing.Process(
            target=run_slice,
            args=(args.manager_url, token, args.redis_url, s, args.interval, args.seconds, ready),
        )
        for s in slices
    ]
    for p in procs:
        p.start()
    for _ in procs:
        ready.acquire()
    print(f"fleet_sim: {args.nodes} nodes joined and heartbeating in {time.monotonic() - started:.1f} s", flush=True)

    def forward(signum: int, _frame: Any) -> None:
        for p in procs:
            if p.pid:
                os.kill(p.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for p in procs:
        p.join()


if __name__ == "__main__":
    main()
