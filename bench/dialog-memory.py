#!/usr/bin/env python3
"""Memory of N concurrent dialogs (issue 17): Kamailio 5.6 and Starling running bench/dialog.lua with
the MODE=dialog configuration of bench/compare.py (dialog with a profile, rr, acc to SQLite).

SIPp (uac_tenant.xml) places DIALOGS calls at RATE calls/s through the proxy to a SIPp UAS; every call
is answered and held (SIPp's pause) until the measurement is taken, then SIPp is killed. Per server it
reports the PSS of the server's process tree (Kamailio: all its processes, shared memory counted once)
and the RSS (Starling: one process; Kamailio: the largest process) before the calls and with all of
them up, and the difference per dialog. Memory figures stay valid on a busy machine (CPU ones would
not: none are reported).

The dialog count is the server's own (Kamailio: `kamcmd dlg.stats_active` through ctl.so; Starling:
starling_dialog_active on /metrics): on a loaded machine some SIPp calls fail (INVITE retransmissions
the UAS scenario does not expect), and the proxy's count is what the memory holds.

Settings (environment): DIALOGS [100000] RATE [500] SERVERS [kamailio starling] CHILDREN [4]
WORKERS [= CHILDREN] STARLING_BIN [.build/release/starling] PROXY_PORT UAS_PORT UAC_PORT
[35060 35090 35070] SETTLE (seconds to wait once all calls are up) [5].
Run: bench/dialog-memory.sh (results in bench/results/dialog-memory-<UTC>.json).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import subprocess
import urllib.request
import sys
import tempfile
import time
from pathlib import Path

os.environ["MODE"] = "dialog"
sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare as c  # noqa: E402  (reads MODE at import)


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def memory(server: subprocess.Popen) -> dict:
    pids = c.descendants(server.pid)
    return {"pss_kb": c.pss_kb(pids), "rss_max_kb": max((rss_kb(p) for p in pids), default=0), "processes": len(pids)}


def current_calls(stat: Path) -> tuple[int, int, int]:
    """(current calls, successful, failed) from SIPp's last -trace_stat line."""
    s = c.parse_stat_csv(stat) if stat.exists() else {}

    def num(k: str) -> int:
        try:
            return int(float(s.get(k, "0") or 0))
        except ValueError:
            return 0
    return num("CurrentCall"), num("SuccessfulCall(C)"), num("FailedCall(C)")


def server_dialogs(name: str, sub: Path, control_port: int) -> int:
    """The server's count of dialogs that are not ended (-1 when it cannot be read)."""
    try:
        if name == "kamailio":
            r = subprocess.run(["kamcmd", "-s", f"unix:{sub}/kamailio_ctl", "dlg.stats_active"], capture_output=True,
                               text=True, timeout=30)
            m = re.search(r"all:\s*(\d+)", r.stdout)
            return int(m.group(1)) if m else -1
        req = urllib.request.Request(f"http://{c.HOST}:{control_port}/metrics", headers={"Authorization": "Bearer bench"})
        text = urllib.request.urlopen(req, timeout=30).read().decode()
        m = re.search(r"^starling_dialog_active (\d+)", text, re.M)
        return int(m.group(1)) if m else -1
    except (OSError, subprocess.SubprocessError):
        return -1


