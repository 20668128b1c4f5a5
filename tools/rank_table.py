#!/usr/bin/env python3
"""Write an HCCL rank table (version 1.0 layout) for Ascend multi-card training, merge or check tables.

  rank_table.py --device-range '[0,4)' --server-ip 10.0.0.5 --out hccl_4p.json    # addresses from /etc/hccn.conf
  rank_table.py --hccn-conf my.conf --device-range '[0,8)' --out t.json
  rank_table.py --device-ip 192.168.100.101,192.168.101.101 --device-range '[0,2)' --server-ip 127.0.0.1 --out t.json
  rank_table.py merge a.json b.json --out cluster.json                            # rank ids renumbered in order
  rank_table.py validate t.json

Device addresses come from `address_N=IP` lines of hccn.conf (what `hccn_tool -i N -ip -g` reports), or from
--device-ip: either `ID=IP` items or plain addresses given in device-range order. A range may not cross the
boundary of the 4-device groups of an 8-card server unless it is the whole server ([0,8)).
Every table written is validated against submission/schema/rank_table.schema.json plus the cross-field rules
(contiguous rank ids, unique devices and addresses, matching server_count); errors are one line and nothing is
written.
"""

import argparse
import ipaddress
import json
import re
import socket
import sys
from pathlib import Path

from lorakit.io import KitError, atomic_open, read_json, run_main, unreadable
from lorakit.paths import SCHEMA_DIR

SCHEMA_PATH = SCHEMA_DIR / "rank_table.schema.json"
DEFAULT_HCCN_CONF = "/etc/hccn.conf"
GROUP_SIZE = 4  # devices 0-3 and 4-7 of an Atlas 800 server form separate HCCS groups
_RANGE_RE = re.compile(r"^\s*\[\s*(\d+)\s*,\s*(\d+)\s*([\])])\s*$")
_ADDR_RE = re.compile(r"^\s*address_(\d+)\s*=\s*(.*?)\s*$")


def parse_range(text, devices_per_node=8):
    """'[0,4)' -> [0, 1, 2, 3]; '[0,3]' -> [0, 1, 2, 3]. Checks bounds and the 4-device group rule."""
    m = _RANGE_RE.match(text or "")
    if not m:
        raise KitError("--device-range %r: expected '[first,end)' such as '[0,4)'" % text)
    first, end = int(m.group(1)), int(m.group(2))
    if m.group(3) == "]":
        end += 1
    if end <= first:
        raise KitError("--device-range %r is empty" % text)
    if end > devices_per_node:
        raise KitError("--device-range %r goes past the %d devices of a server" % (text, devices_per_node))
    whole = first == 0 and end % (2 * GROUP_SIZE) == 0
    if first // GROUP_SIZE != (end - 1) // GROUP_SIZE and not whole:
        raise KitError("--device-range %r crosses the %d-device group boundary (use [0,%d), [%d,%d) or the whole "
                       "server [0,%d))" % (text, GROUP_SIZE, GROUP_SIZE, GROUP_SIZE, 2 * GROUP_SIZE, 2 * GROUP_SIZE))
    return list(range(first, end))


def check_ip(value, where):
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        raise KitError("%s: %r is not an IPv4 address" % (where, value)) from None
    return value


def read_hccn_conf(path):
    """{device_id: ip} from the `address_N=IP` lines of an hccn.conf; other keys are ignored."""
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        raise unreadable(path, exc) from None
    except UnicodeDecodeError:
        raise KitError("%s: not a text file" % path) from None
    ips = {}
    for lineno, line in enumerate(lines, 1):
        if not line.strip().startswith("address"):
            continue
        m = _ADDR_RE.match(line)
        if not m:
            raise KitError("%s:%d: malformed address line %r (expected address_N=IP)" % (path, lineno, line.strip()))
        dev = int(m.group(1))
        if dev in ips:
            raise KitError("%s:%d: duplicate address for device %d" % (path, lineno, dev))
        ips[dev] = check_ip(m.group(2), "%s:%d" % (path, lineno))
    if not ips:
        raise KitError("%s: no address_N=IP lines" % path)
    return ips


