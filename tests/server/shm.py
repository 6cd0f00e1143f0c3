#!/usr/bin/env python3
"""The shared-memory path of `djinn serve` (docs/protocol.md, "Shared memory").

usage: shm.py DJINN PORT

PORT: a server on loopback.  Checks, from a raw client: a bad "shm" in the
hello is refused; a segment's name is unguessable, 0600, and leaves /dev/shm
once answered; a client that hangs up mid-read (its segment never answered,
or mapped and in use) leaves nothing in /dev/shm and the server up.  Then,
as a malicious server to djinn's own client: a forged offset or size in a
read reply is refused, and no byte outside the segment is read.
Prints ok/FAIL lines; exits 1 if anything failed."""
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time

import wire
from wire import check, frame, read_frame

djinn, port = sys.argv[1], int(sys.argv[2])
LOAD = "load models/stories260K.bin --tokenizer models/tok512.bin"
SHM = "/dev/shm"


def connect(hello):
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    s.sendall(frame(dict({"type": "hello", "proto": 2}, **hello)))
    w, _ = read_frame(s)
    return s, w


def call(s, obj):
    s.sendall(frame(obj))
    while True:
        r, att = read_frame(s)
        if r.get("id") == obj["id"] and r["type"] in ("result", "error"):
            return r, att


def gone(name, wait=3.0):
    t = time.time() + wait
    while time.time() < t:
        if not os.path.exists(SHM + name):
            return True
        time.sleep(0.05)
    return False


def up():
    try:
        s, w = connect({})
        r, _ = call(s, {"type": "ping", "id": 1})
        s.close()
        return w["type"] == "welcome" and r["type"] == "result"
    except (OSError, EOFError):
        return False


# --- the server ---------------------------------------------------------------
s, w = connect({"shm": "yes"})
check("a hello whose \"shm\" is not a boolean is refused",
      w["type"] == "error" and "\"shm\" must be true or false" in w["error"], str(w))
s.close()

s, w = connect({})
check("a client that does not ask gets no segment", w["type"] == "welcome" and "shm" not in w,
      str(w))
r, _ = call(s, {"type": "shm", "id": 1, "mapped": True})
check("a \"shm\" answer without a segment is refused",
      r["type"] == "error" and "no shared-memory segment" in r["error"], str(r))
s.close()

s, w = connect({"shm": True})
seg = w.get("shm") or {}
name = seg.get("name", "")
st = os.stat(SHM + name) if name and os.path.exists(SHM + name) else None
check("the welcome names a segment: unguessable (128 bits), mode 0600, this user's",
      len(name) == 39 and name.startswith("/djinn-") and st is not None and
      (st.st_mode & 0o777) == 0o600 and st.st_uid == os.getuid() and st.st_size >= seg["size"],
      str(w.get("shm")))
r, _ = call(s, {"type": "shm", "id": 1, "mapped": "maybe"})
check("a \"shm\" answer whose \"mapped\" is not a boolean is refused",
      r["type"] == "error" and "\"mapped\" must be true or false" in r["error"], str(r))
r, _ = call(s, {"type": "shm", "id": 2, "mapped": True})
check("the name leaves /dev/shm once the client answered",
      r.get("shm") is True and not os.path.exists(SHM + name), str(r))
# a read into the segment, then a hang-up before the reply is read
call(s, {"type": "cmd", "id": 3, "line": LOAD})
call(s, {"type": "cmd", "id": 4, "line": "break L0.mlp_act"})
call(s, {"type": "cmd", "id": 5, "line": 'run "' + "Once upon a time there was a girl. " * 20 + '" -n 1'})
s.sendall(frame({"type": "read", "id": 6, "site": "L0.mlp_act"}))
s.close()
time.sleep(0.3)
check("a client that hangs up mid-read leaves the server up", up())

s, w = connect({"shm": True})
name = (w.get("shm") or {}).get("name", "")
call(s, {"type": "cmd", "id": 1, "line": LOAD})
s.sendall(frame({"type": "read", "id": 2, "site": "L0.x"}))
s.close()  # never answered the welcome's segment
check("an unanswered segment leaves /dev/shm when its client hangs up",
      name != "" and gone(name), name)
check("...and the server is still up", up())

# --- the client, against a forged server -----------------------------------
def fake_server(lsock, reply_shm, seg_name, seg_size, out):
    try:
        c, _ = lsock.accept()
        c.settimeout(20)
        h, _ = read_frame(c)
        out["hello"] = h
        c.sendall(frame({"type": "welcome", "proto": 2, "token": "0" * 32,
                         "shm": {"name": seg_name, "size": seg_size}}))
        while True:
            m, _ = read_frame(c)
            if m["type"] == "shm":
                out["mapped"] = m.get("mapped")
                c.sendall(frame({"type": "result", "id": m["id"], "ok": True, "shm": True}))
            elif m["type"] == "read":
                c.sendall(frame({"type": "result", "id": m["id"], "ok": True, "site": "L0.x",
                                 "shm": reply_shm}))
    except (OSError, EOFError):
        pass


def forged(reply_shm, want):
    seg = "/djinn-" + os.urandom(16).hex()
    fd = os.open(SHM + seg, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    os.ftruncate(fd, 65536)
    os.close(fd)
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    out = {}
    th = threading.Thread(target=fake_server, args=(lsock, reply_shm, seg, 65536, out))
    th.start()
    lua = ('local r = assert(djinn.connect("127.0.0.1:%d"))\n'
           'print("shm", r:shm())\n'
           'local ok, e = pcall(r.tensor, r, "L0.x")\n'
           'print(ok, e)\n') % lsock.getsockname()[1]
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), "forged.lua")
    with open(path, "w") as f:
        f.write(lua)
    p = subprocess.run([djinn, path], capture_output=True, text=True, timeout=30)
    lsock.close()
    th.join(5)
    leftover = os.path.exists(SHM + seg)
    if leftover:
        os.unlink(SHM + seg)
    return p.stdout + p.stderr, out, leftover


o, info, leftover = forged({"dtype": "f32", "shape": [1, 1024], "offset": 65000, "bytes": 4096,
                            "size": 65536}, "outside")
check("the client maps a segment, unlinks its name and says so",
      "shm\ttrue\t65536" in o and info.get("hello", {}).get("shm") is True and
      info.get("mapped") is True and not leftover, o)
check("the client refuses a forged offset outside the segment",
      "false" in o and "lie outside the 65536-byte segment" in o, o)
o, _, _ = forged({"dtype": "f32", "shape": [1, 1 << 20], "offset": 0, "bytes": 4 << 20,
                  "size": 8 << 20}, "smaller")
check("the client refuses a size larger than the segment really is",
      "false" in o and "the segment is smaller than" in o, o)
o, _, _ = forged({"dtype": "f32", "shape": [1, 16], "offset": 0, "bytes": 4096,
                  "size": 65536}, "shape")
check("the client refuses bytes that its shape and dtype do not make",
      "false" in o and "but its shape and dtype make 64" in o, o)
sys.exit(1 if wire.fails else 0)
