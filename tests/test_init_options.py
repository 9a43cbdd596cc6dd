"""``undertaker run``: options, environment variables, help and usage errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from undertaker.init._options import HELP, UsageError, parse_duration, parse_options
from undertaker.init._signals import parse_signal

INIT = [sys.executable, "-m", "undertaker", "run"]


def init(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*INIT, *args], capture_output=True, text=True, timeout=30, check=False, env=env
    )


@pytest.mark.smoke
def test_defaults_and_command_after_double_dash() -> None:
    """Without options: grace 10 s, subreaper on, the command taken verbatim."""
    options = parse_options(["--", "cmd", "-g", "--rewrite"], {})
    assert options.command == ["cmd", "-g", "--rewrite"]
    assert options.grace == 10.0
    assert options.subreaper
    assert not options.process_group


def test_parsing_stops_at_the_first_word_that_is_not_an_option() -> None:
    """``run -g cmd -e 3`` gives -e to cmd, not to the init."""
    options = parse_options(["-g", "cmd", "-e", "3"], {})
    assert options.process_group
    assert options.command == ["cmd", "-e", "3"]
    assert options.remap_exit == set()


def test_every_option_parses() -> None:
    """Each option and its value land where they should, inline or separate."""
    options = parse_options(
        [
            "-g", "-r", "TERM:QUIT", "--rewrite=USR1:0", "--term-delay", "1.5s",
            "-e", "143", "-e130", "--grace", "250ms", "--kill-orphans", "-p", "SIGUSR2",
            "--log-reaped", "--no-subreaper", "--no-drain", "-v", "--", "x",
        ],
        {},
    )  # fmt: skip
    assert options.process_group
    assert options.rewrite == {15: 3, 10: 0}
    assert options.term_delay == 1.5
    assert options.remap_exit == {143, 130}
    assert options.grace == 0.25
    assert options.kill_orphans
    assert options.pdeathsig == 12
    assert options.log_reaped
    assert not options.subreaper
    assert not options.drain
    assert options.verbose


def test_every_environment_variable_parses_and_the_command_line_wins() -> None:
    """UNDERTAKER_* set every option; an explicit option overrides its variable."""
    env = {
        "UNDERTAKER_PROCESS_GROUP": "1",
        "UNDERTAKER_REWRITE": "TERM:QUIT, HUP:0",
        "UNDERTAKER_TERM_DELAY": "2s",
        "UNDERTAKER_REMAP_EXIT": "143,130",
        "UNDERTAKER_GRACE": "1m",
        "UNDERTAKER_KILL_ORPHANS": "yes",
        "UNDERTAKER_PDEATHSIG": "TERM",
        "UNDERTAKER_LOG_REAPED": "true",
        "UNDERTAKER_SUBREAPER": "0",
        "UNDERTAKER_DRAIN": "off",
        "UNDERTAKER_VERBOSE": "1",
    }
    options = parse_options(["--grace", "3", "--", "x"], env)
    assert options.process_group
    assert options.rewrite == {15: 3, 1: 0}
    assert options.term_delay == 2.0
    assert options.remap_exit == {143, 130}
    assert options.grace == 3.0
    assert options.kill_orphans
    assert options.pdeathsig == 15
    assert options.log_reaped
    assert not options.subreaper
    assert not options.drain
    assert options.verbose


def test_every_flag_has_a_command_line_way_back() -> None:
    """--no-process-group, --no-kill-orphans, --no-log-reaped, --subreaper beat their variables."""
    env = {
        "UNDERTAKER_PROCESS_GROUP": "1",
        "UNDERTAKER_KILL_ORPHANS": "1",
        "UNDERTAKER_LOG_REAPED": "1",
        "UNDERTAKER_SUBREAPER": "0",
        "UNDERTAKER_DRAIN": "0",
        "UNDERTAKER_VERBOSE": "1",
    }
    argv = ["--no-process-group", "--no-kill-orphans", "--no-log-reaped", "--subreaper"]
    options = parse_options([*argv, "--drain", "--no-verbose", "x"], env)
    assert not options.process_group
    assert not options.kill_orphans
    assert not options.log_reaped
    assert options.subreaper
    assert options.drain
    assert not options.verbose
    assert parse_options(["--no-kill-orphans", "--kill-orphans", "x"], {}).kill_orphans  # last wins


def test_repeatable_options_on_the_command_line_replace_the_variables_list() -> None:
    """-r and -e on the command line start over; without them the variable's list stands."""
    env = {"UNDERTAKER_REWRITE": "TERM:QUIT,HUP:0", "UNDERTAKER_REMAP_EXIT": "143"}
    options = parse_options(["-r", "USR1:USR2", "-r", "INT:0", "-e", "1", "-e", "2", "x"], env)
    assert options.rewrite == {10: 12, 2: 0}
    assert options.remap_exit == {1, 2}
    options = parse_options(["x"], env)
    assert options.rewrite == {15: 3, 1: 0}
    assert options.remap_exit == {143}


