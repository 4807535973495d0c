"""Scale-out: K ``delaykit serve`` replicas on consecutive ports with nginx in front.

    python -m delaykit.serve.replicas --replicas 2 [--port 8998] [--first-port 8999] [--model default]
                                      [--max-sessions 16] [--threads N] [--token SECRET] [--dir DIR]
    python -m delaykit.serve.replicas --replicas 3 --print-config > /etc/nginx/conf.d/delaykit.conf

Clients connect to nginx on ``--host``:``--port``; the replicas listen on 127.0.0.1 (only nginx reaches
them), on ``--first-port`` and the ports after it. The
nginx configuration is ``deploy/nginx/delaykit.conf.template`` rendered for those replicas (its comments say
how connections are routed). nginx runs in the foreground with its own prefix directory (configuration,
logs, pid, temporary files; no system service, no root needed), and Ctrl-C or SIGTERM stops nginx and then
every replica. :class:`ReplicaSet` does the same from Python (the tests use it).

The launcher imports only the standard library and click: it never loads a model itself.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import typing as tp
import urllib.request
from pathlib import Path

import click

TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "nginx" / "delaykit.conf.template"
SERVER_LINE = "    server {address} max_fails=1 fail_timeout=10s;"
REPLICA_HOST = "127.0.0.1"  # replicas are reached through nginx only


def find_nginx() -> str | None:
    """The nginx binary: on PATH, or in /usr/sbin (often not on a user's PATH); None when not installed."""
    found = shutil.which("nginx")
    if found is None and os.access("/usr/sbin/nginx", os.X_OK):
        found = "/usr/sbin/nginx"
    return found


def render_site(backends: tp.Sequence[str], listen: str, template: Path = TEMPLATE) -> str:
    """The http-context configuration for replicas at ``backends`` (``host:port``), nginx on ``listen``."""
    if not template.is_file():
        raise FileNotFoundError(f"nginx template not found: {template} (it is in the repository's deploy/)")
    servers = "\n".join(SERVER_LINE.format(address=address) for address in backends)
    return template.read_text().replace("{{SERVERS}}", servers).replace("{{LISTEN}}", listen)


def main_config(prefix: Path, site: Path) -> str:
    """A whole nginx.conf that runs in the foreground with everything it writes under ``prefix``."""
    temp = prefix / "temp"
    temp_paths = "\n".join(f"    {kind}_temp_path {temp / kind};"
                           for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""daemon off;
worker_processes 1;  # one worker proxies thousands of WebSockets; the replicas need the cores
pid {prefix / "nginx.pid"};
error_log {prefix / "error.log"} notice;
events {{
    worker_connections 4096;
}}
http {{
    access_log {prefix / "access.log"};
{temp_paths}
    include {site};
}}
"""


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` different ports that were free a moment ago (the OS picks them)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:  # all bound at once, so no port is handed out twice
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def wait_healthy(url: str, process: subprocess.Popen, log: Path, deadline: float) -> None:
    """Poll ``url`` (a /health) until it answers 200; raise RuntimeError, with the end of ``log``, when
    ``process`` exits first or ``deadline`` (time.monotonic) passes."""
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            state = f"exited with {process.returncode}" if process.poll() is not None else "timed out"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{url} never became healthy ({state}); end of {log}:\n{tail}")
        time.sleep(0.1)


def stop_processes(processes: tp.Sequence[subprocess.Popen], grace: float = 5.0) -> None:
    """Stop ``processes`` together: SIGINT (a replica closes its sessions and frees its worker; nginx exits
    at once), then SIGTERM and SIGKILL for any that have not exited after ``grace`` seconds each."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        running = [process for process in processes if process.poll() is None]
        for process in running:
            process.send_signal(sig)
        deadline = time.monotonic() + grace
        for process in running:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass


class ReplicaSet:
    """``delaykit serve`` on each of ``ports`` of 127.0.0.1 plus nginx on ``host``:``proxy_port`` in front.

    ``serve_args`` go to every replica (e.g. ``["--max-sessions", "4", "--threads", "1"]``). Logs, the
    rendered configuration and nginx's files live in ``workdir``. Use as a context manager, or call
    :meth:`start` and :meth:`stop`."""

    def __init__(self, ports: tp.Sequence[int], proxy_port: int, workdir: Path,
                 serve_args: tp.Sequence[str] = (), host: str = "127.0.0.1", nginx: str | None = None,
                 template: Path = TEMPLATE):
        self.ports = list(ports)
        self.proxy_port = proxy_port
        self.workdir = Path(workdir)
        self.serve_args = list(serve_args)
        self.host = host
        self.nginx = nginx or find_nginx()
        self.template = template
        self.replicas: list[subprocess.Popen] = []
        self.proxy: subprocess.Popen | None = None

    def replica_url(self, index: int) -> str:
        """The HTTP base URL of one replica, bypassing nginx."""
        return f"http://{REPLICA_HOST}:{self.ports[index]}"

    @property
    def url(self) -> str:
        """The HTTP base URL of nginx (``ws://`` + the same address for WebSocket endpoints)."""
        return f"http://{self.host}:{self.proxy_port}"

    def start(self, timeout: float = 120.0) -> ReplicaSet:
        """Start the replicas (in parallel), wait until each answers /health, then nginx; on any failure stop
        what was started and raise."""
        if self.nginx is None:
            raise RuntimeError("nginx is not installed (e.g. apt-get install nginx)")
        if self.replicas:
            raise RuntimeError("this ReplicaSet was started already")
        self.workdir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout
        try:
            for index, port in enumerate(self.ports):
                command = [sys.executable, "-m", "delaykit.cli", "serve", "--host", REPLICA_HOST,
                           "--port", str(port), *self.serve_args]
                self.replicas.append(self._spawn(command, f"replica-{index}.log"))
            for index, process in enumerate(self.replicas):
                wait_healthy(self.replica_url(index) + "/health", process,
                             self.workdir / f"replica-{index}.log", deadline)
            self._start_proxy(deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, command: list[str], log_name: str) -> subprocess.Popen:
        with open(self.workdir / log_name, "wb") as log:  # the child keeps its own copy of the descriptor
            # A session of its own: Ctrl-C in a terminal reaches only the launcher, which stops them in order.
            return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)

    def _start_proxy(self, deadline: float) -> None:
        site = self.workdir / "delaykit.conf"
        backends = [f"{REPLICA_HOST}:{port}" for port in self.ports]
        site.write_text(render_site(backends, f"{self.host}:{self.proxy_port}", self.template))
        config = self.workdir / "nginx.conf"
        config.write_text(main_config(self.workdir, site))
        (self.workdir / "temp").mkdir(exist_ok=True)
        assert self.nginx is not None
        self.proxy = self._spawn([self.nginx, "-p", str(self.workdir), "-c", str(config)], "nginx.log")
        wait_healthy(self.url + "/health", self.proxy, self.workdir / "nginx.log", deadline)

    def kill(self, index: int) -> None:
        """Kill one replica outright (SIGKILL), as a crash would; nginx routes new sessions around it."""
        self.replicas[index].kill()
        self.replicas[index].wait(10)

    def stop(self) -> None:
        """Stop nginx first (no new connections), then every replica."""
        if self.proxy is not None:
            stop_processes([self.proxy])
        stop_processes(self.replicas)

    def __enter__(self) -> tp.Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@click.command()
@click.option("--replicas", default=2, show_default=True, help="delaykit serve processes")
@click.option("--port", default=8998, show_default=True, help="nginx: the port clients connect to")
@click.option("--first-port", type=int, default=None, help="first replica's port  [default: --port + 1]")
@click.option("--host", default="127.0.0.1", show_default=True, help="nginx's address (0.0.0.0: every interface)")
@click.option("--model", default="default", show_default=True, help="checkpoint every replica serves")
@click.option("--max-sessions", default=16, show_default=True, help="per replica")
@click.option("--threads", type=int, default=None, help="torch threads per replica  [default: cores / replicas]")
@click.option("--token", default=None, envvar="DELAYKIT_TOKEN", help="API token clients must present")
@click.option("--dir", "workdir", type=click.Path(path_type=Path), default=None,
              help="logs, rendered configuration and nginx's files  [default: a new temporary directory]")
@click.option("--print-config", is_flag=True, help="print the rendered nginx configuration and exit")
def main(replicas: int, port: int, first_port: int | None, host: str, model: str, max_sessions: int,
         threads: int | None, token: str | None, workdir: Path | None, print_config: bool) -> None:
    """Start --replicas `delaykit serve` processes on consecutive ports and nginx in front of them; Ctrl-C
    or SIGTERM stops them all."""
    first = port + 1 if first_port is None else first_port
    ports = list(range(first, first + replicas))
    if port in ports:
        raise click.UsageError(f"--port {port} is one of the replicas' ports {ports[0]}-{ports[-1]}")
    if print_config:
        click.echo(render_site([f"{REPLICA_HOST}:{p}" for p in ports], f"{host}:{port}"), nl=False)
        return
    threads = threads or max(1, (os.cpu_count() or 1) // replicas)
    serve_args = ["--model", model, "--max-sessions", str(max_sessions), "--threads", str(threads)]
    if token is not None:
        os.environ["DELAYKIT_TOKEN"] = token  # the replicas read it there, not from argv where `ps` shows it
    workdir = workdir or Path(tempfile.mkdtemp(prefix="delaykit-replicas-"))
    # Both unwind through ReplicaSet.stop(). SIGINT is set even where it was ignored (a job started with &):
    # the replicas inherit an ignored SIGINT, and SIGINT is how they are asked to close their sessions.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        with ReplicaSet(ports, port, workdir, serve_args, host=host) as replica_set:
            click.echo(f"serving ws://{host}:{port}/api/... through nginx -> {replicas} replicas on ports "
                       f"{ports[0]}-{ports[-1]}; logs in {workdir}; Ctrl-C stops them all", err=True)
            watch(replica_set)
    except KeyboardInterrupt:
        click.echo("stopped nginx and the replicas", err=True)
        sys.exit(130)
    except (RuntimeError, FileNotFoundError) as exc:  # a replica or nginx did not start (all are stopped)
        raise click.ClickException(str(exc)) from exc


def watch(replica_set: ReplicaSet, poll: float = 1.0) -> None:
    """Return when nginx exits; report each replica that exits (nginx routes around it meanwhile)."""
    reported: set[int] = set()
    assert replica_set.proxy is not None
    while replica_set.proxy.poll() is None:
        for index, process in enumerate(replica_set.replicas):
            if index not in reported and process.poll() is not None:
                reported.add(index)
                print(f"replica {index} (port {replica_set.ports[index]}) exited with {process.returncode}; "
                      f"see {replica_set.workdir / f'replica-{index}.log'}", file=sys.stderr)
        time.sleep(poll)
    raise SystemExit(f"nginx exited with {replica_set.proxy.returncode}; see {replica_set.workdir / 'error.log'}")


if __name__ == "__main__":  # pragma: no cover
    main(prog_name="python -m delaykit.serve.replicas")
