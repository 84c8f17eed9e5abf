#!/usr/bin/python3
"""Runs a command under the sandbox a systemd unit file asks for, as far as it can be emulated
without systemd as PID 1, then execs it (the command keeps this process's PID).

Read from the unit's [Service] section and applied in the order systemd applies them:
  ProtectSystem=strict, ReadWritePaths=, ProtectHome=yes, PrivateTmp=yes
      a private mount namespace: every mount read-only except the writable paths, empty
      read-only /home, /root and /run/user, fresh /tmp and /var/tmp
  UMask=
  CapabilityBoundingSet=, User=, Group=
      the bounding set is cut to the listed capabilities, then the user and group are set
      (--user maps the unit's user to an existing one, since the test machine has no such user)
  NoNewPrivileges=yes        prctl(PR_SET_NO_NEW_PRIVS)
  RestrictAddressFamilies=   seccomp: socket(2) fails with EAFNOSUPPORT for other families
  RestrictNamespaces=yes     seccomp: unshare, setns and namespace-creating clone fail with EPERM
  SystemCallArchitectures=native
      seccomp: the filter admits the native architecture only (libseccomp's default)

Python's seccomp module comes with Debian's python3-seccomp (libseccomp's own bindings).
Needs root (mount namespace, setuid). Usage:
  unit-sandbox.py --unit digestd.service [--user nobody] [--path-map /var/lib/digestd=/tmp/x] [--installed DIR] -- cmd...
"""

import argparse
import ctypes
import errno
import os
import pwd
import grp
import socket
import sys

import seccomp

CLONE_NEWNS = 0x00020000
# CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET, NEWTIME
NAMESPACE_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000, 0x80)
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
PR_SET_NO_NEW_PRIVS = 38
PR_CAPBSET_DROP = 24
# Linux's AF_MAX for the kernels Debian 12 and later run; every family at or above is refused too.
AF_MAX = 46

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]


def check(result, what):
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def mount(source, target, fstype, flags, data=None):
    check(
        libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            flags,
            data.encode() if data else None,
        ),
        f"mount {source} on {target}",
    )


def parse_unit(path):
    """The [Service] section as key -> list of values (a key may repeat; an empty value resets it)."""
    settings = {}
    section = None
    with open(path, encoding="utf-8") as unit:
        for raw in unit:
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1]
                continue
            if section != "Service" or "=" not in line:
                continue
            key, value = (part.strip() for part in line.split("=", 1))
            if value == "":
                settings[key] = []
            else:
                settings.setdefault(key, []).append(value)
    return settings


def last(settings, key, default=None):
    values = settings.get(key)
    return values[-1] if values else default


def words(settings, key):
    return [word for value in settings.get(key, []) for word in value.split()]


def truthy(value):
    return value is not None and value.lower() in ("yes", "true", "on", "1")


def mount_points():
    """Mount points of this namespace, outermost first (from /proc/self/mountinfo)."""
    points = []
    with open("/proc/self/mountinfo", encoding="utf-8") as info:
        for line in info:
            fields = line.split()
            # Mount points escape spaces and the like as octal.
            points.append(fields[4].encode().decode("unicode_escape"))
    return points


def mount_flags(point):
    """The per-mount flags to keep when remounting a bind mount (a remount must not drop them)."""
    flags = 0
    stat = os.statvfs(point)
    if stat.f_flag & os.ST_NOSUID:
        flags |= MS_NOSUID
    if stat.f_flag & os.ST_NODEV:
        flags |= MS_NODEV
    if stat.f_flag & os.ST_NOEXEC:
        flags |= MS_NOEXEC
    return flags