def test_command_line_wins_for_a_real_run() -> None:
    """UNDERTAKER_REMAP_EXIT=7 with -e 8: 7 passes through; --no-log-reaped silences the log."""
    env = {**os.environ, "UNDERTAKER_REMAP_EXIT": "7", "UNDERTAKER_LOG_REAPED": "1"}
    done = init("-e", "8", "--no-log-reaped", "--", "sh", "-c", "exit 7", env=env)
    assert done.returncode == 7
    assert done.stderr == ""
    done = init("--", "sh", "-c", "exit 7", env=env)  # negative control: the variables apply
    assert done.returncode == 0
    assert '"event": "exit"' in done.stderr


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10", 10.0), ("10s", 10.0), ("500ms", 0.5), ("2m", 120.0), ("1h", 3600.0), ("0", 0.0)],
)
def test_durations(text: str, seconds: float) -> None:
    """Durations take ms, s, m, h or no unit (seconds)."""
    assert parse_duration(text, "--grace") == seconds


@pytest.mark.parametrize(
    ("text", "number"),
    [("TERM", 15), ("SIGTERM", 15), ("sigterm", 15), ("15", 15), ("RTMIN+1", 35), ("RTMAX", 64)],
)
def test_signal_spellings(text: str, number: int) -> None:
    """Signals are names with or without SIG, any case, numbers, or RTMIN+N."""
    assert parse_signal(text) == number


def test_signal_names_round_trip_with_undertaker_wait() -> None:
    """The init names signals as undertaker.wait does (SIGRTMIN, SIGRTMIN+1, SIGRTMAX), and parses
    every name it writes back to the same number."""
    import signal  # noqa: PLC0415

    from undertaker.wait import signal_name  # noqa: PLC0415

    assert signal_name(signal.SIGRTMIN) == "SIGRTMIN"
    assert signal_name(signal.SIGRTMAX) == "SIGRTMAX"
    for signum in signal.valid_signals():
        assert parse_signal(signal_name(signum)) == signum


def test_exit_code_is_the_shell_code_then_remapped() -> None:
    """undertaker.init.exit_code: WaitStatus.shell_code, then -e."""
    from undertaker.init import exit_code  # noqa: PLC0415

    assert exit_code(143 << 8, set()) == 143
    assert exit_code(15, set()) == 143
    assert exit_code(15, {143}) == 0
    assert exit_code(0x8B, set()) == 139  # SIGSEGV with a core


MALFORMED_REWRITES = [
    "TERM", "TERM:", ":QUIT", "FOO:TERM", "TERM:FOO", "99:1", "TERM:QUIT:HUP",
    "KILL:TERM", "STOP:0", "0:TERM", "-1:2", "",
]  # fmt: skip