def parse_device_ips(values, devices):
    """--device-ip items: 'ID=IP' pairs or bare IPs in device-range order (commas or repeats)."""
    items = [x.strip() for v in values for x in v.split(",") if x.strip()]
    ips = {}
    if all("=" in x for x in items):
        for x in items:
            dev, ip = x.split("=", 1)
            if not dev.strip().isdigit():
                raise KitError("--device-ip %r: device id must be an integer" % x)
            if int(dev) in ips:
                raise KitError("--device-ip: duplicate device id %s" % dev.strip())
            ips[int(dev)] = check_ip(ip.strip(), "--device-ip")
    elif any("=" in x for x in items):
        raise KitError("--device-ip: use either ID=IP items or plain addresses, not both")
    else:
        if len(items) != len(devices):
            raise KitError("--device-ip: %d addresses for %d devices in the range %s"
                           % (len(items), len(devices), devices))
        for dev, ip in zip(devices, items):
            ips[dev] = check_ip(ip, "--device-ip")
    return ips


def host_ip():
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return None


def build_table(devices, ips, server_id, source):
    missing = [d for d in devices if d not in ips]
    if missing:
        raise KitError("%s: no device address for device %s" % (source, ", ".join(str(d) for d in missing)))
    device_list = [{"device_id": str(d), "device_ip": ips[d], "rank_id": str(rank)} for rank, d in enumerate(devices)]
    return {"version": "1.0", "server_count": "1",
            "server_list": [{"server_id": server_id, "device": device_list, "host_nic_ip": "reserve"}],
            "status": "completed"}


def merge_tables(tables):
    """Concatenate the servers of several tables (in the given order) and renumber rank ids 0..N-1."""
    servers = []
    for _, table in tables:
        servers.extend(json.loads(json.dumps(table["server_list"])))
    rank = 0
    for server in servers:
        for dev in server["device"]:
            dev["rank_id"] = str(rank)
            rank += 1
    return {"version": "1.0", "server_count": str(len(servers)), "server_list": servers, "status": "completed"}


def _schema_errors(table):
    import jsonschema

    schema = read_json(SCHEMA_PATH)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(table), key=lambda e: list(e.absolute_path))
    out = []
    for err in errors:
        where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        out.append("%s: %s" % (where, err.message))
    return out


def validate_table(table, source="rank table"):
    """Raise KitError (one line) unless `table` is a valid, self-consistent version 1.0 rank table."""
    errors = _schema_errors(table)
    if errors:
        more = " (+%d more)" % (len(errors) - 1) if len(errors) > 1 else ""
        raise KitError("%s: schema: %s%s" % (source, errors[0], more))
    servers = table["server_list"]
    if int(table["server_count"]) != len(servers):
        raise KitError("%s: server_count is %s but server_list has %d servers"
                       % (source, table["server_count"], len(servers)))
    seen_servers, seen_ips, ranks = set(), {}, []
    for i, server in enumerate(servers):
        sid = server["server_id"]
        if sid in seen_servers:
            raise KitError("%s: server_list/%d: duplicate server_id %s" % (source, i, sid))
        seen_servers.add(sid)
        seen_dev = set()
        for j, dev in enumerate(server["device"]):
            where = "%s: server_list/%d/device/%d" % (source, i, j)
            if dev["device_id"] in seen_dev:
                raise KitError("%s: duplicate device_id %s on server %s" % (where, dev["device_id"], sid))
            seen_dev.add(dev["device_id"])
            if dev["device_ip"] in seen_ips:
                raise KitError("%s: device_ip %s already used by %s" % (where, dev["device_ip"], seen_ips[dev["device_ip"]]))
            seen_ips[dev["device_ip"]] = "server %s device %s" % (sid, dev["device_id"])
            ranks.append(int(dev["rank_id"]))
    if sorted(ranks) != list(range(len(ranks))):
        dup = sorted({r for r in ranks if ranks.count(r) > 1})
        why = "duplicate rank_id %s" % dup[0] if dup else "rank ids are not 0..%d" % (len(ranks) - 1)
        raise KitError("%s: %s" % (source, why))
    return table


