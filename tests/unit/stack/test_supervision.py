"""The configuration govsync writes for supervisord, read back by supervisor's own parser."""

from __future__ import annotations

import shlex
from pathlib import Path

from supervisor.datatypes import RestartUnconditionally
from supervisor.options import ServerOptions

from govsync.stack import background, supervision
from streams.config.settings import Settings


def parsed(tmp_path: Path, *programs: supervision.Program) -> ServerOptions:
    """``programs`` as supervisord itself would run them (its parser, our files)."""
    settings = Settings(state_dir=tmp_path)
    directory = tmp_path / "supervisor"
    (directory / "programs").mkdir(parents=True)
    (tmp_path / "logs").mkdir()
    conf = directory / "supervisord.conf"
    conf.write_text(supervision.render_supervisord(settings))
    for program in programs:
        (directory / "programs" / f"{program.name}.conf").write_text(
            supervision.render_program(program)
        )
    options = ServerOptions()
    options.realize(args=["-c", str(conf)])
    return options


def test_a_program_is_restarted_stopped_as_a_group_and_logged_in_the_state_dir(
    tmp_path: Path,
) -> None:
    settings = Settings(state_dir=tmp_path)
    program = background.app_program(settings, "tax-sink", ["sink", "tax"])
    options = parsed(tmp_path, program)
    (group,) = [g for g in options.process_group_configs if g.name == "tax-sink"]
    (config,) = group.process_configs
    assert config.autorestart is RestartUnconditionally
    assert config.autostart is False
    assert config.stopasgroup and config.killasgroup
    assert config.stdout_logfile == str(tmp_path / "logs" / "tax-sink.log")
    assert config.redirect_stderr
    assert config.command.split()[-4:] == ["-m", "govsync.cli", "sink", "tax"]


def test_worker_instances_carry_their_id_and_only_instance_0_keeps_the_metrics_port(
    tmp_path: Path,
) -> None:
    settings = Settings(state_dir=tmp_path)
    options = parsed(
        tmp_path, background.worker_program(settings, 0), background.worker_program(settings, 3)
    )
    env = {
        g.name: g.process_configs[0].environment
        for g in options.process_group_configs
        if g.name.startswith("worker-")
    }
    assert env["worker-0"]["GOVSYNC_WORKER_INSTANCE"] == "0"
    assert env["worker-3"]["GOVSYNC_WORKER_INSTANCE"] == "3"
    assert env["worker-3"]["GOVSYNC_WORKER_PORT"] == "0"
    assert env["worker-0"].get("GOVSYNC_WORKER_PORT") != "0"


def test_values_with_quotes_percent_and_spaces_reach_the_program_unchanged(
    tmp_path: Path,
) -> None:
    awkward = 'a "quoted" 100% value, with \\ and spaces'
    program = supervision.Program(
        name="probe",
        command=["/bin/echo", awkward, 'quarkus.log.category."io.apicurio".level=INFO'],
        log=tmp_path / "logs" / "probe.log",
        environment={"GOVSYNC_PROBE": awkward, "GOVSYNC_PLAIN": "it's"},
        user=None,
        stopsignal="INT",
        stopasgroup=False,
    )
    options = parsed(tmp_path, program)
    (config,) = next(g for g in options.process_group_configs if g.name == "probe").process_configs
    assert config.environment["GOVSYNC_PROBE"] == awkward
    assert config.environment["GOVSYNC_PLAIN"] == "it's"
    assert shlex.split(config.command) == program.command
    assert not config.stopasgroup and config.killasgroup


def test_the_daemon_listens_only_on_a_private_unix_socket_and_runs_the_exits_listener(
    tmp_path: Path,
) -> None:
    options = parsed(tmp_path)
    (server,) = options.server_configs
    assert server["family"] == 1  # socket.AF_UNIX
    assert server["file"] == str(tmp_path / "supervisor" / "supervisord.sock")
    assert server["chmod"] == 0o700
    (listener,) = [g for g in options.process_group_configs if g.name == supervision.LISTENER]
    assert "govsync.stack.exits" in listener.process_configs[0].command


def test_the_next_worker_instance_is_the_lowest_id_not_configured() -> None:
    assert background.next_instance(set()) == 0
    assert background.next_instance({0, 1}) == 2
    assert background.next_instance({0, 2}) == 1
    assert background.next_instance({1}) == 0


def test_a_killed_program_is_held_only_once_stopped_not_while_exited() -> None:
    # EXITED is the moment between a kill and autorestart: supervisord starts it again.
    assert not supervision.held("EXITED")
    assert not any(supervision.held(s) for s in (*supervision.RUNNING_STATES, "STOPPING"))
    assert supervision.held("STOPPED") and supervision.held("FATAL")
    assert supervision.held(None)  # not configured: nothing to start again
