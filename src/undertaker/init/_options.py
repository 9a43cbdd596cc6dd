"""Options of ``undertaker run``: command line first, then ``UNDERTAKER_*`` variables.

Hand-written rather than argparse: the init runs before every container
command, and the parser has to be both quick and strict. Every option has an
environment variable; the command line wins when both are given: a flag
overrides its variable either way (``--no-process-group``), and a repeatable
option replaces its variable's list rather than adding to it.
"""

from __future__ import annotations

from undertaker.init._signals import SIGTERM, SignalError, parse_signal

USAGE = "usage: undertaker run [OPTIONS] -- COMMAND [ARGS...]"

HELP = f"""{USAGE}

Run COMMAND as the child of a minimal init: reap every orphan, forward
signals, exit with the child's status, and drain the whole process tree on
exit (SIGTERM, or what -r TERM:... makes it, a grace period, then SIGKILL).
Works as PID 1 of a container or, anywhere else, as a child subreaper.
A forwarded TSTP, TTIN or TTOU stops the init too, as in dumb-init.

Options:
  -g, --process-group     forward signals to the child's process group
  -r, --rewrite FROM:TO   forward signal FROM as TO; TO=0 drops it (repeatable)
      --term-delay TIME   wait TIME before forwarding SIGTERM (load-balancer drain)
  -e, --remap-exit CODE   exit 0 when the child's status is CODE (repeatable)
      --grace TIME        drain: how long after SIGTERM before SIGKILL (default 10s)
      --no-drain          leave other processes alone: exit when the child does (tini)
      --kill-orphans      SIGKILL adopted orphans as soon as they appear
  -p, --pdeathsig SIG     signal the init gets (and forwards) when its parent dies
      --log-reaped        one JSON line per reaped process on stderr, and a summary
      --no-subreaper      do not become a child subreaper (orphans escape; testing)
  -v, --verbose           say on stderr what the init does (start, signals, drain)
      --no-process-group, --no-kill-orphans, --no-log-reaped, --subreaper,
      --drain, --no-verbose
                          turn the flag off (on) again, over its variable
  -V, --version           show the version and exit
  -h, --help              show this help and exit

TIME is a number with an optional unit: 500ms, 10s, 2m (plain numbers are
seconds). SIG is a name or number: TERM, SIGTERM, 15, RTMIN+1 (not 32 or
33, which the C library keeps for itself).

Each option can also be set by the variable below. The command line wins:
a flag overrides its variable, and -r or -e given on the command line
replace the list in UNDERTAKER_REWRITE or UNDERTAKER_REMAP_EXIT.

Environment variables:
  UNDERTAKER_PROCESS_GROUP=1        same as -g
  UNDERTAKER_REWRITE=FROM:TO,...    same as -r, comma-separated
  UNDERTAKER_TERM_DELAY=TIME        same as --term-delay
  UNDERTAKER_REMAP_EXIT=CODE,...    same as -e, comma-separated
  UNDERTAKER_GRACE=TIME             same as --grace
  UNDERTAKER_DRAIN=0                same as --no-drain
  UNDERTAKER_KILL_ORPHANS=1         same as --kill-orphans
  UNDERTAKER_PDEATHSIG=SIG          same as -p
  UNDERTAKER_LOG_REAPED=1           same as --log-reaped
  UNDERTAKER_SUBREAPER=0            same as --no-subreaper
  UNDERTAKER_VERBOSE=1              same as -v
  LISTEN_PID                        if set, rewritten to the child's PID

Exit status: the child's exit code, 128+N if signal N killed it, 0 for codes
given to -e, 126 if COMMAND cannot be executed, 127 if it is not found,
2 for a usage error.
"""

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class UsageError(ValueError):
    """Bad command line or environment; printed as one line, exit status 2."""


