"""Checks a cloud-config file against coreos-cloudinit's documented schema
(flatcar/coreos-cloudinit Documentation/cloud-config.md), stricter where a mistake
would pass silently on a node:

- the first line is `#cloud-config`;
- top-level keys: coreos, ssh_authorized_keys, hostname, users, write_files,
  manage_etc_hosts (no runcmd, no bootcmd: those are cloud-init's, not ours);
- coreos keys: etcd, etcd2, fleet, flannel, locksmith, update, oem, units;
- coreos.units[]: name (required, a unit name), runtime, enable, mask (booleans),
  content (text), command (start, stop, reload, restart, try-restart, reload-or-restart,
  reload-or-try-restart), drop-ins[] with name (ending in .conf: systemd reads no other
  drop-in) and content, both required;
- write_files[]: path (required, absolute, not under the read-only /usr), content (text),
  permissions (a quoted octal string: unquoted 0644 is the number 420 to YAML),
  owner (user or user:group), encoding (b64, base64, gz, gzip, gz+b64, gz+base64,
  gzip+b64, gzip+base64).
coreos-cloudinit reads keys with `-` as `_` (drop-ins = drop_ins); so does this.

Usage: python cloud_config_check.py FILE. Prints one line per problem; exit 0 clean, 1 not.
"""
import re
import sys

import yaml

TOP = {"coreos", "ssh_authorized_keys", "hostname", "users", "write_files", "manage_etc_hosts"}
COREOS = {"etcd", "etcd2", "fleet", "flannel", "locksmith", "update", "oem", "units"}
UNIT = {"name", "runtime", "enable", "mask", "content", "command", "drop_ins"}
DROP_IN = {"name", "content"}
FILE = {"path", "content", "permissions", "owner", "encoding"}
USER = {"name", "gecos", "passwd", "homedir", "no_create_home", "primary_group", "groups",
        "no_user_group", "ssh_authorized_keys", "coreos_ssh_import_github",
        "coreos_ssh_import_github_users", "coreos_ssh_import_url", "system", "no_log_init",
        "shell"}
COMMANDS = {"start", "stop", "reload", "restart", "try-restart", "reload-or-restart",
            "reload-or-try-restart"}
ENCODINGS = {"b64", "base64", "gz", "gzip", "gz+b64", "gz+base64", "gzip+b64", "gzip+base64"}
UNIT_NAME = re.compile(r"^[A-Za-z0-9:_.\\@-]+\.(service|socket|device|mount|automount|swap|"
                       r"target|path|timer|slice|scope|network|netdev|link)$")
PERMISSIONS = re.compile(r"^0?[0-7]{3,4}$")
OWNER = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.-]*(:[A-Za-z0-9_.][A-Za-z0-9_.-]*)?$")

problems = []


def problem(where, what):
    problems.append(f"{where}: {what}")


def keys(where, mapping, allowed):
    """The mapping with `-` read as `_` in its keys; unknown keys are problems."""
    if not isinstance(mapping, dict):
        problem(where, f"must be a mapping, not {type(mapping).__name__}")
        return {}
    out = {}
    for key, value in mapping.items():
        name = str(key).replace("-", "_")
        if name not in allowed:
            problem(where, f"unknown key {key!r}; expected one of {', '.join(sorted(allowed))}")
        out[name] = value
    return out


def listing(where, value):
    if not isinstance(value, list):
        problem(where, f"must be a list, not {type(value).__name__}")
        return []
    return value


def text(where, value):
    if not isinstance(value, str):
        problem(where, f"must be text, not {type(value).__name__} {value!r}")


def boolean(where, value):
    if not isinstance(value, bool):
        problem(where, f"must be a boolean (true/false), not {type(value).__name__} {value!r}")


def named(where, entry, field):
    """`where` with the entry's name or path in place of its index, when it has one."""
    if isinstance(entry, dict) and isinstance(entry.get(field), str):
        return f"{where.rsplit('[', 1)[0]}[{entry[field]}]"
    return where


