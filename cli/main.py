"""`governor`: the on-call command line on top of the client SDK (console script `governor = cli.main:main`).

Policy commands (setup, validate, scenarios: cli/policy_cmds.py) read the policy files only. The live views (status,
chain/hierarchy, recovery: cli/status_cmds.py) read the gateways' admin API and Temporal. Incident commands
(cli/incident_cmds.py, cli/audit.py) talk to Temporal through `governor.client`; controls are updates, so a request
the workflow refuses prints its reason and exits 2. `governor up` is cli/stack_cmds.py.

Exit codes: 0 ok, 1 usage or configuration error, 2 refused by the workflow, 3 unknown incident,
4 Temporal or the worker did not answer, 5 audit chain broken.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, cast

from cli.common import (
    EXIT_REFUSED,
    EXIT_UNAVAILABLE,
    EXIT_UNKNOWN_INCIDENT,
    EXIT_USAGE,
    UserError,
)
from cli.parser import build_parser
from governor.client import ControlRefused, GovernorConfigError, GovernorError, GovernorUnavailable, IncidentNotFound
from governor.policy import PolicyError

POLICY_COMMANDS = ("setup", "validate", "scenarios", "alert-rules", "policy")
STATUS_COMMANDS = ("status", "chain", "hierarchy", "recovery")
INCIDENT_COMMANDS = ("list", "show", "simulate", "failover", "recover", "postmortem", "watch")
CONTROL_COMMANDS = ("approve", "reject", "pause", "resume", "abort", "promote", "force-tier", "note", "claim")


def command(name: str) -> Callable[[argparse.Namespace], Any]:
    """The function behind a command. Each group's module is imported when one of its commands runs, so
    `governor validate` does not pay for the Temporal SDK and `governor list` not for the launcher and the demo."""
    if name in POLICY_COMMANDS:
        from cli import policy_cmds

        return cast(Callable[[argparse.Namespace], Any], getattr(policy_cmds, f"cmd_{name.replace('-', '_')}"))
    if name in STATUS_COMMANDS:
        from cli import status_cmds

        return cast(Callable[[argparse.Namespace], Any], getattr(status_cmds, f"cmd_{name}"))
    if name in INCIDENT_COMMANDS or name in CONTROL_COMMANDS:
        from cli import incident_cmds

        handler = "cmd_control" if name in CONTROL_COMMANDS else f"cmd_{name}"
        return cast(Callable[[argparse.Namespace], Any], getattr(incident_cmds, handler))
    if name == "audit":
        from cli.audit import cmd_audit

        return cmd_audit
    if name == "completion":
        return cmd_completion
    if name == "up":
        from cli.stack_cmds import cmd_up

        return cmd_up
    raise UserError(f"unknown command {name!r}")


def plain_transport_error(text: str) -> str:
    """One line instead of the SDK core's `Failed client connect: ... tonic::transport::Error(...)`: the part before
    it, then the OS's own words (`Connection refused`) when the Rust debug text carries them."""
    if "tonic::transport::Error" not in text:
        return text
    head = text.split(": Failed client connect", 1)[0].split(": Server connection error", 1)[0]
    reason = re.search(r'message: "([^"]+)"', text) or re.search(r'ConnectError\("([^"]+)"', text)
    return f"{head}: {reason.group(1).lower() if reason else 'connection failed'} (is the Temporal server running?)"


def cmd_completion(args: argparse.Namespace) -> int:
    """`governor completion bash|zsh`: the completion script shtab builds from this very parser."""
    import shtab

    print(shtab.complete(build_parser(), shell=args.shell))
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


async def run(argv: Sequence[str] | None = None) -> int:
    """Parse and run one command; user errors print a message (no traceback) and map to the exit codes above."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        result = command(args.command)(args)
        return int(await result) if inspect.isawaitable(result) else int(result)
    except UserError as err:
        print(f"governor: {err}", file=sys.stderr)
        return err.exit_code
    except PolicyError as err:
        print(f"governor: {err}", file=sys.stderr)
        return EXIT_USAGE
    except ControlRefused as err:
        print(f"refused: {err.reason}", file=sys.stderr)
        return EXIT_REFUSED
    except IncidentNotFound as err:
        print(f"governor: {err}", file=sys.stderr)
        return EXIT_UNKNOWN_INCIDENT
    except GovernorConfigError as err:
        print(f"governor: {err}", file=sys.stderr)
        return EXIT_USAGE
    except (GovernorUnavailable, TimeoutError) as err:
        print(f"governor: {plain_transport_error(str(err))}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except GovernorError as err:
        print(f"governor: {err}", file=sys.stderr)
        return EXIT_USAGE


def run_command(argv: Sequence[str] | None = None) -> int:
    """Run one command to its exit code (Ctrl-C: 130; output pipe closed early, as by `| head`: 141, like a tool
    killed by SIGPIPE), in this process, without leaving it."""
    try:
        return asyncio.run(run(argv))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        with contextlib.suppress(OSError):  # stdout is gone: make the final flush a no-op instead of a second error
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Console entry point (`governor = cli.main:main`): run the command, flush its output, and exit with its code
    at once.

    Leaving through the interpreter's normal shutdown lets the Temporal SDK's runtime threads race the finalizers
    (sdk-python issue 300: `Fatal Python error: PyGILState_Release`, exit 134 or 139, after the command did its work),
    so scripts could not trust the exit code. Nothing the CLI does needs a finalizer: every update is acknowledged
    and every file closed before `run` returns. `os._exit` skips the shutdown; the code is the documented one.
    """
    code = run_command(argv)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`governor list | head`): nothing more can be said
            pass
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