class Options:
    """Everything ``undertaker run`` was asked to do."""

    __slots__ = (
        "command",
        "drain",
        "grace",
        "help",
        "kill_orphans",
        "log_reaped",
        "pdeathsig",
        "process_group",
        "remap_exit",
        "rewrite",
        "subreaper",
        "term_delay",
        "verbose",
        "version",
    )

    def __init__(self) -> None:
        """Start from the defaults."""
        self.command: list[str] = []
        self.process_group = False
        self.rewrite: dict[int, int] = {}
        self.term_delay = 0.0
        self.remap_exit: set[int] = set()
        self.grace = 10.0
        self.drain = True
        self.kill_orphans = False
        self.pdeathsig = 0
        self.log_reaped = False
        self.subreaper = True
        self.verbose = False
        self.help = False
        self.version = False

    def stop_signal(self) -> int:
        """What the drain sends first: SIGTERM as ``-r TERM:...`` rewrites it (0: nothing).

        ``-r TERM:QUIT`` says the command stops gracefully on SIGQUIT (nginx),
        so its leftover processes get SIGQUIT too, as dumb-init does.
        """
        return self.rewrite.get(SIGTERM, SIGTERM)


def parse_duration(text: str, what: str) -> float:
    """Parse ``500ms``, ``10s``, ``2m``, ``1.5`` into seconds."""
    word = text.strip().lower()
    for unit in ("ms", "s", "m", "h"):
        if word.endswith(unit):
            number, scale = word[: -len(unit)], _UNITS[unit]
            break
    else:
        number, scale = word, 1.0
    try:
        # float() also takes non-ASCII digits (Arabic-Indic, fullwidth): ASCII only.
        value = float(number if number.isascii() else "x") * scale
    except ValueError:
        raise UsageError(f"{what}: not a duration: {text!r} (examples: 500ms, 10s, 2m)") from None
    if not 0 <= value <= 86400 * 365:
        raise UsageError(f"{what}: duration out of range: {text!r}")
    return value


def parse_rewrite(text: str, what: str = "--rewrite") -> tuple[int, int]:
    """Parse ``FROM:TO`` (``TERM:QUIT``, ``USR1:0``) into two signal numbers."""
    parts = text.split(":")
    if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
        raise UsageError(f"{what}: expected FROM:TO such as TERM:QUIT or USR1:0, got {text!r}")
    try:
        source = parse_signal(parts[0])
        target = parse_signal(parts[1], allow_zero=True)
    except SignalError as err:
        raise UsageError(f"{what} {text!r}: {err}") from None
    if source in (9, 19):
        raise UsageError(f"{what} {text!r}: SIGKILL and SIGSTOP never reach the init")
    return source, target


def parse_exit_code(text: str, what: str = "--remap-exit") -> int:
    """Parse an exit status 0..255."""
    word = text.strip()
    if not (word.isascii() and word.isdigit()) or int(word) > 255:
        raise UsageError(f"{what}: not an exit status 0..255: {text!r}")
    return int(word)


def _parse_bool(text: str, what: str) -> bool:
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise UsageError(f"{what}: expected 1 or 0, got {text!r}")


def _pdeathsig(text: str, what: str) -> int:
    try:
        return parse_signal(text)
    except SignalError as err:
        raise UsageError(f"{what}: {err}") from None


def apply_environment(options: Options, environ: dict[str, str]) -> None:
    """Read the ``UNDERTAKER_*`` variables into *options* (before the command line)."""
    if (value := environ.get("UNDERTAKER_PROCESS_GROUP")) is not None:
        options.process_group = _parse_bool(value, "UNDERTAKER_PROCESS_GROUP")
    if (value := environ.get("UNDERTAKER_REWRITE")) is not None:
        for item in filter(None, (part.strip() for part in value.split(","))):
            source, target = parse_rewrite(item, "UNDERTAKER_REWRITE")
            options.rewrite[source] = target
    if (value := environ.get("UNDERTAKER_TERM_DELAY")) is not None:
        options.term_delay = parse_duration(value, "UNDERTAKER_TERM_DELAY")
    if (value := environ.get("UNDERTAKER_REMAP_EXIT")) is not None:
        for item in filter(None, (part.strip() for part in value.split(","))):
            options.remap_exit.add(parse_exit_code(item, "UNDERTAKER_REMAP_EXIT"))
    if (value := environ.get("UNDERTAKER_GRACE")) is not None:
        options.grace = parse_duration(value, "UNDERTAKER_GRACE")
    if (value := environ.get("UNDERTAKER_KILL_ORPHANS")) is not None:
        options.kill_orphans = _parse_bool(value, "UNDERTAKER_KILL_ORPHANS")
    if (value := environ.get("UNDERTAKER_PDEATHSIG")) is not None and value.strip():
        options.pdeathsig = _pdeathsig(value, "UNDERTAKER_PDEATHSIG")
    if (value := environ.get("UNDERTAKER_LOG_REAPED")) is not None:
        options.log_reaped = _parse_bool(value, "UNDERTAKER_LOG_REAPED")
    if (value := environ.get("UNDERTAKER_SUBREAPER")) is not None:
        options.subreaper = _parse_bool(value, "UNDERTAKER_SUBREAPER")
    if (value := environ.get("UNDERTAKER_DRAIN")) is not None:
        options.drain = _parse_bool(value, "UNDERTAKER_DRAIN")
    if (value := environ.get("UNDERTAKER_VERBOSE")) is not None:
        options.verbose = _parse_bool(value, "UNDERTAKER_VERBOSE")