def measure(name: str, tmp: Path, script: Path, ports: dict, dialogs: int, rate: int, starling: Path) -> dict:
    sub = tmp / name
    sub.mkdir()
    uas = server = uac = None
    control_port = ports["proxy"] + 5
    # A control socket to count the dialogs (only here: compare.py's configuration stays as it is).
    c.KAMAILIO_DIALOG = base_kamailio + f'loadmodule "ctl.so"\nmodparam("ctl", "binrpc", "unix:{sub}/kamailio_ctl")\n'
    c.STARLING_DIALOG = base_starling + f'\n[control]\nlisten = "{c.HOST}:{control_port}"\ntoken = "bench"\n'
    try:
        uas = c.start_uas(sub, ports["uas"])
        if name == "kamailio":
            server = c.start_kamailio(sub, script, ports["proxy"], int(c.env("CHILDREN", "4")), True)
        else:
            server = c.start_starling(sub, starling, script, ports["proxy"], int(c.env("WORKERS", c.env("CHILDREN", "4"))))
        time.sleep(2)
        before = memory(server)
        stat = sub / "uac.csv"
        args = [c.sipp(), "-sf", str(c.SCENARIOS / "uac_tenant.xml"), f"{c.HOST}:{ports['proxy']}", "-i", c.HOST,
                "-p", str(ports["uac"]), "-s", "bob", "-set", "tenant", "bench", "-set", "target", "0",
                "-d", str(3_600_000), "-nostdin", "-buff_size", "4194304", "-r", str(rate), "-rp", "1000",
                "-m", str(dialogs), "-l", str(dialogs + 10), "-trace_stat", "-stf", str(stat), "-fd", "1",
                "-trace_err", "-error_file", str(sub / "uac_errors.log")]
        uac = subprocess.Popen(args, stdout=open(sub / "uac.out", "wb"), stderr=subprocess.STDOUT, cwd=sub,
                               start_new_session=True)
        deadline = time.monotonic() + dialogs / rate * 3 + 120
        up = failed = 0
        while time.monotonic() < deadline:
            time.sleep(2)
            up, _, failed = current_calls(stat)
            if server.poll() is not None or uac.poll() is not None:
                raise RuntimeError(f"{name} or SIPp exited during the ramp; see {sub}")
            print(f"  {name:9} {up:7} calls up, {failed} failed", end="\r", flush=True)
            if up + failed >= dialogs:
                break
        time.sleep(float(c.env("SETTLE", "5")))
        up, _, failed = current_calls(stat)
        held = memory(server)
        count = server_dialogs(name, sub, control_port)
        per = (held["pss_kb"] - before["pss_kb"]) * 1024 / max(count, 1)
        print(f"\n  {name:9} {count} dialogs on the server (SIPp: {up} calls up, {failed} failed): "
              f"PSS {before['pss_kb'] // 1024} -> {held['pss_kb'] // 1024} MiB, "
              f"largest RSS {before['rss_max_kb'] // 1024} -> {held['rss_max_kb'] // 1024} MiB, "
              f"{per:.0f} bytes of PSS per dialog", flush=True)
        return {"server": name, "server_dialogs": count, "sipp_calls_up": up, "failed_calls": failed, "before": before, "held": held,
                "pss_bytes_per_dialog": round(per), "logs": str(sub)}
    finally:
        c.stop(uac, signal.SIGKILL)
        c.stop(server, grace=20)
        c.stop(uas, signal.SIGKILL)


base_kamailio = c.KAMAILIO_DIALOG
base_starling = c.STARLING_DIALOG


def interrupted(signum, frame):
    raise KeyboardInterrupt


def main() -> int:
    signal.signal(signal.SIGTERM, interrupted)
    dialogs = int(c.env("DIALOGS", "100000"))
    rate = int(c.env("RATE", "500"))
    servers = c.env("SERVERS", "kamailio starling").split()
    starling = Path(c.env("STARLING_BIN", str(c.ROOT / ".build" / "release" / "starling")))
    if "starling" in servers and not starling.exists():
        print(f"error: {starling} not found (swift build -c release --product starling)", file=sys.stderr)
        return 2
    ports = {"proxy": int(c.env("PROXY_PORT", "35060")), "uas": int(c.env("UAS_PORT", "35090")),
             "uac": int(c.env("UAC_PORT", "35070"))}
    tmp = Path(tempfile.mkdtemp(prefix="starling-dlgmem-"))
    script = tmp / "dialog.lua"
    text = re.sub(r'^local NEXT_HOP = ".*"$', f'local NEXT_HOP = "sip:{c.HOST}:{ports["uas"]}"',
                  c.SCRIPTS["dialog"].read_text(), flags=re.M)
    script.write_text(text)
    print(f"{dialogs} dialogs at {rate} calls/s, held; servers {' '.join(servers)} (work dir {tmp})", flush=True)
    results = []
    for name in servers:
        results.append(measure(name, tmp, script, ports, dialogs, rate, starling))
        time.sleep(2)
    c.RESULTS.mkdir(parents=True, exist_ok=True)
    out = c.RESULTS / f"dialog-memory-{dt.datetime.now(dt.timezone.utc).strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(json.dumps({"dialogs": dialogs, "rate": rate, "results": results}, indent=2))
    print(f"Results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
