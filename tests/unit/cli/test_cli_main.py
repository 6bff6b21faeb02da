"""The ``strom`` entry point: dispatch, usage errors and failures without a cluster."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from strom.cli.main import main


@pytest.fixture
def refusing_address() -> Iterator[str]:
    """An address on 127.0.0.1 that refuses connections: bound, never listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("strom 0.1.0")


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["topics"],
        ["topics", "create"],
        ["topics", "create", "t", "--partitions", "0"],
        ["produce", "t", "--acks", "2"],
        ["consume", "t", "--from-beginning", "--offset", "3"],
        ["consume", "t", "--format", "xml"],
        ["topics", "list", "-X", "no-equals-sign"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "usage:" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [["topics", "list"], ["produce", "t"], ["consume", "t", "--from-beginning"]],
)
def test_unreachable_cluster_is_one_error_line(
    argv: list[str], refusing_address: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main([*argv, "-b", refusing_address, "--timeout", "0.5"])
    err = capsys.readouterr().err
    assert status == 1
    assert err.startswith(f"error: could not reach the cluster at {refusing_address} within 0.5 s")
    assert err.count("\n") == 1


def test_bootstrap_comes_from_the_environment(
    refusing_address: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STROM_BOOTSTRAP", refusing_address)
    assert main(["topics", "list", "--timeout", "0.5"]) == 1
    assert refusing_address in capsys.readouterr().err


def test_unknown_client_property_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topics", "list", "-X", "no.such.property=1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: invalid client configuration:")
    assert "no.such.property" in err


@pytest.mark.parametrize(
    ("options", "message"),
    [([], "nothing to alter"), (["--set", "a=1", "--delete-config", "a"], "both set and deleted: a")],
)
def test_contradictory_alter_is_refused_before_connecting(
    options: list[str], message: str, refusing_address: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["topics", "alter", "t", *options, "-b", refusing_address]) == 2
    assert capsys.readouterr().err.startswith(f"error: {message}")


def test_missing_produce_file_is_reported(
    tmp_path: Path, refusing_address: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["produce", "t", "--file", f"{tmp_path}/missing.txt", "-b", refusing_address])
    assert status == 1
    assert capsys.readouterr().err.startswith("error: cannot read ")
