"""tools/rank_table.py on fabricated hccn.conf files: layout, schema, ranges, merging, one-line errors."""

import json

import jsonschema
import pytest

import rank_table
from conftest import REPO, run_tool
from lorakit.io import KitError

SCHEMA = json.loads((REPO / "submission" / "schema" / "rank_table.schema.json").read_text())

HCCN = """# fabricated /etc/hccn.conf of an 8-card server
address_0=192.168.100.101
netmask_0=255.255.255.0
address_1=192.168.101.101
netmask_1=255.255.255.0
address_2=192.168.102.101
address_3=192.168.103.101
address_4=192.168.100.100
address_5=192.168.101.100
address_6=192.168.102.100
address_7=192.168.103.100
netdetect_7=192.168.103.1
"""


def run(args, cwd):
    return run_tool("rank_table", *args, cwd=cwd, timeout=60)


@pytest.fixture()
def hccn(tmp_path):
    p = tmp_path / "hccn.conf"
    p.write_text(HCCN)
    return p


def test_acceptance_command_writes_schema_valid_table(tmp_path, hccn):
    out = tmp_path / "t.json"
    res = run(["--hccn-conf", str(hccn), "--device-range", "[0,4)", "--server-ip", "127.0.0.1", "--out", str(out)],
              tmp_path)
    assert res.returncode == 0, res.stderr
    table = json.loads(out.read_text())
    jsonschema.Draft202012Validator(SCHEMA).validate(table)
    assert table["version"] == "1.0" and table["server_count"] == "1" and table["status"] == "completed"
    server = table["server_list"][0]
    assert server["server_id"] == "127.0.0.1"
    assert [(d["device_id"], d["device_ip"], d["rank_id"]) for d in server["device"]] == [
        ("0", "192.168.100.101", "0"), ("1", "192.168.101.101", "1"),
        ("2", "192.168.102.101", "2"), ("3", "192.168.103.101", "3")]