def set_up_mounts(settings, path_map, installed):
    protect_system = last(settings, "ProtectSystem", "no")
    writable = [path_map.get(path, path) for path in words(settings, "ReadWritePaths")]
    writable += [path_map.get(f"/var/lib/{name}", f"/var/lib/{name}") for name in words(settings, "StateDirectory")]
    private_tmp = truthy(last(settings, "PrivateTmp"))
    protect_home = last(settings, "ProtectHome", "no")
    if protect_system != "strict" and not private_tmp and protect_home == "no":
        return
    check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    # Writable paths are opened before /tmp is replaced, since they may live there.
    kept = []
    for path in dict.fromkeys(writable):
        if os.path.isdir(path):
            kept.append((path, os.open(path, os.O_PATH | os.O_DIRECTORY)))
    # The installed program stays visible (read-only, like the rest) even where it lives under /tmp.
    shown = [(path, os.open(path, os.O_PATH | os.O_DIRECTORY)) for path in installed if os.path.isdir(path)]
    if private_tmp:
        for tmp in ("/tmp", "/var/tmp"):
            mount("tmpfs", tmp, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    for path, fd in kept:
        os.makedirs(path, exist_ok=True)
        mount(f"/proc/self/fd/{fd}", path, None, MS_BIND)
        os.close(fd)
    homes = ("/home", "/root", "/run/user")
    hide_home = protect_home in ("yes", "true", "read-only", "tmpfs")

    def show(under):
        for path, fd in shown:
            if path.startswith(tuple(f"{top}/" for top in under)):
                os.makedirs(path, exist_ok=True)
                mount(f"/proc/self/fd/{fd}", path, None, MS_BIND)
                mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY)

    if private_tmp:
        show(("/tmp", "/var/tmp"))
    kept_paths = {path for path, _ in kept}
    if protect_system == "strict":
        for point in mount_points():
            if point in kept_paths or point in ("/proc", "/sys", "/dev") or point.startswith(("/proc/", "/sys/", "/dev/")):
                continue
            if private_tmp and point in ("/tmp", "/var/tmp"):
                continue
            try:
                mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | mount_flags(point))
            except OSError as error:
                # A mount point hidden under a later mount (or gone) cannot be remounted; what is
                # visible is what counts.
                if error.errno not in (errno.ENOENT, errno.EINVAL, errno.EACCES):
                    raise
    if hide_home:
        # An installed program under a home (node from npx's cache) stays visible, read-only.
        hidden = [home for home in homes if os.path.isdir(home)]
        for home in hidden:
            mount("tmpfs", home, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
        show(hidden)
        for home in hidden:
            mount(None, home, None, MS_REMOUNT | MS_NOSUID | MS_NODEV | MS_RDONLY)
    for _, fd in shown:
        os.close(fd)


def drop_capabilities(settings):
    if "CapabilityBoundingSet" not in settings:
        return
    keep = set()
    for name in words(settings, "CapabilityBoundingSet"):
        if name not in CAPABILITIES:
            raise SystemExit(f"unit-sandbox: capability {name} is not known here")
        keep.add(CAPABILITIES.index(name))
    with open("/proc/sys/kernel/cap_last_cap", encoding="ascii") as last_cap:
        highest = int(last_cap.read())
    for number in range(highest + 1):
        if number not in keep:
            check(libc.prctl(PR_CAPBSET_DROP, number, 0, 0, 0), f"drop capability {number}")


# The numbering of linux/capability.h, up to the ones a network service's unit names.
CAPABILITIES = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
]


def switch_user(settings, user_override):
    user = user_override or last(settings, "User")
    if not user:
        return
    entry = pwd.getpwnam(user)
    group = last(settings, "Group")
    gid = entry.pw_gid if user_override or not group else grp.getgrnam(group).gr_gid
    os.setgroups([])
    os.setgid(gid)
    os.setuid(entry.pw_uid)


def address_families(settings):
    """The allowed socket families, or None when the unit does not restrict them."""
    values = settings.get("RestrictAddressFamilies")
    if values is None:
        return None
    allowed = set()
    for value in values:
        names = value.split()
        if names and names[0].startswith("~"):
            raise SystemExit("unit-sandbox: deny-lists (~AF_...) are not emulated")
        for name in names:
            if name == "none":
                allowed.clear()
                continue
            allowed.add(int(getattr(socket, name)))
    return allowed


def install_seccomp(settings):
    allowed = address_families(settings)
    restrict_namespaces = truthy(last(settings, "RestrictNamespaces"))
    if allowed is None and not restrict_namespaces:
        return
    # The default filter admits only the native architecture: SystemCallArchitectures=native.
    syscall_filter = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    if allowed is not None:
        refuse = seccomp.ERRNO(errno.EAFNOSUPPORT)
        for family in range(AF_MAX):
            if family not in allowed:
                syscall_filter.add_rule(refuse, "socket", seccomp.Arg(0, seccomp.EQ, family))
        syscall_filter.add_rule(refuse, "socket", seccomp.Arg(0, seccomp.GE, AF_MAX))
    if restrict_namespaces:
        syscall_filter.add_rule(seccomp.ERRNO(errno.EPERM), "unshare")
        syscall_filter.add_rule(seccomp.ERRNO(errno.EPERM), "setns")
        for flag in NAMESPACE_FLAGS:
            syscall_filter.add_rule(
                seccomp.ERRNO(errno.EPERM), "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag)
            )
        # clone3 passes its flags in memory, out of a filter's reach: systemd answers ENOSYS so that
        # callers fall back to clone.
        syscall_filter.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    syscall_filter.load()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--unit", required=True, help="the unit file to read [Service] from")
    parser.add_argument("--user", help="run as this user instead of the unit's User= (and its group)")
    parser.add_argument(
        "--path-map",
        action="append",
        default=[],
        metavar="UNIT_PATH=PATH",
        help="use PATH wherever the unit's sandbox names UNIT_PATH (e.g. the state directory)",
    )
    parser.add_argument(
        "--installed",
        action="append",
        default=[],
        metavar="DIR",
        help="a directory the program is installed in, kept visible read-only under PrivateTmp and ProtectHome",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER)
    options = parser.parse_args()
    command = options.command[1:] if options.command[:1] == ["--"] else options.command
    if not command:
        parser.error("no command given")
    path_map = dict(entry.split("=", 1) for entry in options.path_map)
    settings = parse_unit(options.unit)

    set_up_mounts(settings, path_map, options.installed)
    umask = last(settings, "UMask")
    if umask is not None:
        os.umask(int(umask, 8))
    drop_capabilities(settings)
    switch_user(settings, options.user)
    if truthy(last(settings, "NoNewPrivileges")):
        check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
    install_seccomp(settings)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
