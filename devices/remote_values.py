"""Strict checks for every value that reaches ssh / scp / rsync / adb argument lists.

These values come from the command line (`--host`, `--port`, `--serial`, `--remote-dir`, ...) and
from device TOML files, i.e. from whoever wrote them. A value that ssh could read as an option
(`-F evil.cfg`, `-oProxyCommand=...`) runs arbitrary commands on *this* machine, so a value is
accepted only when it cannot be anything but what it claims to be: a host name or IP address, a
POSIX user name, a port in 1..65535, an adb serial, a plain remote path. Callers also place the
destination after `--` so that even an unchecked value is not parsed as an option.
"""

from __future__ import annotations

import re
from typing import Any

from edgeprune.base.errors import RemoteError

# a DNS name / single label (letters, digits, '-', '_', '.'; neither end a '-' or '.')
_HOSTNAME = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,251}[A-Za-z0-9_])?$")
_IPV6 = re.compile(r"^\[?[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*(?:%[A-Za-z0-9_.]+)?\]?$")
_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
_SERIAL = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$")  # USB serials, ip:port for adb over TCP
# remote paths we pass to mkdir / scp / rsync / adb push: no spaces, quotes, ~, $, ;, newlines
_PATH = re.compile(r"^[A-Za-z0-9_./@%+=:,-]+$")
_PROGRAM = re.compile(r"^[A-Za-z0-9_./+-]+$")  # remote interpreter / llama-bench name or path


def check_host(host: Any, what: str = "ssh host") -> str:
    if not isinstance(host, str) or not (_HOSTNAME.match(host) or _IPV6.match(host)) \
            or host.startswith("-") or ".." in host:
        raise RemoteError(f"{what} {host!r} is not a valid host name or IP address")
    return host


def _optional_name(value: Any, pattern: re.Pattern, what: str, kind: str) -> str:
    """`value` when it is "" (not set) or a whole match of `pattern` (which never allows a leading
    "-": the value is an argument to ssh/adb and must not read as an option)."""
    if not isinstance(value, str) or (value and not pattern.match(value)):
        raise RemoteError(f"{what} {value!r} is not a valid {kind}")
    return value


def check_user(user: Any, what: str = "ssh user") -> str:
    return _optional_name(user, _USER, what, "user name (letters, digits, _.-; not starting with -)")


def check_port(port: Any, what: str = "ssh port") -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not (0 < port < 65536):
        raise RemoteError(f"{what} {port!r} must be an integer in 1..65535")
    return port


def check_serial(serial: Any, what: str = "adb serial") -> str:
    return _optional_name(serial, _SERIAL, what, "adb serial (letters, digits, _.:-; not starting with -)")


def check_remote_path(path: Any, what: str = "remote_dir") -> str:
    if not isinstance(path, str) or not _PATH.match(path) or path.startswith("-") \
            or any(part == ".." for part in path.split("/")):
        raise RemoteError(f"{what} {path!r}: use a plain absolute path or one relative to the remote home "
                          "directory (letters, digits, ._/-; no ~, .., spaces or leading -)")
    return path


def check_program(name: Any, what: str) -> str:
    if not isinstance(name, str) or not _PROGRAM.match(name) or name.startswith("-"):
        raise RemoteError(f"{what} {name!r} must be a program name or path (letters, digits, ._/+-; "
                          "not starting with -)")
    return name


def check_local_file(path: Any, what: str) -> str:
    """A local file handed to ssh as an option value (`-i KEY`, UserKnownHostsFile=): one line,
    no control characters (ssh parses -o values as config lines)."""
    if not isinstance(path, str) or any(ord(c) < 32 or c == "\x7f" for c in path) \
            or (path and path.strip() != path):
        raise RemoteError(f"{what} {path!r} is not a usable file path")
    return path
