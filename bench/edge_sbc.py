#!/usr/bin/env python3
"""Memory of the edge SBC under the issue-15 load: Starling vs Kamailio 5.6 as the edge.

Three network namespaces as in EdgeSBCTests (phone 198.51.100.50 -- 198.51.100.1 edge 10.0.3.1 --
10.0.3.2 PBX). The PBX is Kamailio 5.6 with registrar use_path (Tests/.../Fixtures/edge-sbc/pbx.lua).
The edge runs examples/edge-sbc (edge.lua unchanged; starling.toml plus a TLS socket, or the same
sockets, modules and modparams in a Kamailio cfg). Phases, for each edge server in turn:

  start      the edge idle (sampled for 5 s)
  register   --phones UDP phones (SIPp, bench/edge_register.xml, users u<N>) register through the edge
  tls        --tls-phones TLS phones (bench/edge_tls_phones.py, one connection each, users tls<N>)
             connect and register, then keep their connections with CRLF keepalives
  hold       everything registered and connected (sampled for --hold seconds)
  calls      --calls calls from the PBX side to the TLS phones (SIPp, bench/edge_call.xml) over their
             connections, through the Path, the double Record-Route and the alias
  leave      the TLS phones close their connections
  after      sampled --settle seconds after they left

The edge's memory is sampled every second: RSS and PSS summed over its processes (Starling: one
process; Kamailio: every process of its group). Prints a table and writes bench/results/edge-sbc-<UTC>.json.
Needs root (ip netns), iproute2, sip-tester, kamailio (+ lua, tls modules), openssl, python3.
"""
import argparse, json, os, shutil, signal, subprocess, sys, tempfile, threading, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FIXTURE = ROOT / "Tests/StarlingIntegrationTests/Fixtures/edge-sbc/pbx.lua"
EXAMPLE = ROOT / "examples/edge-sbc"


