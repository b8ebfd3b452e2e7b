"""Tasks: the gRPC edge of `shim.tasks.TaskManager`, which in-process callers use directly.

Needs the events and containers services registered before it (ctx.shared); publishes
the manager as ctx.shared["tasks"].
"""

from __future__ import annotations

from typing import Any

import grpc

from shim import namespaces
from shim.api.v1 import tasks_pb2, tasks_pb2_grpc
from shim.services import ServiceContext
from shim.services.containers import ContainerService, parse_spec
from shim.services.events import EventBus
from shim.tasks import TaskManager

_STATUS = {
    "created": tasks_pb2.CREATED,
    "running": tasks_pb2.RUNNING,
    "stopped": tasks_pb2.STOPPED,
    "paused": tasks_pb2.PAUSED,
}


def _process(view: dict[str, Any]) -> tasks_pb2.Process:
    stdio = view.get("stdio") or {}
    msg = tasks_pb2.Process(
        container_id=view["container_id"], exec_id=view.get("exec_id", ""),
        pid=int(view.get("pid") or 0),
        status=_STATUS.get(str(view.get("status", "")), tasks_pb2.UNKNOWN),
        exit_status=int(view.get("exit_status") or 0), oom_killed=bool(view.get("oom_killed")),
        terminal=bool(view.get("terminal")), stdin=stdio.get("stdin") or "",
        stdout=stdio.get("stdout") or "", stderr=stdio.get("stderr") or "",
        runtime=view.get("runtime", ""), bundle=view.get("bundle", ""),
    )
    if view.get("exited_at"):
        msg.exited_at.FromNanoseconds(int(view["exited_at"]))
    return msg


def _stdio(msg: tasks_pb2.Stdio) -> dict[str, Any]:
    return {"stdin": msg.stdin, "stdout": msg.stdout, "stderr": msg.stderr,
            "terminal": msg.terminal}


class TasksServicer(tasks_pb2_grpc.TasksServicer):  # type: ignore[misc]
    def __init__(self, manager: TaskManager) -> None:
        self.m = manager

    def Create(self, request: Any, context: grpc.ServicerContext) -> Any:
        ns = namespaces.from_context(context)
        rootfs = [{"type": m.type, "source": m.source, "target": m.target,
                   "options": list(m.options)} for m in request.rootfs]
        log_cfg = None
        if request.HasField("log") and request.log.path:
            log_cfg = {"path": request.log.path, "max_size": request.log.max_size,
                       "max_files": request.log.max_files}
        pid = self.m.create(ns, request.container_id, rootfs, _stdio(request.stdio), log_cfg)
        return tasks_pb2.CreateTaskResponse(container_id=request.container_id, pid=pid)

    def Start(self, request: Any, context: grpc.ServicerContext) -> Any:
        ns = namespaces.from_context(context)
        return tasks_pb2.StartResponse(pid=self.m.start(ns, request.container_id,
                                                        request.exec_id))

    def Delete(self, request: Any, context: grpc.ServicerContext) -> Any:
        ns = namespaces.from_context(context)
        r = self.m.delete(ns, request.container_id, request.exec_id, request.force)
        resp = tasks_pb2.DeleteResponse(container_id=request.container_id,
                                        exec_id=request.exec_id, pid=int(r.get("pid") or 0),
                                        exit_status=int(r.get("exit_status") or 0))
        resp.exited_at.FromNanoseconds(int(r.get("exited_at") or 0))
        return resp

    def Kill(self, request: Any, context: grpc.ServicerContext) -> Any:
        ns = namespaces.from_context(context)
        self.m.kill(ns, request.container_id, request.signal or 15, request.exec_id,
                    request.all)
        return tasks_pb2.KillResponse()

    def Wait(self, request: Any, context: grpc.ServicerContext) -> Any:
        ns = namespaces.from_context(context)
        r = self.m.wait(ns, request.container_id, request.exec_id)
        resp = tasks_pb2.WaitResponse(exit_status=int(r.get("exit_status") or 0),
                                      oom_killed=bool(r.get("oom_killed")))
        resp.exited_at.FromNanoseconds(int(r.get("exited_at") or 0))
        return resp

    def Exec(self, request: Any, context: grpc.ServicerContext) -> Any:
        ns = namespaces.from_context(context)
        process = parse_spec(request.spec, "exec process spec")
        self.m.exec(ns, request.container_id, request.exec_id, process, _stdio(request.stdio))
        return tasks_pb2.ExecProcessResponse()

    def ResizePty(self, request: Any, context: grpc.ServicerContext) -> Any:
        ns = namespaces.from_context(context)
        self.m.resize_pty(ns, request.container_id, request.exec_id, request.width,
                          request.height)
        return tasks_pb2.Empty()

    def CloseIO(self, request: Any, context: grpc.ServicerContext) -> Any:
        ns = namespaces.from_context(context)
        self.m.close_io(ns, request.container_id, request.exec_id)
        return tasks_pb2.Empty()

    def Pause(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.m.pause(namespaces.from_context(context), request.container_id)
        return tasks_pb2.Empty()

    def Resume(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.m.resume(namespaces.from_context(context), request.container_id)
        return tasks_pb2.Empty()

    def ListPids(self, request: Any, context: grpc.ServicerContext) -> Any:
        pids = self.m.pids(namespaces.from_context(context), request.container_id)
        return tasks_pb2.ListPidsResponse(
            processes=[tasks_pb2.ProcessInfo(pid=p, exec_id=e) for p, e in pids])

    def Stats(self, request: Any, context: grpc.ServicerContext) -> Any:
        figures = self.m.stats(namespaces.from_context(context), request.container_id)
        resp = tasks_pb2.StatsResponse(metrics=tasks_pb2.Metrics(**figures))
        resp.read_at.GetCurrentTime()
        return resp

    def Update(self, request: Any, context: grpc.ServicerContext) -> Any:
        resources = parse_spec(request.resources, "resources")
        self.m.update(namespaces.from_context(context), request.container_id, resources)
        return tasks_pb2.Empty()

    def Get(self, request: Any, context: grpc.ServicerContext) -> Any:
        view = self.m.get(namespaces.from_context(context), request.container_id,
                          request.exec_id)
        return tasks_pb2.GetResponse(process=_process(view))

    def List(self, request: Any, context: grpc.ServicerContext) -> Any:
        views = self.m.list(namespaces.from_context(context), list(request.filters))
        return tasks_pb2.ListTasksResponse(tasks=[_process(v) for v in views])


def register(server: grpc.Server, ctx: ServiceContext) -> None:
    events = ctx.shared["events"]
    containers = ctx.shared["containers"]
    assert isinstance(events, EventBus) and isinstance(containers, ContainerService)
    manager = TaskManager(ctx, containers, events)
    ctx.shared["tasks"] = manager
    manager.recover()
    tasks_pb2_grpc.add_TasksServicer_to_server(TasksServicer(manager), server)
