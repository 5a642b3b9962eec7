"""The container half of the engine, proven through docker-py 7 (high- and low-level APIs) against
a real `skiff-agent serve` with the busybox fixture loaded. Each test names one behaviour a
docker-py user relies on, asserts what they would observe, and removes what it created."""

import os
import re
import socket
import threading
import time
from datetime import datetime

import docker
import pytest
from docker.errors import APIError, ContainerError, ImageNotFound, NotFound
from docker.utils.socket import frames_iter

from conftest import free_port

IMAGE = "busybox"
TIMESTAMP = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z ")
# A PID 1 that honours SIGTERM (PID 1 ignores signals it has no handler for).
TRAP_TERM = ["sh", "-c", 'trap "exit 42" TERM; while :; do sleep 0.1; done']


@pytest.fixture
def client(agent):
    """The agent's DockerClient with busybox loaded; force-removes leftovers after the test."""
    agent.load("busybox.tar")
    c = agent.client
    yield c
    if agent.client is not None:
        for ct in c.containers.list(all=True):
            try:
                ct.remove(force=True)
            except NotFound:
                pass


def within(seconds, fn, *args, **kwargs):
    """Runs fn in a thread and fails the test if it has not returned after `seconds`."""
    result = {}

    def target():
        try:
            result["value"] = fn(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001 - re-raised in the test thread
            result["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        pytest.fail(f"{getattr(fn, '__name__', fn)} did not return within {seconds} s")
    if "error" in result:
        raise result["error"]
    return result["value"]


def wait_for(predicate, seconds=10, interval=0.05):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def ids(containers):
    return {c.id for c in containers}


def ts(value):
    """Parses Docker's RFC 3339 (nanosecond) timestamps into comparable datetimes."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z", value)
    assert m, value
    return datetime.fromisoformat(m.group(1)).replace(microsecond=int((m.group(2) or "0")[:6].ljust(6, "0")))


# --- containers.run -----------------------------------------------------------------------------


def test_run_returns_stdout_and_removes_the_container(client):
    assert client.containers.run(IMAGE, "echo hi", remove=True) == b"hi\n"
    # stdout only by default; stderr on request.
    cmd = ["sh", "-c", "echo out; echo err >&2"]
    assert client.containers.run(IMAGE, cmd, remove=True) == b"out\n"
    assert client.containers.run(IMAGE, cmd, remove=True, stdout=False, stderr=True) == b"err\n"
    assert client.containers.list(all=True) == []


def test_run_non_zero_exit_raises_container_error_with_stderr(client):
    with pytest.raises(ContainerError) as err:
        client.containers.run(IMAGE, ["sh", "-c", "echo visible; echo oops >&2; exit 3"], remove=True)
    assert err.value.exit_status == 3
    assert err.value.stderr == b"oops\n"
    assert err.value.image == IMAGE
    assert client.containers.list(all=True) == []


def test_run_of_a_missing_executable_fails_at_start(client):
    # remove=True is client-side in docker-py (after wait), so like Docker the created container
    # stays behind when start fails; auto_remove=True makes the engine delete it.
    with pytest.raises((APIError, ContainerError)) as err:
        client.containers.run(IMAGE, "nosuchcmd", remove=True)
    assert "executable file not found" in str(err.value)
    leftovers = client.containers.list(all=True)
    assert [c.status for c in leftovers] == ["created"], leftovers
    leftovers[0].remove()

    with pytest.raises((APIError, ContainerError)) as err:
        client.containers.run(IMAGE, "nosuchcmd", auto_remove=True)
    assert "executable file not found" in str(err.value)
    # The low-level list (one request): containers.list() would also inspect a container that the
    # auto-remove may delete between its two requests.
    assert wait_for(lambda: client.api.containers(all=True) == [], 5), client.api.containers(all=True)


def test_run_of_an_unknown_image_tries_to_pull_and_fails_fast(client, agent):
    quick = docker.DockerClient(base_url=agent.base_url, timeout=20)
    try:
        for image in (f"127.0.0.1:{free_port()}/nosuch/image:latest", "skiff-nosuch-image-xyz:latest"):
            start = time.monotonic()
            with pytest.raises((ImageNotFound, APIError)):
                within(25, quick.containers.run, image, "true", remove=True)
            assert time.monotonic() - start < 20, image
    finally:
        quick.close()
    assert client.containers.list(all=True) == []


# --- isolation basics ---------------------------------------------------------------------------
# These use detach + wait + logs so they do not depend on the foreground `run` path tested above.


def run_output(client, cmd, **kwargs):
    """(output, short id) of a detached run that must exit 0; the container is removed."""
    ct = client.containers.run(IMAGE, cmd, detach=True, **kwargs)
    try:
        assert ct.wait(timeout=10)["StatusCode"] == 0, ct.logs()
        return ct.logs(), ct.id[:12]
    finally:
        ct.remove(force=True)


def test_pid_1_is_the_command(client):
    assert run_output(client, ["cat", "/proc/1/cmdline"])[0] == b"cat\0/proc/1/cmdline\0"
    assert run_output(client, ["sh", "-c", "echo $$"])[0] == b"1\n"
    # Only the container's own processes are visible.
    out, _ = run_output(client, ["sh", "-c", "ls -d /proc/[0-9]* | wc -l"])
    assert int(out) <= 3, out  # sh, ls, wc


def test_hostname_is_the_short_id_or_the_given_hostname(client):
    out, short = run_output(client, "hostname")
    assert out == (short + "\n").encode()
    assert run_output(client, "hostname", hostname="skiffbox")[0] == b"skiffbox\n"


def test_default_network_is_the_bridge_and_none_is_loopback_only(client):
    assert run_output(client, ["ls", "/sys/class/net"])[0].split() == [b"eth0", b"lo"]
    out = client.containers.run(IMAGE, ["ls", "/sys/class/net"], network_mode="none", remove=True)
    assert out.split() == [b"lo"]


# --- logs / wait --------------------------------------------------------------------------------


def test_logs_follow_streams_lines_while_the_container_runs(client):
    ct = client.containers.run(IMAGE, ["sh", "-c", "echo one; sleep 1; echo two"], detach=True)
    stream = ct.logs(stream=True, follow=True)
    try:
        first = within(10, next, stream)
        assert first == b"one\n"
        ct.reload()
        assert ct.status == "running"
        rest = within(10, lambda: b"".join(stream))
        assert rest == b"two\n"
    finally:
        stream.close()
    assert ct.wait(timeout=10)["StatusCode"] == 0
    ct.remove()


def test_logs_tail_timestamps_and_stream_selection(client):
    # stdout and stderr are separate pipes: only writes apart in time have a defined order.
    cmd = ["sh", "-c", "echo a; echo b; echo e1 >&2; sleep 0.1; echo c; sleep 0.1; echo e2 >&2"]
    ct = client.containers.run(IMAGE, cmd, detach=True)
    assert ct.wait()["StatusCode"] == 0
    assert sorted(ct.logs().splitlines()) == [b"a", b"b", b"c", b"e1", b"e2"]
    tail = ct.logs(tail=2, timestamps=True).splitlines()
    assert len(tail) == 2, tail
    assert all(TIMESTAMP.match(line) for line in tail), tail
    assert [TIMESTAMP.sub(b"", line) for line in tail] == [b"c", b"e2"]
    assert ct.logs(stdout=False) == b"e1\ne2\n"
    assert ct.logs(stderr=False) == b"a\nb\nc\n"
    assert ct.logs(stdout=False, tail=1) == b"e2\n"
    ct.remove()


def test_wait_returns_the_exit_code(client):
    ct = client.containers.run(IMAGE, ["sh", "-c", "sleep 0.2; exit 7"], detach=True)
    result = ct.wait(timeout=10)
    assert result["StatusCode"] == 7
    assert result.get("Error") in (None, {}, {"Message": ""})
    ct.reload()
    assert ct.status == "exited"
    assert ct.attrs["State"]["ExitCode"] == 7
    # Waiting on an already exited container returns immediately with the same code.
    assert ct.wait(timeout=5)["StatusCode"] == 7
    ct.remove()


def test_wait_removed_for_an_auto_removed_container(client):
    ct = client.containers.run(IMAGE, ["sh", "-c", "sleep 0.5; exit 4"], detach=True, remove=True)
    assert ct.attrs["HostConfig"]["AutoRemove"] is True
    assert ct.wait(condition="removed", timeout=10)["StatusCode"] == 4
    with pytest.raises(NotFound):
        client.containers.get(ct.id)
    assert client.containers.list(all=True) == []


def test_wait_next_exit_sees_a_restart(client):
    ct = client.containers.run(IMAGE, TRAP_TERM, detach=True)
    result = {}
    t = threading.Thread(target=lambda: result.update(ct.wait(condition="next-exit", timeout=15)))
    t.start()
    time.sleep(0.3)
    ct.kill(signal="SIGTERM")
    t.join(15)
    assert not t.is_alive()
    assert result["StatusCode"] == 42
    ct.remove()


# --- exec ---------------------------------------------------------------------------------------


@pytest.fixture
def running(client):
    ct = client.containers.run(IMAGE, ["sleep", "300"], detach=True)
    yield ct
    try:
        ct.remove(force=True)
    except NotFound:
        pass


def test_exec_run_exit_code_and_combined_output(running):
    res = running.exec_run("sh -c 'echo out; echo err >&2; exit 3'")
    # stdout and stderr are separate pipes, so their relative order is not defined.
    assert sorted(res.output.splitlines()) == [b"err", b"out"], res.output
    assert res.exit_code == 3
    res = running.exec_run(["echo", "hello"])
    assert (res.exit_code, res.output) == (0, b"hello\n")


def test_exec_run_exit_code_is_recorded_before_the_output_ends(running):
    # docker-py's exec_run reads the hijacked stream to EOF, then inspects the exec once: the
    # engine must record the exit code before it closes the stream (Docker does).
    codes = [running.exec_run(["sh", "-c", f"exit {i}"]).exit_code for i in range(50)]
    assert codes == list(range(50))


def test_exec_run_demux_separates_stdout_and_stderr(running):
    res = running.exec_run("sh -c 'echo out; echo err >&2; exit 3'", demux=True)
    assert res.output == (b"out\n", b"err\n")
    assert res.exit_code == 3
    res = running.exec_run(["echo", "only"], demux=True)
    assert res.output == (b"only\n", None)


def test_exec_run_user_workdir_and_environment(running):
    res = running.exec_run(
        ["sh", "-c", "id -u; id -g; pwd; echo $A"], user="1000", workdir="/tmp", environment={"A": "b"}
    )
    # The fixture's /etc/passwd has app:x:1000:1000, so the primary group comes from it.
    assert res.output == b"1000\n1000\n/tmp\nb\n", res.output
    res = running.exec_run(["sh", "-c", "id -u; id -g; pwd"], user="nobody")
    assert res.output == b"65534\n65534\n/\n", res.output
    # A numeric uid missing from /etc/passwd keeps gid 0 (Docker / runc GetExecUser defaults).
    assert running.exec_run(["sh", "-c", "id -u; id -g"], user="4242").output == b"4242\n0\n"
    assert running.exec_run(["sh", "-c", "id -u; id -g"], user="4242:77").output == b"4242\n77\n"
    # The container's own user setting follows the same rules.
    ct = running.client.containers.run(IMAGE, ["sh", "-c", "id -u; id -g"], user="4242", detach=True)
    assert ct.wait(timeout=10)["StatusCode"] == 0
    assert ct.logs() == b"4242\n0\n"
    ct.remove()


def test_exec_runs_in_the_container_namespaces(running):
    res = running.exec_run(["sh", "-c", "cat /proc/1/cmdline; echo; hostname"])
    assert res.output == b"sleep\x00300\x00\n" + (running.id[:12] + "\n").encode()


def test_exec_run_stream_yields_chunks(running):
    res = running.exec_run(["sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.2; done"], stream=True)
    assert res.exit_code is None
    chunks = []
    for chunk in res.output:
        chunks.append((time.monotonic(), chunk))
    assert b"".join(c for _, c in chunks) == b"1\n2\n3\n"
    assert len(chunks) >= 2, chunks
    # The lines arrive as they are written (0.2 s apart), not all at once at the end.
    assert chunks[-1][0] - chunks[0][0] >= 0.25, chunks


def test_low_level_exec_create_start_inspect(client, running):
    api = client.api
    exec_id = api.exec_create(running.id, ["sh", "-c", "echo low; exit 7"])["Id"]
    before = api.exec_inspect(exec_id)
    assert before["Running"] is False and before["ExitCode"] in (None, 0)
    assert before["ContainerID"] == running.id
    assert api.exec_start(exec_id) == b"low\n"
    after = api.exec_inspect(exec_id)
    assert after["ExitCode"] == 7
    assert after["Running"] is False
    assert after["ProcessConfig"]["entrypoint"] == "sh"
    # demux through the low-level API too.
    exec_id = api.exec_create(running.id, ["sh", "-c", "echo o; echo e >&2"])["Id"]
    assert api.exec_start(exec_id, demux=True) == (b"o\n", b"e\n")
    assert api.exec_inspect(exec_id)["ExitCode"] == 0
    with pytest.raises(NotFound):
        api.exec_inspect("nosuchexec")


def test_exec_with_stdin_through_the_socket(client, running):
    api = client.api
    exec_id = api.exec_create(running.id, ["cat"], stdin=True)["Id"]
    sock = api.exec_start(exec_id, socket=True)
    try:
        raw = sock._sock
        raw.settimeout(10)
        raw.sendall(b"via exec stdin\n")
        raw.shutdown(socket.SHUT_WR)
        frames = list(frames_iter(sock, tty=False))
    finally:
        sock.close()
    assert b"".join(data for stream, data in frames if stream == 1) == b"via exec stdin\n"
    assert wait_for(lambda: api.exec_inspect(exec_id)["ExitCode"] == 0, 5)


@pytest.mark.parametrize("keys,sent", [(None, b"\x10\x11"), ("ctrl-x", b"\x18")])
def test_exec_detach_keys_end_the_stream_at_once_and_leave_the_process_running(client, running, keys, sent):
    api = client.api
    if keys:
        # docker-py sends the config file's keys as `detachKeys` (Go's decoder folds the case).
        api._general_configs["detachKeys"] = keys
    try:
        exec_id = api.exec_create(running.id, ["cat"], stdin=True, tty=True)["Id"]
    finally:
        api._general_configs.pop("detachKeys", None)
    assert api.exec_inspect(exec_id)["DetachKeys"] == (keys or "")
    sock = api.exec_start(exec_id, tty=True, socket=True)
    try:
        raw = sock._sock
        raw.settimeout(5)
        raw.sendall(b"before\n" + sent)
        got = b""
        t0 = time.monotonic()
        while chunk := raw.recv(4096):
            got += chunk
        # The stream ends right after the detach (not when the process ends), with dockerd's reason.
        assert time.monotonic() - t0 < 3
        assert got.endswith(b"exec attach failed: error on attach stdin: read escape sequence\r\n"), got
    finally:
        sock.close()
    assert api.exec_inspect(exec_id)["Running"] is True


# --- lifecycle ----------------------------------------------------------------------------------


def test_stop_start_restart_reload_and_state(client):
    ct = client.containers.create(IMAGE, ["sleep", "300"], name="lifecycle")
    assert ct.status == "created"
    ct.start()
    ct.reload()
    state = ct.attrs["State"]
    assert ct.status == "running"
    assert (state["Status"], state["Running"]) == ("running", True)
    assert state["Pid"] > 0
    started = state["StartedAt"]

    # sleep as PID 1 ignores SIGTERM: stop escalates to SIGKILL after the timeout.
    t0 = time.monotonic()
    ct.stop(timeout=1)
    elapsed = time.monotonic() - t0
    assert 0.9 <= elapsed < 5, elapsed
    ct.reload()
    state = ct.attrs["State"]
    assert ct.status == "exited"
    assert (state["Running"], state["Pid"], state["ExitCode"]) == (False, 0, 137)
    assert ts(state["FinishedAt"]) >= ts(started)

    ct.start()
    ct.reload()
    assert ct.status == "running"
    second = ct.attrs["State"]["StartedAt"]
    assert ts(second) > ts(started)

    ct.restart(timeout=0)
    ct.reload()
    assert ct.status == "running"
    assert ts(ct.attrs["State"]["StartedAt"]) > ts(second)

    ct.remove(force=True)
    with pytest.raises(NotFound):
        client.containers.get("lifecycle")


def test_kill_with_a_signal_and_default_sigkill(client):
    ct = client.containers.run(IMAGE, TRAP_TERM, detach=True)
    time.sleep(0.2)  # let sh install its trap
    ct.kill(signal="SIGTERM")
    assert ct.wait(timeout=10)["StatusCode"] == 42
    ct.start()
    ct.kill()
    assert ct.wait(timeout=10)["StatusCode"] == 137
    ct.reload()
    assert ct.attrs["State"]["ExitCode"] == 137
    # Killing a stopped container is a conflict.
    with pytest.raises(APIError) as err:
        ct.kill()
    assert err.value.status_code == 409
    ct.remove()


def test_stop_of_a_container_that_honours_sigterm_is_immediate(client):
    ct = client.containers.run(IMAGE, TRAP_TERM, detach=True)
    time.sleep(0.2)
    t0 = time.monotonic()
    ct.stop(timeout=10)
    assert time.monotonic() - t0 < 5
    ct.reload()
    assert ct.attrs["State"]["ExitCode"] == 42
    ct.remove()


def test_remove_of_a_running_container_needs_force(client):
    ct = client.containers.run(IMAGE, ["sleep", "300"], detach=True)
    with pytest.raises(APIError) as err:
        ct.remove()
    assert err.value.status_code == 409
    ct.remove(force=True)
    assert client.containers.list(all=True) == []


def test_list_filters_get_and_prune(client):
    web = client.containers.run(IMAGE, ["sleep", "300"], detach=True, name="skiff-web", labels={"role": "web"})
    db = client.containers.run(IMAGE, "true", detach=True, name="skiff-db", labels={"role": "db"})
    bad = client.containers.run(IMAGE, ["sh", "-c", "exit 3"], detach=True, name="skiff-bad")
    fresh = client.containers.create(IMAGE, "true", name="skiff-fresh")
    assert db.wait()["StatusCode"] == 0 and bad.wait()["StatusCode"] == 3

    lst = client.containers.list
    assert ids(lst()) == {web.id}
    assert ids(lst(all=True)) == {web.id, db.id, bad.id, fresh.id}
    assert ids(lst(all=True, filters={"status": "exited"})) == {db.id, bad.id}
    assert ids(lst(all=True, filters={"status": "created"})) == {fresh.id}
    assert ids(lst(all=True, filters={"status": "running"})) == {web.id}
    assert ids(lst(all=True, filters={"name": "skiff-db"})) == {db.id}
    assert ids(lst(all=True, filters={"id": web.id[:12]})) == {web.id}
    assert ids(lst(all=True, filters={"label": "role=web"})) == {web.id}
    assert ids(lst(all=True, filters={"label": "role"})) == {web.id, db.id}
    assert ids(lst(all=True, filters={"ancestor": IMAGE})) == {web.id, db.id, bad.id, fresh.id}
    assert ids(lst(all=True, filters={"exited": 3})) == {bad.id}
    assert ids(lst(all=True, filters={"exited": 0})) == {db.id}

    got = client.containers.get("skiff-web")
    assert got.id == web.id and got.name == "skiff-web"
    assert got.labels == {"role": "web"}
    assert got.image.tags == ["busybox:latest"]
    assert client.containers.get(web.id[:12]).id == web.id

    pruned = client.containers.prune()
    assert set(pruned["ContainersDeleted"]) == {db.id, bad.id, fresh.id}
    assert isinstance(pruned["SpaceReclaimed"], int)
    assert ids(lst(all=True)) == {web.id}
    web.remove(force=True)
    assert lst(all=True) == []


def test_list_limit_returns_the_most_recent_including_stopped(client):
    running = client.containers.run(IMAGE, ["sleep", "300"], detach=True)
    done = client.containers.run(IMAGE, "true", detach=True)
    fresh = client.containers.create(IMAGE, "true")
    assert done.wait()["StatusCode"] == 0
    # Docker: "limit: return this number of most recently created containers, including
    # non-running ones" (docker-py sends all=0&limit=N).
    assert [c.id for c in client.containers.list(limit=2)] == [fresh.id, done.id]
    assert [c.id for c in client.containers.list(all=True, limit=1)] == [fresh.id]
    assert [c.id for c in client.containers.list(all=True)] == [fresh.id, done.id, running.id]
    running.remove(force=True)
    done.remove()
    fresh.remove()


# --- attach -------------------------------------------------------------------------------------


def test_attach_stream_with_logs_replays_then_follows(client):
    cmd = ["sh", "-c", "echo first; sleep 0.8; echo second >&2; sleep 0.1; echo third"]
    ct = client.containers.run(IMAGE, cmd, detach=True)
    assert wait_for(lambda: ct.logs() == b"first\n", 5)
    stream = client.api.attach(ct.id, stream=True, logs=True)
    try:
        chunks = within(10, list, stream)
    finally:
        stream.close()
    assert b"".join(chunks) == b"first\nsecond\nthird\n"
    assert ct.wait(timeout=5)["StatusCode"] == 0
    ct.remove()


def test_attach_with_logs_to_an_exited_container_returns_its_output(client):
    ct = client.containers.run(IMAGE, ["sh", "-c", "echo out; sleep 0.1; echo err >&2"], detach=True)
    assert ct.wait(timeout=10)["StatusCode"] == 0
    assert client.api.attach(ct.id, stream=False, logs=True, stdout=True, stderr=False) == b"out\n"
    assert client.api.attach(ct.id, stream=False, logs=True, demux=True) == (b"out\n", b"err\n")
    # With stream=1 the recorded output is replayed first; then, like Docker (`docker start -a`
    # attaches before starting), the attach waits for the next start, so only read the replay.
    stream = client.api.attach(ct.id, stream=True, logs=True)
    try:
        replay = b""
        while len(replay) < len(b"out\nerr\n"):
            replay += within(5, next, stream)
        assert replay == b"out\nerr\n"
    finally:
        stream.close()
    ct.remove()


def test_attach_socket_sends_stdin_and_reads_multiplexed_output(client):
    api = client.api
    # Low-level create without detach: docker-py sets AttachStdin and StdinOnce with stdin_open.
    cid = api.create_container(IMAGE, ["sh", "-c", "cat; echo done >&2"], stdin_open=True)["Id"]
    sock = api.attach_socket(cid, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
    try:
        raw = sock._sock
        raw.settimeout(10)
        api.start(cid)
        raw.sendall(b"hello skiff\n")
        raw.shutdown(socket.SHUT_WR)
        frames = list(frames_iter(sock, tty=False))
    finally:
        sock.close()
    stdout = b"".join(data for stream, data in frames if stream == 1)
    stderr = b"".join(data for stream, data in frames if stream == 2)
    assert (stdout, stderr) == (b"hello skiff\n", b"done\n"), frames
    assert api.wait(cid, timeout=10)["StatusCode"] == 0
    api.remove_container(cid)


# --- errors -------------------------------------------------------------------------------------


def test_get_of_a_missing_container_is_not_found(client):
    with pytest.raises(NotFound):
        client.containers.get("nosuch")
    with pytest.raises(NotFound):
        client.api.inspect_container("nosuch")
    for call in (client.api.start, client.api.stop, client.api.kill, client.api.remove_container):
        with pytest.raises(NotFound):
            call("nosuch")


def test_duplicate_and_invalid_names_are_rejected(client):
    first = client.containers.create(IMAGE, "true", name="taken")
    with pytest.raises(APIError) as err:
        client.containers.create(IMAGE, "true", name="taken")
    assert err.value.status_code == 409
    assert "already in use" in str(err.value)
    with pytest.raises(APIError) as err:
        client.containers.create(IMAGE, "true", name="bad name!")
    assert err.value.status_code == 400
    assert ids(client.containers.list(all=True)) == {first.id}
    first.remove()


def test_exec_on_a_stopped_container_is_a_conflict(client):
    ct = client.containers.create(IMAGE, ["sleep", "300"])
    with pytest.raises(APIError) as err:
        ct.exec_run("true")
    assert err.value.status_code == 409
    ct.start()
    ct.kill()
    ct.wait(timeout=10)
    with pytest.raises(APIError) as err:
        ct.exec_run("true")
    assert err.value.status_code == 409
    assert "not running" in str(err.value)
    ct.remove()


def test_stats_top_and_archives_round_trip(client):
    import io
    import tarfile

    ct = client.containers.run(IMAGE, ["sh", "-c", "mkdir /data && echo inside > /data/f && sleep 1000"], detach=True)
    try:
        deadline = time.time() + 5
        while ct.exec_run(["test", "-f", "/data/f"]).exit_code != 0:
            assert time.time() < deadline
            time.sleep(0.05)
        stats = ct.stats(stream=False)
        assert stats["memory_stats"]["usage"] > 0
        assert stats["pids_stats"]["current"] >= 1
        assert "total_usage" in stats["cpu_stats"]["cpu_usage"]
        streamed = ct.stats(stream=True, decode=True)
        first = within(5, next, streamed)
        assert first["id"] == ct.id
        streamed.close()
        top = ct.top()
        assert "PID" in top["Titles"] and any("sleep" in " ".join(p) for p in top["Processes"])
        bits, stat = ct.get_archive("/data/f")
        assert stat["name"] == "f" and stat["size"] == len(b"inside\n")
        with tarfile.open(fileobj=io.BytesIO(b"".join(bits))) as tf:
            assert tf.extractfile("f").read() == b"inside\n"
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            data = b"from python\n"
            info = tarfile.TarInfo("p.txt")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        assert ct.put_archive("/data", buf.getvalue())
        assert ct.exec_run(["cat", "/data/p.txt"]).output == b"from python\n"
        with pytest.raises(docker.errors.NotFound):
            ct.get_archive("/no/such/path")
    finally:
        ct.remove(force=True)


def test_put_archive_into_a_never_started_containers_volume(client, fixture_path):
    with open(fixture_path("busybox.tar"), "rb") as f:
        client.images.load(f)
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        data = b"into the volume\n"
        info = tarfile.TarInfo("note.txt")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    c = client.api.create_container("busybox", "cat /vol1/note.txt", volumes=["/vol1"])
    assert client.api.put_archive(c, "/vol1", buf.getvalue())
    client.api.start(c)
    client.api.wait(c)
    assert client.api.logs(c) == b"into the volume\n"
    client.api.remove_container(c, v=True)


def test_real_time_cpu_limits_with_docker_py_spelling(client):
    # docker-py sends `CPURealtimePeriod`: Go's decoder (and ours) match keys without case.
    hc = client.api.create_host_config(cpu_rt_period=100000, cpu_rt_runtime=5000)
    cid = client.api.create_container("busybox", ["sleep", "60"], host_config=hc)["Id"]
    h = client.api.inspect_container(cid)["HostConfig"]
    assert (h["CpuRealtimePeriod"], h["CpuRealtimeRuntime"]) == (100000, 5000)
    if os.path.exists("/sys/fs/cgroup/cpu/cpu.rt_runtime_us"):
        # cgroup v1 with real-time group scheduling (this CI host): the budget is the container's.
        client.api.start(cid)
        group = [l.split(":")[2] for l in open(f"/proc/{client.api.inspect_container(cid)['State']['Pid']}/cgroup")
                 if ":cpu," in l or ":cpu:" in l or ",cpu:" in l][0]
        assert open(f"/sys/fs/cgroup/cpu{group.strip()}/cpu.rt_runtime_us").read() == "5000\n"
    else:
        with pytest.raises(APIError):
            client.api.start(cid)
    client.api.remove_container(cid, force=True)
    with pytest.raises(APIError) as e:
        client.api.create_container("busybox", "true", host_config=client.api.create_host_config(
            cpu_rt_period=1000, cpu_rt_runtime=5000))
    assert e.value.response.status_code == 400
