#!/usr/bin/env python3
"""The backup-and-restore drill (run by `scripts/drill`, which `scripts/test` runs).

On its own nats-server and Postgres it:
1. runs `chronicle serve` and `chronicle project` (projectors and the sealer) and takes
   commands from four clients (jobs through their lives, journal entries);
2. backs up online twice under that load (`chronicle backup`: full, then incremental),
   stops the load, lets the read models catch up, stops the processes and backs up once
   more (incremental: the last few positions);
3. records the history (`chronicle replay events`) and every read-model table;
4. stops both servers and deletes their data;
5. starts empty servers, `chronicle restore`, `chronicle migrate`, `chronicle replay
   rebuild all`;
6. checks that the restore verified, that every event is at its original position with
   its original hash, version and content, that every read-model table equals what it
   was, and that new commands go on at the right versions and positions.
Exits non-zero, saying why, when any of these fails. Prints the backup and restore rates.
"""

import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = sys.argv[1]
WORK = sys.argv[2]
PG_BIN = os.environ.get("CHRONICLE_PG_BINDIR", "/usr/lib/postgresql/15/bin")


T0 = time.monotonic()


def phase(what):
    print(f"[{time.monotonic() - T0:6.1f} s] {what}", flush=True)


def fail(why):
    print(f"DRILL FAILED: {why}", flush=True)
    sys.exit(1)


def free_port():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


STARTED = []


def stop_all():
    for d in STARTED:
        subprocess.run([os.path.join(ROOT, "scripts", "servers"), "stop", d], capture_output=True)


import atexit  # noqa: E402

atexit.register(stop_all)


def servers(cmd, d):
    if cmd == "start":
        STARTED.append(d)
    out = subprocess.run([os.path.join(ROOT, "scripts", "servers"), cmd, d],
                         capture_output=True, text=True)
    if out.returncode != 0:
        fail(f"scripts/servers {cmd}: {out.stderr[-2000:]}")
    env = {}
    for line in out.stdout.splitlines():
        if line.startswith("export ") and "=" in line:
            k, v = line[len("export "):].split("=", 1)
            env[k] = v
    return env


ENV = dict(os.environ)
ENV.update({
    "CHRONICLE_SIGNING_KEY": secrets.token_hex(32),
    "CHRONICLE_SEAL_KEY": secrets.token_hex(32),
    "CHRONICLE_EVENT_KEY": secrets.token_hex(32),
    "CHRONICLE_RATE_LIMIT": "100000",
    "CHRONICLE_SEAL_EVERY_EVENTS": "500",
    "CHRONICLE_SEAL_EVERY_SECONDS": "1",
    "RUST_LOG": "warn",
})


def chronicle(*args, check=True):
    out = subprocess.run([BIN, *args], env=ENV, capture_output=True, text=True)
    if check and out.returncode != 0:
        fail(f"chronicle {' '.join(args)} exited {out.returncode}: {out.stderr[-2000:]}")
    return out


def call(method, path, token, body=None, timeout=10):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(API + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null"), r.headers
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null"), e.headers
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return None, None, {}


def start_processes(log_dir):
    procs = []
    for name in ("serve", "project"):
        log = open(os.path.join(log_dir, f"{name}.log"), "a")
        procs.append(subprocess.Popen([BIN, name], env=ENV, stdout=log, stderr=log))
    for _ in range(300):
        try:
            with urllib.request.urlopen(API + "/health/ready", timeout=1) as r:
                if r.status == 200:
                    return procs
        except Exception:
            pass
        time.sleep(0.1)
    fail("chronicle serve did not become ready")


def stop_processes(procs):
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()


def sql(query):
    out = subprocess.run([os.path.join(PG_BIN, "psql"), ENV["DATABASE_URL"], "-At", "-c", query],
                         check=True, capture_output=True, text=True)
    return [line for line in out.stdout.splitlines() if line]


def read_models():
    tables = sql("SELECT table_name FROM information_schema.tables WHERE table_schema = 'read' "
                 "AND table_name <> 'projection_checkpoints' ORDER BY 1")
    if len(tables) < 5:
        fail(f"read-model tables missing: {tables}")
    return {t: sorted(sql(f"SELECT row_to_json(x)::text FROM read.{t} x")) for t in tables}


def history():
    out = chronicle("replay", "events", "--format", "ndjson")
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


# -- 1. Chronicle under load ------------------------------------------------------------
phase("servers")
os.makedirs(WORK, exist_ok=True)
first_dir = os.path.join(WORK, "servers-1")
ENV.update(servers("start", first_dir))
port = free_port()
ENV["CHRONICLE_LISTEN"] = f"127.0.0.1:{port}"
API = f"http://127.0.0.1:{port}"
chronicle("migrate")
procs = start_processes(WORK)
ADMIN = chronicle("token", "issue", "--user", "drill", "--role", "admin").stdout.strip()
for code, name, kind in (("1000", "Cash", "ASSET"), ("4000", "Revenue", "REVENUE")):
    status, body, _ = call("POST", "/v1/commands/accounts", ADMIN,
                           {"code": code, "name": name, "type": kind, "currency": "EUR"})
    if status != 201:
        fail(f"account {code}: {status} {body}")

versions = {}  # job id -> last accepted version
versions_lock = threading.Lock()
highest = [0]  # the highest position an accepted command reached
stop_load = threading.Event()
errors = []


def client(n):
    i = 0
    while not stop_load.is_set():
        i += 1
        job = f"drill-{n}-{i}-{uuid.uuid4().hex[:6]}"
        steps = [("/v1/commands/jobs", {"job_id": job, "agent_id": f"agent-{n}", "kind": "summarise"}, 201),
                 (f"/v1/commands/jobs/{job}/start", {}, 200)]
        if i % 2 == 0:
            steps.append((f"/v1/commands/jobs/{job}/complete", {"result": {"pages": i}}, 200))
        for path, body, want in steps:
            status, answer, _ = call("POST", path, ADMIN, body)
            if status != want:
                errors.append(f"{path}: {status} {answer}")
                return
            with versions_lock:
                versions[job] = answer["version"]
                highest[0] = max(highest[0], answer["position"])
        if i % 3 == 0:
            status, answer, _ = call("POST", "/v1/commands/journal-entries", ADMIN, {
                "entry_id": str(uuid.uuid4()), "effective_date": "2026-01-01", "memo": f"drill {n}-{i}",
                "lines": [{"account": "1000", "debit": 100 + i, "currency": "EUR"},
                          {"account": "4000", "credit": 100 + i, "currency": "EUR"}]})
            if status != 201:
                errors.append(f"journal entry: {status} {answer}")
                return


load = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(4)]
for t in load:
    t.start()