# Options that take a value: spelling -> attribute of Options.
_SPELLINGS = {
    "-r": "rewrite",
    "--rewrite": "rewrite",
    "--term-delay": "term_delay",
    "-e": "remap_exit",
    "--remap-exit": "remap_exit",
    "--grace": "grace",
    "-p": "pdeathsig",
    "--pdeathsig": "pdeathsig",
}
# Flags: spelling -> (attribute of Options, the value it sets).
_FLAGS = {
    "-g": ("process_group", True),
    "--process-group": ("process_group", True),
    "--no-process-group": ("process_group", False),
    "--kill-orphans": ("kill_orphans", True),
    "--no-kill-orphans": ("kill_orphans", False),
    "--log-reaped": ("log_reaped", True),
    "--no-log-reaped": ("log_reaped", False),
    "--subreaper": ("subreaper", True),
    "--no-subreaper": ("subreaper", False),
    "--drain": ("drain", True),
    "--no-drain": ("drain", False),
    "-v": ("verbose", True),
    "--verbose": ("verbose", True),
    "--no-verbose": ("verbose", False),
    "-h": ("help", True),
    "--help": ("help", True),
    "-V": ("version", True),
    "--version": ("version", True),
}


def _set(options: Options, attribute: str, value: str, spelling: str) -> None:
    if attribute == "rewrite":
        source, target = parse_rewrite(value, spelling)
        options.rewrite[source] = target
    elif attribute == "remap_exit":
        options.remap_exit.add(parse_exit_code(value, spelling))
    elif attribute in ("term_delay", "grace"):
        setattr(options, attribute, parse_duration(value, spelling))
    else:  # pdeathsig
        options.pdeathsig = _pdeathsig(value, spelling)


def parse_options(argv: list[str], environ: dict[str, str]) -> Options:
    """Parse ``[OPTIONS] [--] COMMAND [ARGS...]`` on top of the environment.

    Option parsing stops at ``--`` or at the first word that is not an
    option, so the command's own options are never taken for ours.

    Raises:
        UsageError: anything malformed, with a one-line message.
    """
    options = Options()
    apply_environment(options, environ)
    replaced: set[str] = set()  # lists the command line has started over (not typing.Set)
    index = 0
    while index < len(argv):
        word = argv[index]
        index += 1
        if word == "--":
            break
        if not word.startswith("-") or word == "-":
            index -= 1
            break
        if word.startswith("--"):
            spelling, equals, inline = word.partition("=")
            has_inline = bool(equals)
        else:
            spelling, has_inline, inline = word[:2], len(word) > 2, word[2:]
        if spelling in _FLAGS:
            if has_inline:
                raise UsageError(f"option {spelling} takes no value")
            setattr(options, *_FLAGS[spelling])
            continue
        attribute = _SPELLINGS.get(spelling)
        if attribute is None:
            raise UsageError(f"unknown option {word!r}")
        if attribute in ("rewrite", "remap_exit") and attribute not in replaced:
            replaced.add(attribute)  # the command line's list replaces the variable's
            getattr(options, attribute).clear()
        if has_inline:
            value = inline
        elif index < len(argv):
            value = argv[index]
            index += 1
        else:
            raise UsageError(f"option {spelling} needs a value")
        _set(options, attribute, value, spelling)
    options.command = argv[index:]
    if not options.command and not (options.help or options.version):
        raise UsageError("no command given (undertaker run -- COMMAND [ARGS...])")
    return options
