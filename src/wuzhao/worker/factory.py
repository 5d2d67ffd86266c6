"""Making and ending instances: from an executable to a ready, sandboxed runtime.

A cold start is: a host uid, the code's image, the environment (the function's
env, its secrets decrypted, the documented runtime variables), the layers, a
sandboxed process from the launcher, the runtime channel and output capture,
then INIT and the wait for READY. Whatever fails on the way is undone.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from wuzhao.config import Settings
from wuzhao.control.packages import CodePackages
from wuzhao.domain.resources import cpu_quota_us, cpu_shares
from wuzhao.domain.uids import UidPool, UidsExhausted
from wuzhao.domain.versions import Executable
from wuzhao.errors import Throttled
from wuzhao.observe.recorder import Recorder
from wuzhao.runtimes.python import imports
from wuzhao.sandbox.api import Launcher, LayerMount, SandboxSpec
from wuzhao.store.api import LayerRecord
from wuzhao.worker.channel import RuntimeChannel
from wuzhao.worker.instance import Instance
from wuzhao.worker.output import OutputCapture

log = logging.getLogger("wuzhao.worker")

# Room for the header around the largest result we accept.
FRAME_SLACK = 64 * 1024

# (namespace, {ENV_NAME: secret name}) -> {ENV_NAME: value}
SecretResolver = Callable[[str, dict[str, str]], Awaitable[dict[str, str]]]
# (namespace, ["name:version", ...]) -> the stored layer versions
LayerResolver = Callable[[str, list[str]], Awaitable[list[LayerRecord]]]


class InstanceFactory:
    def __init__(
        self,
        settings: Settings,
        launcher: Launcher,
        packages: CodePackages,
        recorder: Recorder,
        *,
        secrets: SecretResolver,
        layers: LayerResolver,
        runtime_layers: tuple[LayerMount, ...] = (),
    ) -> None:
        self._settings = settings
        self._launcher = launcher
        self._packages = packages
        self._recorder = recorder
        self._secrets = secrets
        self._layers = layers
        self._runtime_layers = runtime_layers
        self._preload = settings.runtime_preload_modules()
        self._uids = UidPool(settings.uid_base, settings.uid_count)

    async def start(self, target: Executable, invocation_id: str | None) -> Instance:
        """A new instance of ``target``, initialised (its handler imported), or an error.

        ``invocation_id`` is the call the cold start serves (its init output is
        that call's); None for a provisioned instance started with no call.
        """
        try:
            uid = self._uids.acquire()
        except UidsExhausted as exc:
            raise Throttled(str(exc)) from None
        try:
            spec = await self._spec(target, uid)
            process = await self._launcher.launch(spec)
        except BaseException:
            self._uids.release(uid)
            raise
        channel = await RuntimeChannel.connect(
            process.channel, max_body=self._settings.max_response_bytes + FRAME_SLACK
        )
        namespace, name = target.namespace, target.function
        output = OutputCapture(
            process.stdout_fd,
            process.stderr_fd,
            lambda stream, inv, text: self._recorder.log(namespace, name, inv, stream, text),
            cap=self._settings.log_bytes_per_call,
        )
        output.start()
        instance = Instance(spec.instance_id, target, process, channel, output, uid)
        try:
            layers = [layer.name for layer in spec.layers]
            await instance.initialize(
                invocation_id,
                self._settings.init_timeout_s,
                layers=layers,
                max_call_bytes=self._settings.max_response_bytes,  # what the channel takes
            )
        except BaseException:
            await self.stop(instance)
            raise
        return instance

    async def stop(self, instance: Instance) -> None:
        try:
            await instance.stop()
        except Exception:
            log.exception("could not stop instance %s", instance.id)
        finally:
            self._uids.release(instance.uid)

    async def _spec(self, target: Executable, uid: int) -> SandboxSpec:
        config = target.config
        env = runtime_environment(target)
        env.update(await self._secrets(target.namespace, config.secrets))
        own = await self._layers(target.namespace, config.layers)
        # One thread hop for the code and every layer: each is a stat when already unpacked and imaged.
        shas = [target.code_sha256, *(layer.code_sha256 for layer in own)]
        trees, uses_preloaded = await asyncio.to_thread(self._trees, shas, config.handler)
        (code_dir, code_image), layer_trees = trees[0], trees[1:]
        # The operator's runtime layers come first. A function's own layer of the same name (deployed
        # before the operator declared it; deploys refuse that name since) is used instead.
        names = {layer.name for layer in own}
        layers = [mount for mount in self._runtime_layers if mount.name not in names]
        # Forked from the zygote that imported them only if the instance has the layers it imported
        # them from (and its handler imports one: wuzhao.runtimes.python.imports).
        preloaded = uses_preloaded and len(layers) == len(self._runtime_layers)
        for layer, (directory, image) in zip(own, layer_trees, strict=True):
            layers.append(LayerMount(layer.name, str(directory), None if image is None else str(image)))
        return SandboxSpec(
            instance_id=uuid.uuid4().hex[:16],
            code_dir=str(code_dir),
            code_image=None if code_image is None else str(code_image),
            uid=uid,
            memory_mb=config.memory_mb,
            cpu_shares=cpu_shares(config.memory_mb),
            cpu_quota_us=cpu_quota_us(config.memory_mb) if self._settings.cpu_hard_limit else None,
            pids_max=self._settings.pids_max,
            tmp_size_mb=self._settings.tmp_size_mb,
            env=env,
            network=config.network,
            layers=tuple(layers),
            preloaded=preloaded,
        )

    def _trees(self, shas: list[str], handler: str) -> tuple[list[tuple[Path, Path | None]], bool]:
        """The code's and layers' trees, and whether the handler imports a preloaded module."""
        trees = [self._code(sha) for sha in shas]
        uses = bool(self._preload) and imports.uses_preloaded(str(trees[0][0]), handler, self._preload)
        return trees, uses

    def _code(self, sha256: str) -> tuple[Path, Path | None]:
        """The unpacked tree of a package and its image (None where images cannot be made)."""
        return self._packages.code_dir(sha256), self._packages.code_image(sha256)


def runtime_environment(target: Executable) -> dict[str, str]:
    """The function's env and the documented runtime variables (secrets are added to it).

    Names follow Lambda's so that existing functions that read them move over
    unchanged; nothing here names the platform's host, port or data.
    """
    config = target.config
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "TZ": "UTC",
        "HOME": "/tmp",
        "LAMBDA_TASK_ROOT": "/var/task",
        "AWS_LAMBDA_FUNCTION_NAME": target.function,
        "AWS_LAMBDA_FUNCTION_VERSION": target.version,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.memory_mb),
        "AWS_EXECUTION_ENV": f"wuzhao_{config.runtime}",
        "_HANDLER": config.handler,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        # A Python started by the function (subprocess) finds the runtime's libpython.
        "LD_LIBRARY_PATH": "/var/lang/lib",
    }
    env.update(config.env)
    return env