def sh(args, **kw):
    return subprocess.run(args, check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


class Net:
    def __init__(self):
        tag = f"{os.getpid()}"
        self.phone, self.edge, self.pbx = f"sbench-ph-{tag}", f"sbench-edge-{tag}", f"sbench-pbx-{tag}"
        for n in (self.phone, self.edge, self.pbx):
            sh(["ip", "netns", "add", n])
            sh(["ip", "-n", n, "link", "set", "lo", "up"])
        for args in (
            ["-n", self.edge, "link", "add", "pub0", "type", "veth", "peer", "name", "eth0", "netns", self.phone],
            ["-n", self.edge, "link", "add", "priv0", "type", "veth", "peer", "name", "eth0", "netns", self.pbx],
            ["-n", self.edge, "addr", "add", "198.51.100.1/24", "dev", "pub0"],
            ["-n", self.edge, "addr", "add", "10.0.3.1/24", "dev", "priv0"],
            ["-n", self.edge, "link", "set", "pub0", "up"], ["-n", self.edge, "link", "set", "priv0", "up"],
            ["-n", self.phone, "addr", "add", "198.51.100.50/24", "dev", "eth0"], ["-n", self.phone, "link", "set", "eth0", "up"],
            ["-n", self.pbx, "addr", "add", "10.0.3.2/24", "dev", "eth0"], ["-n", self.pbx, "link", "set", "eth0", "up"]):
            sh(["ip"] + args)

    def cmd(self, ns, args):
        return ["ip", "netns", "exec", ns] + args

    def delete(self):
        for n in (self.phone, self.edge, self.pbx):
            subprocess.run(["ip", "netns", "delete", n], stderr=subprocess.DEVNULL)


def spawn(args, log, **kw):
    f = open(log, "ab")
    return subprocess.Popen(args, stdout=f, stderr=subprocess.STDOUT, start_new_session=True, **kw)


def kill(p, grace=5):
    if p is None or p.poll() is not None:
        return
    try:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(grace)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()


def group_pids(pgid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[2]) == pgid:
                    out.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return out


def memory_kb(pgid, exclude_exe=("ip",)):
    rss = pss = 0
    for pid in group_pids(pgid):
        try:
            exe = os.path.basename(os.readlink(f"/proc/{pid}/exe"))
            if exe in exclude_exe:
                continue
            for line in open(f"/proc/{pid}/smaps_rollup"):
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            pass
    return rss, pss


class Sampler(threading.Thread):
    def __init__(self, pgid):
        super().__init__(daemon=True)
        self.pgid, self.phase, self.samples, self.stop_flag = pgid, "start", [], False
        self.t0 = time.monotonic()

    def run(self):
        while not self.stop_flag:
            rss, pss = memory_kb(self.pgid)
            self.samples.append({"t": round(time.monotonic() - self.t0, 1), "phase": self.phase, "rss_kb": rss, "pss_kb": pss})
            time.sleep(1)


def certs(d):
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    sh(["openssl", "req", "-x509"] + key + ["-keyout", f"{d}/ca.key", "-out", f"{d}/ca.pem", "-days", "2", "-subj", "/CN=Bench CA"])
    sh(["openssl", "req"] + key + ["-keyout", f"{d}/server.key", "-out", f"{d}/server.csr", "-subj", "/CN=sip.test"])
    Path(f"{d}/server.ext").write_text("subjectAltName=DNS:sip.test,IP:198.51.100.1\n")
    sh(["openssl", "x509", "-req", "-in", f"{d}/server.csr", "-CA", f"{d}/ca.pem", "-CAkey", f"{d}/ca.key", "-CAcreateserial",
        "-out", f"{d}/server.pem", "-days", "2", "-extfile", f"{d}/server.ext"])


def kamailio_mpath():
    for p in ("/usr/lib/x86_64-linux-gnu/kamailio/modules", "/usr/lib/kamailio/modules", "/usr/lib64/kamailio/modules"):
        if os.path.isdir(p):
            return p
    sys.exit("edge_sbc: Kamailio's module directory not found")


def kamailio_cfg(listen, script, modules, extra, children, tcp_children=0, tls_cfg=None):
    lines = ["#!KAMAILIO", "debug=-1", "log_stderror=yes", f"children={children}", "auto_aliases=no", "maxbuffer=2097152",
             f'mpath="{kamailio_mpath()}"', "tcp_max_connections=8192"]
    if tcp_children:
        lines.append(f"tcp_children={tcp_children}")
    if tls_cfg:
        lines += ["enable_tls=yes", "tls_max_connections=8192"]
    lines += [f"listen={l}" for l in listen]
    lines += [f'loadmodule "{m}.so"' for m in modules]
    lines += ['loadmodule "app_lua.so"', f'modparam("app_lua", "load", "{script}")']
    if tls_cfg:
        lines.append(f'modparam("tls", "config", "{tls_cfg}")')
    lines += [extra, 'cfgengine "lua"', ""]
    return "\n".join(lines)


def wait_for(pred, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what}")


def bound(ns, proto, addr):
    out = subprocess.run(["ip", "netns", "exec", ns, "ss", "-Hln" + ("u" if proto == "udp" else "t")],
                         stdout=subprocess.PIPE, text=True).stdout
    return addr in out


def run_one(server, a, work):
    net = Net()
    procs = []
    result = {"server": server}
    try:
        d = work / server
        d.mkdir()
        certs(d)
        # The PBX registrar.
        pbx_cfg = d / "pbx.cfg"
        pbx_cfg.write_text(kamailio_cfg(["udp:10.0.3.2:5060"], FIXTURE, ["tm", "sl", "rr", "pv", "maxfwd", "siputils", "usrloc", "registrar"],
                                        'modparam("usrloc", "hash_size", 14)\nmodparam("usrloc", "preload", "location")\n'
                                        'modparam("registrar", "use_path", 1)\n'
                                        'modparam("registrar", "path_mode", 1)\nmodparam("registrar", "max_expires", 7200)\n',
                                        children=4))
        sh(net.cmd(net.pbx, ["kamailio", "-c", "-f", str(pbx_cfg)]))
        pbx = spawn(net.cmd(net.pbx, ["kamailio", "-f", str(pbx_cfg), "-DD", "-E", "-m", "1024", "-M", "32", "-Y", str(d)]), d / "pbx.log")
        procs.append(pbx)
        wait_for(lambda: bound(net.pbx, "udp", "10.0.3.2:5060"), 30, "the PBX")
        time.sleep(1)
        # The edge.
        if server == "starling":
            text = (EXAMPLE / "starling.toml").read_text()
            text = text.replace('"udp:10.0.3.1:5060 name private"]',
                                '"udp:10.0.3.1:5060 name private", "tls:198.51.100.1:5061 name public-tls"]')
            text += f'\n[tls]\ncertificate = "{d}/server.pem"\nprivate_key = "{d}/server.key"\n'
            cfg = d / "edge.toml"
            cfg.write_text(text)
            argv = [str(a.starling), "run", "--config", str(cfg), "--log-level", a.log_level]
            if a.workers:
                argv += ["--workers", str(a.workers)]
            edge = spawn(net.cmd(net.edge, argv), d / "edge.log", cwd=ROOT)
        else:
            tls_cfg = d / "tls.cfg"
            tls_cfg.write_text(f"[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\nrequire_certificate = no\n"
                               f"private_key = {d}/server.key\ncertificate = {d}/server.pem\n\n"
                               f"[client:default]\nverify_certificate = no\nrequire_certificate = no\n")
            cfg = d / "edge.cfg"
            cfg.write_text(kamailio_cfg(['udp:198.51.100.1:5060 name "public"', 'tcp:198.51.100.1:5060 name "public-tcp"',
                                         'udp:10.0.3.1:5060 name "private"', 'tls:198.51.100.1:5061 name "public-tls"'],
                                        EXAMPLE / "edge.lua",
                                        ["tm", "sl", "rr", "pv", "path", "maxfwd", "siputils", "nathelper", "kemix", "tls"],
                                        'mhomed=1\nmodparam("path", "use_received", 1)\n'
                                        'modparam("rr", "enable_double_rr", 1)\n',
                                        children=a.kamailio_children, tcp_children=a.kamailio_children, tls_cfg=tls_cfg))
            sh(net.cmd(net.edge, ["kamailio", "-c", "-f", str(cfg)]))
            edge = spawn(net.cmd(net.edge, ["kamailio", "-f", str(cfg), "-DD", "-E", "-m", str(a.kamailio_shm), "-M", "8",
                                            "-Y", str(d)]), d / "edge.log")
        procs.append(edge)
        wait_for(lambda: bound(net.edge, "tcp", "198.51.100.1:5061") and bound(net.edge, "udp", "10.0.3.1:5060"), 60, "the edge")
        time.sleep(2)
        sampler = Sampler(edge.pid)
        sampler.start()
        time.sleep(5)

        # 1. UDP phones register.
        sampler.phase = "register"
        t = time.monotonic()
        reg = subprocess.run(net.cmd(net.phone, [
            "sipp", "-sf", str(HERE / "edge_register.xml"), "198.51.100.1:5060", "-i", "198.51.100.50", "-p", "5062",
            "-s", "u", "-set", "domain", "pbx.example", "-set", "natip", "10.99.0.5", "-set", "expires", "3600",
            "-m", str(a.phones), "-r", str(a.reg_rate), "-l", "2000", "-nostdin", "-timeout", str(int(a.phones / a.reg_rate * 3 + 60)) + "s",
            "-trace_stat", "-stf", str(d / "register_stat.csv"), "-fd", "5", "-buff_size", "4194304"]),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=d)
        result["register"] = {"exit": reg.returncode, "seconds": round(time.monotonic() - t, 1),
                              "stat": last_stat(d / "register_stat.csv")}

        # 2. TLS phones connect, register and stay.
        sampler.phase = "tls"
        phones = spawn(net.cmd(net.phone, ["python3", "-u", str(HERE / "edge_tls_phones.py"), "--host", "198.51.100.1", "--port", "5061",
                                           "--count", str(a.tls_phones), "--rate", str(a.tls_rate), "--keepalive", str(a.keepalive),
                                           "--ca", f"{d}/ca.pem", "--server-name", "sip.test"]), d / "tls_phones.log")
        procs.append(phones)
        wait_for(lambda: f'"done": {a.tls_phones},' in (d / "tls_phones.log").read_text() or phones.poll() is not None,
                 a.tls_phones / a.tls_rate * 4 + 120, "the TLS phones")
        result["tls_registered"] = last_event(d / "tls_phones.log", "registered")
        sampler.phase = "hold"
        time.sleep(a.hold)

        # 3. Calls to the TLS phones from the PBX side.
        sampler.phase = "calls"
        inf = d / "callees.csv"
        inf.write_text("SEQUENTIAL\n" + "".join(f"tls{i}\n" for i in range(a.tls_phones)))
        t = time.monotonic()
        calls = subprocess.run(net.cmd(net.pbx, [
            "sipp", "-sf", str(HERE / "edge_call.xml"), "10.0.3.2:5060", "-i", "10.0.3.2", "-p", "5070", "-inf", str(inf),
            "-m", str(a.calls), "-r", str(a.call_rate), "-l", "500", "-nostdin", "-timeout", str(int(a.calls / a.call_rate * 3 + 60)) + "s",
            "-trace_stat", "-stf", str(d / "calls_stat.csv"), "-fd", "5", "-trace_err", "-error_file", str(d / "calls_errors.log")]),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=d)
        result["calls"] = {"exit": calls.returncode, "seconds": round(time.monotonic() - t, 1), "stat": last_stat(d / "calls_stat.csv")}
        sampler.phase = "hold2"
        time.sleep(5)

        # 4. The TLS phones leave.
        sampler.phase = "leave"
        os.killpg(phones.pid, signal.SIGUSR1)
        try:
            phones.wait(60)
        except subprocess.TimeoutExpired:
            pass
        result["tls_left"] = last_event(d / "tls_phones.log", "left")
        sampler.phase = "after"
        time.sleep(a.settle)
        sampler.stop_flag = True
        sampler.join()
        result["samples"] = sampler.samples
        result["summary"] = summarize(sampler.samples)
        result["edge_running"] = edge.poll() is None
    finally:
        for p in reversed(procs):
            kill(p)
        net.delete()
    return result


def last_stat(path):
    try:
        lines = Path(path).read_text().strip().splitlines()
        head, last = lines[0].split(";"), lines[-1].split(";")
        row = dict(zip(head, last))
        return {k: row.get(k) for k in ("SuccessfulCall(C)", "FailedCall(C)", "Retransmissions(C)", "TotalCallCreated")}
    except (OSError, IndexError):
        return {}


def last_event(path, name):
    out = None
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith("{") and f'"event": "{name}"' in line:
                out = json.loads(line)
    except OSError:
        pass
    return out


def summarize(samples):
    def mib(kb):
        return round(kb / 1024, 1)
    by = {}
    for s in samples:
        by.setdefault(s["phase"], []).append(s)
    out = {}
    for phase, ss in by.items():
        out[phase] = {"rss_max_mib": mib(max(x["rss_kb"] for x in ss)), "pss_max_mib": mib(max(x["pss_kb"] for x in ss)),
                      "rss_last_mib": mib(ss[-1]["rss_kb"]), "pss_last_mib": mib(ss[-1]["pss_kb"])}
    out["overall"] = {"rss_max_mib": mib(max(x["rss_kb"] for x in samples)), "pss_max_mib": mib(max(x["pss_kb"] for x in samples))}
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--servers", default="starling,kamailio")
    p.add_argument("--starling", type=Path, default=ROOT / ".build/release/starling")
    p.add_argument("--workers", type=int, default=0, help="Starling --workers (0: the example's)")
    p.add_argument("--log-level", default="warning", help="Starling's --log-level")
    p.add_argument("--kamailio-children", type=int, default=2)
    p.add_argument("--kamailio-shm", type=int, default=256, help="Kamailio -m (MiB of shared memory)")
    p.add_argument("--phones", type=int, default=50000)
    p.add_argument("--reg-rate", type=int, default=1000)
    p.add_argument("--tls-phones", type=int, default=2000)
    p.add_argument("--tls-rate", type=float, default=200)
    p.add_argument("--keepalive", type=float, default=20)
    p.add_argument("--hold", type=float, default=30)
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--call-rate", type=int, default=50)
    p.add_argument("--settle", type=float, default=40)
    a = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("edge_sbc: needs root (ip netns)")
    for tool in ("ip", "ss", "sipp", "kamailio", "openssl"):
        if shutil.which(tool) is None:
            sys.exit(f"edge_sbc: '{tool}' not found (scripts/install-deps.sh)")
    if "starling" in a.servers and not a.starling.exists():
        sys.exit(f"edge_sbc: {a.starling} not found (swift build -c release --product starling)")
    work = Path(tempfile.mkdtemp(prefix="starling-edge-bench-"))
    results = {"args": {k: str(v) for k, v in vars(a).items()}, "runs": []}
    for server in a.servers.split(","):
        print(f"== {server}", flush=True)
        r = run_one(server, a, work)
        results["runs"].append(r)
        print(json.dumps({k: v for k, v in r.items() if k != "samples"}, indent=1), flush=True)
    out = HERE / "results" / time.strftime("edge-sbc-%Y%m%dT%H%M%SZ.json", time.gmtime())
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"\n{'server':10} {'phase':9} {'RSS max':>8} {'PSS max':>8} {'PSS last':>9}  (MiB)")
    for r in results["runs"]:
        for phase, s in r["summary"].items():
            print(f"{r['server']:10} {phase:9} {s['rss_max_mib']:8} {s['pss_max_mib']:8} {s.get('pss_last_mib', ''):>9}")
    print(f"results: {out}  (work files: {work})")


if __name__ == "__main__":
    main()