time.sleep(3)

# -- 2. Backups: two online under load, one after ----------------------------------------
phase("backups")
backup_dir = os.path.join(WORK, "backup")


def backup():
    t = time.monotonic()
    report = json.loads(chronicle("backup", "--out", backup_dir).stdout)
    took = time.monotonic() - t
    print(f"backup {'incremental' if report['incremental'] else 'full'}: positions "
          f"{report['from']}..={report['to']}, {report['messages']} messages in {took:.2f} s", flush=True)
    return report


full = backup()
time.sleep(2)
incremental = backup()
if not incremental["incremental"] or incremental["from"] != full["to"] + 1:
    fail(f"the second backup is not incremental after the first: {incremental['from']} vs {full['to']}")
if incremental["messages"] == 0:
    fail("nothing was taken between the two backups: the load stopped")
stop_load.set()
for t in load:
    t.join()
if errors:
    fail(f"the load failed: {errors[:3]}")
for _ in range(600):
    status, _, headers = call("GET", "/v1/queries/jobs?limit=1", ADMIN)
    if status == 200 and int(headers.get("X-Chronicle-Position", 0)) >= highest[0]:
        break
    time.sleep(0.1)
else:
    fail("the read models did not catch up")
phase("stopping serve and project")
stop_processes(procs)
phase("stopped")
last = backup()
cut = last["to"]
before_events = history()
before_models = read_models()
accepted_jobs = len(versions)
print(f"drill: {accepted_jobs} jobs, {len(before_events)} events up to position {cut}", flush=True)

# -- 3. Everything lost ------------------------------------------------------------------
phase("wipe")
servers("stop", first_dir)
shutil.rmtree(first_dir)

# -- 4. Restore into empty servers ---------------------------------------------------------
phase("restore")
second_dir = os.path.join(WORK, "servers-2")
ENV.update(servers("start", second_dir))
try:
    t = time.monotonic()
    out = chronicle("restore", "--from", backup_dir, check=False)
    took = time.monotonic() - t
    if out.returncode != 0:
        fail(f"restore exited {out.returncode}: {out.stderr[-2000:]}")
    restored = json.loads(out.stdout)
    if not restored["verify"]["ok"] or restored["restore"]["last_position"] != cut:
        fail(f"the restored log: {json.dumps(restored)[:2000]}")
    print(f"restore: {restored['restore']['messages']} messages in {took:.2f} s "
          f"(with verify), {restored['restore']['seconds']:.2f} s loading", flush=True)
    chronicle("migrate")
    phase("rebuild")
    chronicle("replay", "rebuild", "all")

    # -- 5. The same history, the same read models -----------------------------------------
    phase("compare")
    after_events = history()
    if len(after_events) != len(before_events):
        fail(f"{len(after_events)} events after the restore, {len(before_events)} before")
    for a, b in zip(after_events, before_events):
        if a != b:
            fail(f"position {b['position']} differs after the restore:\n{a}\n{b}")
    after_models = read_models()
    for table, rows in before_models.items():
        if after_models.get(table) != rows:
            fail(f"read.{table} differs after the rebuild ({len(after_models.get(table, []))} rows, "
                 f"{len(rows)} before)")
    print(f"drill: {len(after_events)} events at their positions with their hashes; "
          f"{len(before_models)} read-model tables equal", flush=True)

    # -- 6. Commands go on -----------------------------------------------------------------
    phase("commands")
    procs = start_processes(WORK)
    try:
        ADMIN = chronicle("token", "issue", "--user", "drill-after", "--role", "admin").stdout.strip()
        started = [j for j, v in versions.items() if v == 2][:5]
        if not started:
            fail("no job was left started")
        for job in started:
            status, answer, _ = call("POST", f"/v1/commands/jobs/{job}/complete", ADMIN, {"result": {"ok": True}})
            if status != 200 or answer["version"] != 3 or answer["position"] <= cut:
                fail(f"completing {job} after the restore: {status} {answer}")
        job = next(iter(versions))
        status, answer, _ = call("POST", "/v1/commands/jobs", ADMIN,
                                 {"job_id": job, "agent_id": "agent-0", "kind": "summarise"})
        if status != 409:
            fail(f"a restored job was submitted again: {status} {answer}")
        verify = json.loads(chronicle("replay", "verify").stdout)
        if not verify["ok"]:
            fail(f"the log after new commands: {json.dumps(verify)[:2000]}")
    finally:
        stop_processes(procs)
    print("DRILL PASSED: backed up online (full, incremental), lost everything, restored, "
          "rebuilt, same history and read models, commands go on", flush=True)
finally:
    servers("stop", second_dir)