def check_unit(where, unit):
    where = named(where, unit, "name")
    unit = keys(where, unit, UNIT)
    name = unit.get("name")
    if name is None:
        problem(where, "name is required")
    elif not isinstance(name, str) or not UNIT_NAME.match(name):
        problem(f"{where}.name", f"{name!r} is not a systemd unit name")
    for flag in ("runtime", "enable", "mask"):
        if flag in unit:
            boolean(f"{where}.{flag}", unit[flag])
    if "content" in unit:
        text(f"{where}.content", unit["content"])
    if "command" in unit and unit["command"] not in COMMANDS:
        problem(f"{where}.command", f"{unit['command']!r} is not one of {', '.join(sorted(COMMANDS))}")
    for i, drop_in in enumerate(listing(f"{where}.drop-ins", unit.get("drop_ins", []))):
        here = f"{where}.drop-ins[{i}]"
        drop_in = keys(here, drop_in, DROP_IN)
        for field in ("name", "content"):
            if field not in drop_in:
                problem(here, f"{field} is required")
            else:
                text(f"{here}.{field}", drop_in[field])
        if isinstance(drop_in.get("name"), str) and not drop_in["name"].endswith(".conf"):
            problem(f"{here}.name", f"{drop_in['name']!r} does not end in .conf: systemd ignores it")


def check_file(where, entry):
    where = named(where, entry, "path")
    entry = keys(where, entry, FILE)
    path = entry.get("path")
    if path is None:
        problem(where, "path is required")
    elif not isinstance(path, str) or not path.startswith("/"):
        problem(f"{where}.path", f"{path!r} is not an absolute path")
    elif path == "/usr" or path.startswith("/usr/"):
        problem(f"{where}.path", "/usr is read-only on Flatcar")
    if "content" in entry:
        text(f"{where}.content", entry["content"])
    if "permissions" in entry:
        perms = entry["permissions"]
        if not isinstance(perms, str):
            problem(f"{where}.permissions", f"must be a quoted string such as \"0644\", not {perms!r}")
        elif not PERMISSIONS.match(perms):
            problem(f"{where}.permissions", f"{perms!r} is not an octal mode")
    if "owner" in entry and (not isinstance(entry["owner"], str) or not OWNER.match(entry["owner"])):
        problem(f"{where}.owner", f"{entry['owner']!r} is not user or user:group")
    if "encoding" in entry and entry["encoding"] not in ENCODINGS:
        problem(f"{where}.encoding", f"{entry['encoding']!r} is not one of {', '.join(sorted(ENCODINGS))}")


def check(source):
    first = source.split("\n", 1)[0].rstrip()
    if first != "#cloud-config":
        problem("line 1", f"must be '#cloud-config', not {first!r}")
    try:
        doc = yaml.safe_load(source)
    except yaml.YAMLError as err:
        problem("yaml", " ".join(str(err).split()))
        return
    if doc is None:
        return
    doc = keys("top level", doc, TOP)
    if "coreos" in doc:
        coreos = keys("coreos", doc["coreos"], COREOS)
        for i, unit in enumerate(listing("coreos.units", coreos.get("units", []))):
            check_unit(f"coreos.units[{i}]", unit)
    for i, entry in enumerate(listing("write_files", doc.get("write_files", []))):
        check_file(f"write_files[{i}]", entry)
    for i, key in enumerate(listing("ssh_authorized_keys", doc.get("ssh_authorized_keys", []))):
        text(f"ssh_authorized_keys[{i}]", key)
    if "hostname" in doc:
        text("hostname", doc["hostname"])
    for i, user in enumerate(listing("users", doc.get("users", []))):
        if "name" not in keys(f"users[{i}]", user, USER):
            problem(f"users[{i}]", "name is required")
    if "manage_etc_hosts" in doc and doc["manage_etc_hosts"] != "localhost":
        problem("manage_etc_hosts", "the only value is \"localhost\"")


def main():
    with open(sys.argv[1], encoding="utf-8") as handle:
        check(handle.read())
    for line in problems:
        print(line)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
