"""Network namespaces for tests that need a non-loopback address (Janus: libnice never gathers on loopback) or
network faults (loss and a rate cap on the media path).

A test file that needs one re-runs itself under `unshare --net --pid` with REACTDIFF_IN_TEST_NETNS=1
(`run_file_in_netns`, called from one outer test); inside, `prepare_namespace()` brings `lo` up and puts
NETNS_ADDRESS (a TEST-NET-2 documentation address) on a virtual interface that exists only in that namespace.
Tests gather ICE on that address alone (aiortc: `aioice.ice.get_host_addresses`); signaling stays on 127.0.0.1.
Every packet between two processes of the namespace, media included, then crosses its `lo`, where `LinkFaults`
can drop UDP at a rate (nftables `numgen random`) and cap it per direction (htb + tbf). When the run ends or is
killed, the kernel kills everything it started and the namespace is gone; outside it, nothing here looks up,
binds to or sends to any of the host's own addresses.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

IN_NETNS = os.environ.get("REACTDIFF_IN_TEST_NETNS") == "1"
NETNS_LINK = "rd0"  # the virtual interface inside the namespace (a veth pair adds its peer, rd1)
NETNS_ADDRESS = "198.51.100.1"  # TEST-NET-2 (RFC 5737): neither private nor routed, and only inside the namespace
ROOT = Path(__file__).resolve().parents[1]
TINY_MODEL_ENV = "REACTDIFF_TEST_TINY_MODEL"

in_netns = pytest.mark.skipif(not IN_NETNS, reason="runs inside its own network namespace (see run_file_in_netns)")


def link_command(kind: str) -> list[str]:
    """`ip link add` for NETNS_LINK as a `dummy` interface, or as one end of a `veth` pair (both ends stay in
    the namespace) where the kernel has no dummy driver."""
    peer = ["peer", "name", "rd1"] if kind == "veth" else []
    return ["ip", "link", "add", NETNS_LINK, "type", kind, *peer]


def netns_link_kind() -> tuple[str | None, str]:
    """("dummy" or "veth", "") if a fresh network namespace with such an interface can be made here, else
    (None, why not). Each probe's namespace vanishes with its `unshare` process."""
    if os.geteuid() != 0:
        return None, f"network namespaces need root (unshare --net); this runs as uid {os.geteuid()}"
    missing = [tool for tool in ("unshare", "ip") if shutil.which(tool) is None]
    if missing:
        return None, f"{' and '.join(missing)} not found (util-linux and iproute2 provide them)"
    probe = subprocess.run(["unshare", "--net", "--pid", "--fork", "--kill-child", "--", "true"],
                           capture_output=True, text=True, timeout=30)  # fmt: skip
    if probe.returncode != 0:
        return None, f"cannot create a network namespace (unshare --net --pid: {probe.stderr.strip()})"
    errors = []
    for kind in ("dummy", "veth"):
        probe = subprocess.run(["unshare", "--net", "--", *link_command(kind)], capture_output=True, text=True,
                               timeout=30)  # fmt: skip
        if probe.returncode == 0:
            return kind, ""
        errors.append(f"{kind}: {probe.stderr.strip()}")
    return None, f"cannot create a dummy or veth interface in a network namespace ({'; '.join(errors)})"


def tiny_model(request: pytest.FixtureRequest) -> Path:
    """The shared random-weight tiny model (tests/conftest.py): inside a namespace run, the one its outer run
    made (TINY_MODEL_ENV), so that it is not exported twice."""
    given = os.environ.get(TINY_MODEL_ENV) if IN_NETNS else None
    return Path(given) if given else Path(request.getfixturevalue("tiny_model_dir"))


def run_file_in_netns(test_file: str, outer_test: str, basetemp: Path, timeout_s: float,
                      tiny_model: Path | None = None) -> None:  # fmt: skip
    """Run every test of `test_file` but `outer_test` (the caller) in a pytest of its own, in a fresh network
    and PID namespace (handing it `tiny_model`); fails with that run's output unless all of them pass (none
    skipped)."""
    if IN_NETNS:
        pytest.skip("this is the run inside the namespace")
    kind, why_not = netns_link_kind()
    if kind is None:
        pytest.skip(why_not)
    path = Path(test_file).resolve().relative_to(ROOT)
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    env.update(REACTDIFF_IN_TEST_NETNS="1", REACTDIFF_TEST_NETNS_LINK=kind)
    if tiny_model is not None:
        env[TINY_MODEL_ENV] = str(tiny_model)
    command = ["unshare", "--net", "--pid", "--fork", "--kill-child", "--", sys.executable, "-m", "pytest", "-q",
               "-rfEs", "-p", "no:cacheprovider", f"--basetemp={basetemp}", f"--deselect={path}::{outer_test}",
               str(path)]  # fmt: skip
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=timeout_s)  # fmt: skip
    except subprocess.TimeoutExpired as err:
        output = err.output.decode(errors="replace") if isinstance(err.output, bytes) else str(err.output or "")
        pytest.fail(f"the tests of {path} ran past {timeout_s:.0f} s in their namespace and were killed:\n"
                    f"{output[-8000:]}")  # fmt: skip
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0, f"the tests of {path} failed in their namespace:\n{done.stdout[-12000:]}"
    assert re.search(r"\b\d+ passed\b", summary) and not re.search(r"failed|error|skipped", summary), done.stdout


