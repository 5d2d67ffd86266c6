"""The composition root: builds every part of one node and runs their lifecycle.

Order matters: the store opens before anything reads it, the sandbox launcher
starts before the worker can launch, the queue of asynchronous calls opens
before the dispatcher leases from it; on the way down in-flight calls have
already drained (the HTTP server waits for them), the dispatcher lets its
attempts finish (or gives their calls back) before instances are killed, then
the records of the last calls are flushed before the store and the queue close.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from wuzhao.config import Settings
from wuzhao.control.functions import FunctionRegistry
from wuzhao.control.keys import KeyRing
from wuzhao.control.layers import Layers, check_not_reserved
from wuzhao.control.namespaces import Namespaces
from wuzhao.control.objects import Objects
from wuzhao.control.packages import CodePackages
from wuzhao.control.secrets import Secrets, load_or_create_key
from wuzhao.control.triggers import Triggers
from wuzhao.control.versions import Versions
from wuzhao.domain.functions import FunctionConfig
from wuzhao.objects.local import LocalObjectStore
from wuzhao.observe.metrics import Metrics
from wuzhao.observe.recorder import Recorder
from wuzhao.queue.api import AsyncQueue
from wuzhao.queue.sqlite import SqliteQueue
from wuzhao.sandbox.api import Launcher
from wuzhao.store.api import Store
from wuzhao.store.sqlite import SqliteStore
from wuzhao.worker.dispatcher import Dispatcher
from wuzhao.worker.factory import InstanceFactory
from wuzhao.worker.function_api import FunctionApi
from wuzhao.worker.notifications import Notifications
from wuzhao.worker.scheduler import Scheduler
from wuzhao.worker.worker import Worker

log = logging.getLogger("wuzhao")


@dataclass
class Platform:
    settings: Settings
    store: Store
    keys: KeyRing
    namespaces: Namespaces
    registry: FunctionRegistry
    versions: Versions
    layers: Layers
    secrets: Secrets
    objects: Objects
    recorder: Recorder
    metrics: Metrics
    launcher: Launcher
    worker: Worker
    queue: AsyncQueue
    dispatcher: Dispatcher
    triggers: Triggers
    scheduler: Scheduler
    notifications: Notifications
    function_api: FunctionApi

    @classmethod
    def build(cls, settings: Settings, launcher: Launcher | None = None) -> Platform:
        data = settings.data_dir
        runtime_layers = settings.runtime_layer_mounts(check_dirs=True)  # a missing one stops the server
        store = SqliteStore(data / "wuzhao.db")
        packages = CodePackages(
            data, max_bytes=settings.max_code_bytes, max_unpacked_bytes=settings.max_unpacked_code_bytes
        )
        data.mkdir(parents=True, exist_ok=True)
        objects = Objects(LocalObjectStore(data / "objects"), max_object_bytes=settings.max_object_bytes)
        namespaces = Namespaces(store, holdings=objects.holdings)  # no namespace deleted with its buckets

        # Layers and secrets ask who uses them before a delete; `versions` is made below.
        layers = Layers(
            store, packages, users=lambda ns, ref: versions.users(ns, lambda config: ref in config.layers)
        )
        secrets = Secrets(
            store,
            load_or_create_key(data),
            users=lambda ns, name: versions.users(ns, lambda config: name in config.secrets.values()),
        )

        async def check_references(namespace: str, config: FunctionConfig) -> None:
            await layers.resolve(namespace, config.layers)
            check_not_reserved(config.layers, {mount.name for mount in runtime_layers})
            await secrets.check(namespace, config.secrets)

        registry = FunctionRegistry(store, packages, check_references=check_references)
        versions = Versions(store, registry)
        recorder = Recorder(store)
        if launcher is None:
            launcher = default_launcher(settings)
        factory = InstanceFactory(
            settings,
            launcher,
            packages,
            recorder,
            secrets=secrets.resolve,
            layers=layers.resolve,
            runtime_layers=runtime_layers,
        )
        metrics = Metrics()
        worker = Worker(
            settings,
            factory,
            recorder,
            resolve=versions.resolve,
            quotas=namespaces.get,
            node_memory_mb=settings.node_memory_mb or default_node_memory_mb(),
            provisioned=lambda: [versions.resolve(f.namespace, f.name, None) for f in registry.provisioned()],
            metrics=metrics,
        )
        metrics.watch_instances(worker.all_instance_counts)
        queue = SqliteQueue(data / "queue.db")
        dispatcher = Dispatcher(queue, worker, settings, resolve=versions.resolve, metrics=metrics)
        metrics.watch_queue(lambda: dispatcher.depth, dispatcher.running)
        triggers = Triggers(store, registry, versions)
        scheduler = Scheduler(triggers, queue, settings, resolve=versions.resolve, wake=dispatcher.wake)
        # Object changes and topic messages reach their triggers through the dispatcher's
        # deliveries (chains, loops); a change's deliveries are queued before its API answer.
        notifications = Notifications(triggers, dispatcher.deliveries)
        objects.watch(notifications.object_changed)
        # What running functions ask of the platform (wuzhao.fn) comes through their instances:
        # performed as the calling function, its writes, messages and calls continuing its chain.
        function_api = FunctionApi(
            settings,
            objects=objects,
            notifications=notifications,
            deliveries=dispatcher.deliveries,
            resolve=versions.resolve,
            worker=worker,
            metrics=metrics,
        )
        worker.serve_calls(function_api)
        registry.on_change(worker.function_changed)
        return cls(
            settings=settings,
            store=store,
            keys=KeyRing(store),
            namespaces=namespaces,
            registry=registry,
            versions=versions,
            layers=layers,
            secrets=secrets,
            objects=objects,
            recorder=recorder,
            metrics=metrics,
            launcher=launcher,
            worker=worker,
            queue=queue,
            dispatcher=dispatcher,
            triggers=triggers,
            scheduler=scheduler,
            notifications=notifications,
            function_api=function_api,
        )

    async def start(self) -> None:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.settings.data_dir.chmod(0o700)
        await self.store.open()
        await self.objects.open()  # sweeps what a crash left of unfinished writes
        key_file, created = await self.keys.ensure_admin_key(self.settings.data_dir)
        if created:
            log.warning("created the admin API key; it is in %s (mode 0600)", key_file)
        else:
            log.info("admin API key: %s", key_file)
        await self.namespaces.load()
        await self.registry.load()
        await self.versions.load()
        await self.triggers.load()
        try:
            await self.launcher.start()
        except BaseException:
            # The node will not serve (no zygote: a module to preload that cannot be imported...):
            # close what is open, or the store's thread keeps the process from ever exiting.
            await self.objects.close()
            await self.store.close()
            raise
        self.recorder.start()
        self.worker.start()
        await self.queue.open()  # gives back the calls a crashed process held
        self.dispatcher.start()
        self.scheduler.start()  # after the dispatcher: what it enqueues runs at once

    async def stop(self) -> None:
        await self.scheduler.stop()
        await self.dispatcher.stop(self.settings.shutdown_grace_s)
        await self.worker.close()
        await self.function_api.close()  # requests still under way, before the stores close
        await self.launcher.close()
        await self.recorder.close()
        await self.objects.close()
        await self.queue.close()
        await self.store.close()


def default_launcher(settings: Settings) -> Launcher:
    import hashlib

    from wuzhao.sandbox.zygote_launcher import ZygoteLauncher

    server_id = hashlib.sha256(str(settings.data_dir).encode()).hexdigest()[:12]
    return ZygoteLauncher(
        state_dir=settings.data_dir / "sandbox",
        server_id=server_id,
        isolate=not settings.insecure_no_sandbox,
        network_allow=settings.allowed_networks(),
        runtime_layers=settings.runtime_layer_mounts(),
        preload=settings.runtime_preload_modules(),
        shells=settings.zygote_shells,
    )


def default_node_memory_mb() -> int:
    """80 % of the machine's memory: the rest is the platform's, the kernel's and the page cache's."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 8 // 10 // 1024
    return 1024