def load_table(path):
    table = read_json(path)
    if not isinstance(table, dict):
        raise KitError("%s: top level must be a JSON object" % path)
    return validate_table(table, str(path))


def write_table(table, out):
    validate_table(table, str(out))
    with atomic_open(out) as fh:
        json.dump(table, fh, indent=4)
        fh.write("\n")


def summary(table):
    n = sum(len(s["device"]) for s in table["server_list"])
    return {"servers": len(table["server_list"]), "devices": n,
            "server_ids": [s["server_id"] for s in table["server_list"]]}


def cmd_make(args):
    devices = parse_range(args.device_range, args.devices_per_node)
    if args.device_ip:
        if args.hccn_conf:
            raise KitError("give --hccn-conf or --device-ip, not both")
        ips, source = parse_device_ips(args.device_ip, devices), "--device-ip"
    else:
        source = args.hccn_conf or DEFAULT_HCCN_CONF
        ips = read_hccn_conf(source)
    server_id = args.server_ip or host_ip()
    if not server_id:
        raise KitError("cannot detect this server's address: pass --server-ip")
    check_ip(server_id, "--server-ip")
    table = build_table(devices, ips, server_id, source)
    out = args.out or "hccl_%dp_%s_%s.json" % (len(devices), "".join(str(d) for d in devices), server_id)
    write_table(table, out)
    return table, out


def cmd_merge(args):
    tables = [(p, load_table(p)) for p in args.tables]
    table = merge_tables(tables)
    n = sum(len(s["device"]) for s in table["server_list"])
    out = args.out or "hccl_%ss_%dp.json" % (table["server_count"], n)
    write_table(table, out)
    return table, out


def build_parser():
    p = argparse.ArgumentParser(
        prog="rank_table.py", description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Subcommands: `merge A.json B.json [--out F]` joins several servers' tables (rank ids renumbered in "
               "the order given); `validate F.json` checks a table. Without a subcommand a table is made.")
    p.add_argument("--hccn-conf", help="hccn.conf to read address_N lines from (default %s)" % DEFAULT_HCCN_CONF)
    p.add_argument("--device-ip", action="append", default=[], metavar="IPS",
                   help="device addresses instead of hccn.conf: ID=IP items or plain IPs in range order; "
                        "comma-separated and/or repeated")
    p.add_argument("--device-range", default="[0,8)", help="devices of this server, e.g. '[0,4)' (default [0,8))")
    p.add_argument("--devices-per-node", type=int, default=8, help="devices on one server (default 8)")
    p.add_argument("--server-ip", help="this server's host address (default: resolved from the hostname)")
    p.add_argument("--out", help="output JSON (default hccl_<n>p_<ids>_<server>.json in the current directory)")
    p.add_argument("--json", action="store_true", help="print one JSON summary object on stdout")
    return p


def build_merge_parser():
    p = argparse.ArgumentParser(prog="rank_table.py merge", description="merge several servers' rank tables")
    p.add_argument("tables", nargs="+", help="rank table JSON files, in rank order")
    p.add_argument("--out", help="output JSON (default hccl_<servers>s_<n>p.json)")
    p.add_argument("--json", action="store_true", help="print one JSON summary object on stdout")
    return p


def build_validate_parser():
    p = argparse.ArgumentParser(prog="rank_table.py validate", description="validate a rank table")
    p.add_argument("table", help="rank table JSON")
    p.add_argument("--json", action="store_true", help="print one JSON summary object on stdout")
    return p


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "merge":
        args = build_merge_parser().parse_args(argv[1:])
        table, out = cmd_merge(args)
    elif argv and argv[0] == "validate":
        args = build_validate_parser().parse_args(argv[1:])
        table, out = load_table(args.table), args.table
    else:
        args = build_parser().parse_args(argv)
        table, out = cmd_make(args)
    info = dict(summary(table), path=str(Path(out)))
    if args.json:
        print(json.dumps(info))
    else:
        verb = "valid" if argv and argv[0] == "validate" else "wrote"
        print("%s %s: %d server(s), %d device(s)" % (verb, out, info["servers"], info["devices"]), file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_main(main)