def _run(command: list[str], stdin: str | None = None) -> str:
    done = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()}")
    return done.stdout


def prepare_namespace() -> str:
    """Inside the fresh namespace of `run_file_in_netns`: `lo` up and NETNS_ADDRESS/24 on NETNS_LINK; returns
    the address. Refuses to touch a namespace that already has interfaces besides `lo` (the host's)."""
    names = sorted(name for _, name in socket.if_nameindex())
    if not IN_NETNS or names != ["lo"]:
        raise RuntimeError(f"REACTDIFF_IN_TEST_NETNS=1 but this is not a fresh network namespace (interfaces: "
                           f"{names}); run the file normally and its outer test makes one")  # fmt: skip
    for disable in Path("/proc/sys/net/ipv6/conf").glob("*/disable_ipv6"):  # no IPv6 link-local chatter
        with contextlib.suppress(OSError):
            disable.write_text("1")
    kind = os.environ.get("REACTDIFF_TEST_NETNS_LINK", "dummy")
    commands = [
        ["ip", "link", "set", "lo", "up"],
        link_command(kind),
        ["ip", "addr", "add", f"{NETNS_ADDRESS}/24", "dev", NETNS_LINK],
        ["ip", "link", "set", NETNS_LINK, "up"],
    ]
    if kind == "veth":
        commands.append(["ip", "link", "set", "rd1", "up"])
    for command in commands:
        _run(command)
    return NETNS_ADDRESS


def why_faults_cannot_run() -> str | None:
    """Why LinkFaults cannot be applied here (None: it can)."""
    for tool, package in (("nft", "nftables"), ("tc", "iproute2")):
        if shutil.which(tool) is None:
            return f"{tool} is missing (scripts/install_system_deps.sh --test installs {package})"
    return None


@dataclass(frozen=True)
class LinkFaults:
    """A bad link between one UDP port (the engine's media socket) and everything else in the namespace:
    each UDP packet on `lo` is dropped with probability loss_percent / 100 (both directions), and each
    direction of that port's traffic is capped at rate_kbit with a tbf queue of at most queue_ms."""

    loss_percent: float = 5.0
    rate_kbit: int = 1500
    queue_ms: int = 100
    """tbf `latency`: packets that would wait longer than this in the capped queue are dropped (a link buffer)."""

    def apply(self, port: int) -> None:
        """Install the drop rule (nft table `rdfaults`) and the caps (htb on `lo`, u32 on `port`, tbf leaves).
        Packets of other flows (signaling, the browser's DevTools socket) are not capped."""
        per_million = round(self.loss_percent * 10_000)
        _run(["nft", "-f", "-"], stdin=(
            "table inet rdfaults {\n chain in {\n  type filter hook input priority 0; policy accept;\n"
            f"  meta l4proto udp numgen random mod 1000000 < {per_million} counter drop\n }}\n}}\n"
        ))  # fmt: skip
        _run(["tc", "qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb"])  # unclassified: not shaped
        for minor, field in ((10, "sport"), (20, "dport")):  # from the port, to the port
            _run(["tc", "class", "add", "dev", "lo", "parent", "1:", "classid", f"1:{minor}", "htb",
                  "rate", "10gbit"])  # fmt: skip
            _run(["tc", "qdisc", "add", "dev", "lo", "parent", f"1:{minor}", "handle", f"{minor}:", "tbf",
                  "rate", f"{self.rate_kbit}kbit", "burst", "4kb", "latency", f"{self.queue_ms}ms"])  # fmt: skip
            _run(["tc", "filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip", "prio", "1", "u32",
                  "match", "ip", "protocol", "17", "0xff", "match", "ip", field, str(port), "0xffff",
                  "flowid", f"1:{minor}"])  # fmt: skip

    @staticmethod
    def counts() -> dict[str, int]:
        """{"dropped_random": packets nft dropped, "sent_capped", "dropped_capped": packets through / dropped by
        the two tbf queues}."""
        ruleset = json.loads(_run(["nft", "-j", "list", "table", "inet", "rdfaults"]))
        dropped = sum(
            expr["counter"]["packets"]
            for item in ruleset["nftables"]
            if "rule" in item
            for expr in item["rule"]["expr"]
            if "counter" in expr
        )
        qdiscs = json.loads(_run(["tc", "-s", "-j", "qdisc", "show", "dev", "lo"]))
        tbfs = [q for q in qdiscs if q.get("kind") == "tbf"]
        return {"dropped_random": dropped, "sent_capped": sum(q["packets"] for q in tbfs),
                "dropped_capped": sum(q["drops"] for q in tbfs)}  # fmt: skip