def test_second_group_and_whole_server(tmp_path, hccn):
    res = run(["--hccn-conf", str(hccn), "--device-range", "[4,8)", "--server-ip", "10.0.0.2", "--out", "b.json",
               "--json"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {"servers": 1, "devices": 4, "server_ids": ["10.0.0.2"], "path": "b.json"}
    table = json.loads((tmp_path / "b.json").read_text())
    assert [d["device_id"] for d in table["server_list"][0]["device"]] == ["4", "5", "6", "7"]
    assert [d["rank_id"] for d in table["server_list"][0]["device"]] == ["0", "1", "2", "3"]
    res = run(["--hccn-conf", str(hccn), "--device-range", "[0,8)", "--server-ip", "10.0.0.2", "--out", "w.json"],
              tmp_path)
    assert res.returncode == 0, res.stderr
    assert len(json.loads((tmp_path / "w.json").read_text())["server_list"][0]["device"]) == 8


def test_device_ip_values_instead_of_hccn_conf(tmp_path):
    res = run(["--device-ip", "10.1.0.1,10.1.0.2", "--device-range", "[0,2)", "--server-ip", "127.0.0.1",
               "--out", "a.json"], tmp_path)
    assert res.returncode == 0, res.stderr
    res = run(["--device-ip", "1=10.1.0.2", "--device-ip", "0=10.1.0.1", "--device-range", "[0,2)", "--server-ip",
               "127.0.0.1", "--out", "b.json"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "a.json").read_text()) == json.loads((tmp_path / "b.json").read_text())


def test_merge_renumbers_ranks_in_order(tmp_path, hccn):
    assert run(["--hccn-conf", str(hccn), "--device-range", "[0,4)", "--server-ip", "10.0.0.1", "--out", "a.json"],
               tmp_path).returncode == 0
    assert run(["--device-ip", "10.9.0.1,10.9.0.2,10.9.0.3,10.9.0.4", "--device-range", "[0,4)", "--server-ip",
                "10.0.0.2", "--out", "b.json"], tmp_path).returncode == 0
    res = run(["merge", "a.json", "b.json", "--out", "m.json"], tmp_path)
    assert res.returncode == 0, res.stderr
    table = json.loads((tmp_path / "m.json").read_text())
    jsonschema.Draft202012Validator(SCHEMA).validate(table)
    assert table["server_count"] == "2"
    assert [s["server_id"] for s in table["server_list"]] == ["10.0.0.1", "10.0.0.2"]
    ranks = [d["rank_id"] for s in table["server_list"] for d in s["device"]]
    assert ranks == [str(i) for i in range(8)]
    assert run(["validate", "m.json"], tmp_path).returncode == 0
    # the same server twice is refused, and nothing is written
    res = run(["merge", "a.json", "a.json", "--out", "bad.json"], tmp_path)
    assert res.returncode == 2 and "duplicate server_id 10.0.0.1" in res.stderr
    assert not (tmp_path / "bad.json").exists()


@pytest.mark.parametrize("conf, rng, message", [
    ("address_0=192.168.1\n", "[0,1)", "hccn.conf:1: '192.168.1' is not an IPv4 address"),
    ("address_0=10.0.0.1\naddress_0=10.0.0.2\n", "[0,1)", "hccn.conf:2: duplicate address for device 0"),
    ("address_0=10.0.0.1\naddress_2=10.0.0.3\n", "[0,3)", "no device address for device 1"),
    ("address0 = 10.0.0.1\n", "[0,1)", "malformed address line"),
    ("netmask_0=255.0.0.0\n", "[0,1)", "no address_N=IP lines"),
    (HCCN, "[3,6)", "crosses the 4-device group boundary"),
    (HCCN, "[0,9)", "goes past the 8 devices"),
    (HCCN, "0-4", "expected '[first,end)'"),
    (HCCN, "[2,2)", "is empty"),
])
def test_bad_input_one_line_error_nothing_written(tmp_path, conf, rng, message):
    (tmp_path / "hccn.conf").write_text(conf)
    res = run(["--hccn-conf", "hccn.conf", "--device-range", rng, "--server-ip", "127.0.0.1", "--out", "t.json"],
              tmp_path)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rank_table.py: error: ") and message in lines[0], res.stderr
    assert not (tmp_path / "t.json").exists()
    assert not list(tmp_path.glob(".t.json.*"))


def test_unreadable_and_conflicting_sources(tmp_path):
    res = run(["--hccn-conf", "missing.conf", "--device-range", "[0,1)", "--server-ip", "127.0.0.1"], tmp_path)
    assert res.returncode == 2 and "missing.conf: cannot read" in res.stderr
    res = run(["--device-ip", "10.0.0.1", "--device-range", "[0,2)", "--server-ip", "127.0.0.1"], tmp_path)
    assert res.returncode == 2 and "1 addresses for 2 devices" in res.stderr
    res = run(["--device-ip", "10.0.0.1,10.0.0.1", "--device-range", "[0,2)", "--server-ip", "127.0.0.1",
               "--out", "d.json"], tmp_path)
    assert res.returncode == 2 and "already used by" in res.stderr


def test_validate_rejects_broken_tables():
    good = rank_table.build_table([0, 1], {0: "10.0.0.1", 1: "10.0.0.2"}, "127.0.0.1", "test")
    rank_table.validate_table(good)
    bad = json.loads(json.dumps(good))
    bad["server_list"][0]["device"][1]["rank_id"] = "0"
    with pytest.raises(KitError, match="duplicate rank_id 0"):
        rank_table.validate_table(bad)
    bad = json.loads(json.dumps(good))
    bad["server_list"][0]["device"][1]["device_id"] = "0"
    with pytest.raises(KitError, match="duplicate device_id 0"):
        rank_table.validate_table(bad)
    bad = json.loads(json.dumps(good))
    bad["server_count"] = "2"
    with pytest.raises(KitError, match="server_count is 2"):
        rank_table.validate_table(bad)
    bad = json.loads(json.dumps(good))
    del bad["server_list"][0]["device"][0]["device_ip"]
    with pytest.raises(KitError, match="schema: server_list/0/device/0: 'device_ip' is a required property"):
        rank_table.validate_table(bad)
    bad = json.loads(json.dumps(good))
    bad["status"] = "initializing"
    with pytest.raises(KitError, match="schema"):
        rank_table.validate_table(bad)


def test_range_parsing():
    assert rank_table.parse_range("[0,4)") == [0, 1, 2, 3]
    assert rank_table.parse_range("[4,7]") == [4, 5, 6, 7]
    assert rank_table.parse_range("[0,1)") == [0]
    assert rank_table.parse_range("[0,16)", devices_per_node=16) == list(range(16))