@pytest.mark.smoke
@pytest.mark.parametrize("text", MALFORMED_REWRITES)
def test_malformed_rewrites_are_rejected_with_one_line_and_status_2(text: str) -> None:
    """A bad --rewrite gives one clear line on stderr and exit status 2, no traceback."""
    done = init("--rewrite", text, "--", "true")
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("undertaker run: error: --rewrite")
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["--grace", "soon"], {}, "--grace: not a duration"),
        (["--term-delay", "-1s"], {}, "--term-delay: duration out of range"),
        (["-e", "256"], {}, "-e: not an exit status"),
        (["-p", "NOPE"], {}, "-p: unknown signal"),
        (["--bogus"], {}, "unknown option '--bogus'"),
        (["--grace"], {}, "option --grace needs a value"),
        (["-g=1"], {}, "option -g takes no value"),
        ([], {}, "no command given"),
        ([], {"UNDERTAKER_GRACE": "x"}, "UNDERTAKER_GRACE: not a duration"),
        ([], {"UNDERTAKER_PROCESS_GROUP": "maybe"}, "UNDERTAKER_PROCESS_GROUP: expected 1 or 0"),
        ([], {"UNDERTAKER_REWRITE": "TERM"}, "UNDERTAKER_REWRITE: expected FROM:TO"),
        # Unicode digits: "²".isdigit() is true but int("²") fails.
        (["-p", "²", "--", "true"], {}, "-p: unknown signal '²'"),
        (["-e", "²", "--", "true"], {}, "-e: not an exit status 0..255: '²'"),
        (["-r", "RTMIN+²:0", "--", "true"], {}, "-r 'RTMIN+²:0': unknown signal"),
        (["-r", "²:0", "--", "true"], {}, "-r '²:0': unknown signal"),
        (["--grace", "\u0661\u0660s", "--", "true"], {}, "--grace: not a duration"),
        ([], {"UNDERTAKER_PDEATHSIG": "²"}, "UNDERTAKER_PDEATHSIG: unknown signal"),
        ([], {"UNDERTAKER_REMAP_EXIT": "1,²"}, "UNDERTAKER_REMAP_EXIT: not an exit status"),
        # 32 and 33 are glibc's (SIGRTMIN is 34), refused like RTMIN-1.
        (["-r", "15:32", "--", "true"], {}, "-r '15:32': signal 32 is reserved by the C library"),
        (["-r", "33:TERM", "--", "true"], {}, "-r '33:TERM': signal 33 is reserved"),
        (["-r", "TERM:RTMIN-1", "--", "true"], {}, "real-time signal out of range"),
        (["-p", "32", "--", "true"], {}, "-p: signal 32 is reserved by the C library"),
        ([], {"UNDERTAKER_PDEATHSIG": "33"}, "UNDERTAKER_PDEATHSIG: signal 33 is reserved"),
        ([], {"UNDERTAKER_REWRITE": "32:0"}, "UNDERTAKER_REWRITE '32:0': signal 32 is reserved"),
        ([], {"UNDERTAKER_DRAIN": "never"}, "UNDERTAKER_DRAIN: expected 1 or 0"),
        (["--version=1"], {}, "option --version takes no value"),
    ],
)
def test_bad_input_is_one_line_and_status_2(
    args: list[str], env: dict[str, str], needle: str
) -> None:
    """Bad options and variables: exit status 2 and a one-line message naming the culprit."""
    command = ["--", "true"] if env else []
    done = init(*args, *command, env={"PATH": "/usr/bin:/bin", **env})
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert needle in done.stderr
    assert done.stdout == ""


def test_usage_error_raised_in_process() -> None:
    """The parser raises UsageError, it never exits by itself."""
    with pytest.raises(UsageError, match="expected FROM:TO"):
        parse_options(["-r", "TERM", "--", "x"], {})


@pytest.mark.smoke
def test_help_lists_every_option_and_environment_variable() -> None:
    """--help prints every option and an 'Environment variables:' section naming each one."""
    done = init("--help")
    assert done.returncode == 0
    assert done.stdout == HELP
    options_part, env_part = done.stdout.split("Environment variables:")
    for spelling in [
        "--process-group", "--rewrite", "--term-delay", "--remap-exit", "--grace",
        "--kill-orphans", "--pdeathsig", "--log-reaped", "--no-subreaper", "--help",
        "--no-process-group", "--no-kill-orphans", "--no-log-reaped", "--subreaper",
        "--no-drain", "--drain", "--verbose", "--no-verbose", "--version",
    ]:  # fmt: skip
        assert spelling in options_part
    from undertaker.init import _options  # noqa: PLC0415

    source = Path(_options.__file__).read_text()
    used = set(re.findall(r'"(UNDERTAKER_[A-Z_]+)"', source))
    assert used
    for variable in used:
        assert variable in env_part


def test_undertaker_help_lists_run() -> None:
    """The top-level help lists the run subcommand."""
    done = subprocess.run(
        [sys.executable, "-m", "undertaker", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert re.search(r"^\s+run\s", done.stdout, re.MULTILINE), done.stdout


def test_run_is_light() -> None:
    """``undertaker run`` loads no argparse-parsed subcommand, no json, no /proc scanner."""
    code = (
        "import sys; sys.argv = ['undertaker', 'run', '--', 'true'];"
        "import os; real_exit = os._exit\n"
        "def spy(code):\n"
        "    print(' '.join(sorted(sys.modules)), flush=True); real_exit(code)\n"
        "os._exit = spy\n"
        "from undertaker.cli import main; main()"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    modules = set(done.stdout.split())
    assert "undertaker.init._supervise" in modules
    heavy = {"json", "dataclasses", "undertaker.census", "undertaker.proc", "undertaker.cli.ps"}
    heavy |= {"termios", "tty", "socket", "undertaker.cli.top", "undertaker.proc._table"}
    heavy |= {"prometheus_client", "undertaker.exporter"}
    assert not heavy & modules
