"""StromProcess against a stand-in ``serve`` command, so its life cycle is tested without a real broker."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from strom.testing.process import LISTENING_LINE, StromProcess, StromProcessError

FAKE_SERVE = Path(__file__).with_name("fake_strom_serve.py")


def fake_process(tmp_path: Path, mode: str = "serve", **options: object) -> StromProcess:
    return StromProcess(
        tmp_path / "data",
        command=[sys.executable, str(FAKE_SERVE)],
        env={"FAKE_SERVE_MODE": mode},
        **options,  # type: ignore[arg-type]
    )


def test_listening_line_is_parsed() -> None:
    match = LISTENING_LINE.match("Strom 0.1.0 listening on 127.0.0.1:40123, data in /tmp/a b/data")
    assert match is not None
    assert (match["host"], match["port"], match["data_dir"]) == ("127.0.0.1", "40123", "/tmp/a b/data")


def test_start_reports_address_and_stop_is_clean(tmp_path: Path) -> None:
    with fake_process(tmp_path, overrides={"num.partitions": "3"}, node_id=7) as broker:
        assert broker.running
        assert broker.bootstrap == f"127.0.0.1:{broker.port}"
        assert broker.data_dir == (tmp_path / "data").resolve()
        with socket.create_connection(("127.0.0.1", broker.port), timeout=5):
            pass
    assert broker.returncode == 0
    log = broker.read_log()
    assert "'-o', 'num.partitions=3'" in log
    assert "'--node-id', '7'" in log
    assert "'--port', '0'" in log
    assert "a later stdout line" in log
    assert "stopped cleanly" in log
    assert broker.log_path == tmp_path / "data.log"


def test_restart_keeps_the_port(tmp_path: Path) -> None:
    with fake_process(tmp_path) as broker:
        port, first_pid = broker.port, broker.pid
        broker.restart()
        assert (broker.port, broker.running) == (port, True)
        assert broker.pid != first_pid


def test_restart_after_kill_moves_to_a_free_port_when_the_old_one_is_taken(tmp_path: Path) -> None:
    with fake_process(tmp_path) as broker:
        port = broker.port
        assert broker.kill() == -9
        with socket.socket() as squatter:
            squatter.bind(("127.0.0.1", port))
            squatter.listen()
            broker.restart()
            assert broker.running
            assert broker.port != port


def test_explicit_port_is_not_silently_changed(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        broker = fake_process(tmp_path, port=squatter.getsockname()[1])
        with pytest.raises(StromProcessError, match="cannot listen"):
            broker.start()


def test_a_crash_during_startup_quotes_the_log(tmp_path: Path) -> None:
    with pytest.raises(StromProcessError, match=r"(?s)status 3.*cannot open the log directory"):
        fake_process(tmp_path, "crash").start()


def test_silence_times_out_and_kills_the_process(tmp_path: Path) -> None:
    broker = fake_process(tmp_path, "mute", startup_timeout=0.5)
    with pytest.raises(StromProcessError, match=r"(?s)did not announce itself.*starting very slowly"):
        broker.start()
    assert not broker.running


def test_an_unexpected_first_line_is_an_error(tmp_path: Path) -> None:
    broker = fake_process(tmp_path, "garble")
    with pytest.raises(StromProcessError, match="hello there"):
        broker.start()
    assert not broker.running


def test_a_broker_ignoring_sigterm_is_killed_and_reported(tmp_path: Path) -> None:
    broker = fake_process(tmp_path, "stubborn", stop_timeout=0.3).start()
    with pytest.raises(StromProcessError, match="ignored SIGTERM"):
        broker.stop()
    assert not broker.running


def test_starting_twice_is_refused(tmp_path: Path) -> None:
    with fake_process(tmp_path) as broker, pytest.raises(StromProcessError, match="already running"):
        broker.start()


def test_address_before_start_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(StromProcessError, match="not started"):
        _ = fake_process(tmp_path).bootstrap
