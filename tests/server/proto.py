#!/usr/bin/env python3
"""Protocol tests for `djinn serve` (tests/server/run.sh starts the servers).

usage: proto.py DJINN PORT SLOW_PORT TOKEN_PORT TOKEN REFERENCE_TEXT

PORT: a plain server (read timeout 1 s); SLOW_PORT: one whose output writes
are slowed (DJINN_SERVE_WRITE_DELAY_US) so a run can be cut off mid-way;
TOKEN_PORT: one that wants TOKEN.  REFERENCE_TEXT: what a local
`run "Once upon a time" -n 200` leaves in `info text`.
Prints ok/FAIL lines; exits 1 if anything failed."""
import json
import socket
import struct
import sys
import time

import wire
from wire import check, frame, read_frame

djinn, port, slow_port, tok_port, token, ref_path = sys.argv[1:7]
port, slow_port, tok_port = int(port), int(slow_port), int(tok_port)
ref_text = open(ref_path).read()
LOAD = "load models/stories260K.bin --tokenizer models/tok512.bin"


class Client:
    def __init__(self, p=port, resume=None, auth=None, proto=2):
        self.s = socket.create_connection(("127.0.0.1", p), timeout=20)
        self.id = 0
        self.streamed = []  # the "output" events of the last call
        h = {"type": "hello", "proto": proto}
        if resume:
            h["resume"] = resume
        if auth:
            h["auth"] = auth
        self.s.sendall(frame(h))
        self.welcome, _ = read_frame(self.s)
        self.token = self.welcome.get("token")
        self.events = []

    def call(self, obj):
        self.id += 1
        obj["id"] = self.id
        self.s.sendall(frame(obj))
        self.streamed = []
        while True:
            r, att = read_frame(self.s)
            if r["type"] == "output" and r.get("id") == self.id:
                self.streamed.append(att)
                continue
            if r.get("id") == self.id or r["type"] == "error":
                return r, att
            self.events.append(r)

    def cmd(self, line):
        """The command's whole output: what streamed, then the result's."""
        r, att = self.call({"type": "cmd", "line": line, "json": False})
        return r, (b"".join(self.streamed) + att).decode("utf-8", "replace")

    def close(self):
        self.s.close()


def text_of(c):
    r, out = c.cmd("info text")
    return out


# --- two clients at once, each with its own sessions ---------------------
a, b = Client(), Client()
check("two clients get different tokens", a.token and b.token and a.token != b.token)
a.cmd(LOAD)
b.cmd(LOAD)
a.cmd("break L2.resid_post if pos == 6")
r, out = a.cmd('run "Once upon a time" -n 30')
check("client A stops at its breakpoint", "Breakpoint 1, L2.resid_post at pos 6" in out, out)
check("a stopped event is pushed before the result",
      any(e["type"] == "stopped" and e.get("reason") == "breakpoint" and e.get("bp") == 1
          for e in a.events), str(a.events))
r, out = b.cmd('run "Once upon a time" -n 30')
check("client B runs to the end meanwhile (no breakpoint of A's)", "[Run finished: 30 tokens generated]" in out, out)
r, out = a.cmd("info breakpoints")
check("A's breakpoint is A's", "L2.resid_post" in out)
r, out = b.cmd("info breakpoints")
check("B has no breakpoints", "No breakpoints" in out, out)

# --- isolation ------------------------------------------------------------
a.cmd("session new alpha")
r, out = b.cmd("session alpha")
check("B cannot switch to A's session", not r["ok"] and "belongs to another client" in out, out)
r, out = b.cmd("session swapout alpha")
check("B cannot swap A's session out", not r["ok"] and "belongs to another client" in out, out)
r, att = b.call({"type": "read", "session": "alpha", "site": "embed"})
check("B cannot read A's session", r["type"] == "error" and "belongs to another client" in r["error"], str(r))
r, att = b.call({"type": "steer", "session": "alpha", "pattern": "L0.q", "op": "scale", "scale": 2})
check("B cannot steer A's session", r["type"] == "error" and "belongs to another client" in r["error"], str(r))
r, out = b.cmd("info sessions")
check("B does not see A's sessions", "alpha" not in out, out)
try:
    c = Client(resume=a.token)
    check("A's token is refused while A is attached",
          c.welcome["type"] == "error" and "in use" in c.welcome["error"], str(c.welcome))
    c.close()
except EOFError:
    check("A's token is refused while A is attached", False, "closed without a reason")
a.cmd("session main")

# --- a tensor read: a binary attachment, not JSON numbers -------------------
r, att = a.call({"type": "read", "site": "L2.resid_post"})
check("read returns an f32 attachment of the site's shape",
      r.get("ok") and r["att"][0]["dtype"] == "f32" and r["att"][0]["shape"] == [1, 64]
      and len(att) == 256, str(r))

# --- disconnect mid-frame, then reattach: nothing lost ---------------------
tok = a.token
a.s.sendall(b"\x40\x00\x00\x00\x10\x00")  # half a frame
a.close()
time.sleep(0.2)
a = Client(resume=tok)
check("reattach by token", a.welcome.get("resumed") is True and "alpha" in a.welcome.get("sessions", []),
      str(a.welcome))
r, out = a.cmd("backtrace")
check("the paused run is still there after a hang-up mid-frame", "L2.resid_post" in out and "pos 6" in out, out)
a.cmd("delete")
a.cmd("continue")

# --- disconnect mid-run, reattach, continue: the same tokens ---------------
s = Client(slow_port)
s.cmd(LOAD)
s.s.sendall(frame({"type": "cmd", "id": 99, "line": 'run "Once upon a time" -n 200', "json": False}))
time.sleep(0.4)
s.close()  # mid-run: the server stops it at the next site, paused
time.sleep(0.3)
s = Client(slow_port, resume=s.token)
r, out = s.cmd("info sessions")
check("the run cut off by the hang-up is paused, not finished", "paused" in out, out)
r, out = s.cmd("continue")
check("continue after reattaching finishes it", "[Run finished" in out, out[-200:])
got = text_of(s)
check("reattached run gives the same 200 tokens as a local run", got == ref_text,
      "got %r..., want %r..." % (got[:80], ref_text[:80]))
s.cmd("quit")
s.close()

# --- a long command's output streams as it is written (protocol 2) --------
RUN60 = 'run "Once upon a time" -n 60'
v1 = Client(proto=1)
v1.cmd(LOAD)
r, want = v1.cmd(RUN60)
check("a protocol 1 client gets the whole output in the result", not v1.streamed and
      "[Run finished: 60 tokens generated]" in want, "%d events" % len(v1.streamed))
v1.cmd("quit")
v1.close()
s = Client(slow_port)
s.cmd(LOAD)
r, got = s.cmd(RUN60)
check("generated text streams token by token (output events before the result)",
      len(s.streamed) >= 10, "%d output events" % len(s.streamed))
check("the streamed output and the rest equal the unstreamed output byte for byte", got == want,
      "got %r, want %r" % (got[-120:], want[-120:]))
s.cmd("quit")
s.close()

# --- a hang-up while big reads (sent in pieces) are in flight ---------------
h = Client()
h.cmd(LOAD)
h.cmd("break L0.mlp_act")
h.cmd('start "%s" -n 1' % ("Once upon a time there was a girl. " * 36))
h.cmd("continue")
for i in range(8):
    h.s.sendall(frame({"type": "read", "id": 1000 + i, "site": "L0.mlp_act"}))
h.close()
time.sleep(0.2)
p2 = Client()
r, _ = p2.call({"type": "ping"})
check("a hang-up with big reads in flight leaves the server up", r.get("ok") is True, str(r))
p2.close()

# --- malformed, oversized, slowloris: the server stays up for the others ----
m = Client()
m.s.sendall(struct.pack("<I", 8) + struct.pack("<I", 4) + b"{no}")
r, _ = read_frame(m.s)
check("bad JSON gets an error and the connection goes on", r["type"] == "error" and "bad JSON" in r["error"], str(r))
m.s.sendall(frame({"type": "cmd", "line": "echo x"}))
r, _ = read_frame(m.s)
check("a request without an id is refused", r["type"] == "error" and "id" in r["error"], str(r))
m.s.sendall(frame({"type": "cmd", "id": 1, "att": [{"dtype": "f32", "shape": [4], "bytes": 16}]}, b"abc"))
r, _ = read_frame(m.s)
check("an attachment longer than the frame is refused", r["type"] == "error" and "attachment" in r["error"], str(r))
r, out = m.cmd("echo still here\\n")
check("the connection still works after bad frames", out == "still here\n", out)
m.s.sendall(struct.pack("<I", 0xFFFFFFF0))
r, _ = read_frame(m.s)
check("an oversized frame is refused with its size", r["type"] == "error" and "exceeds" in r["error"], str(r))
try:
    m.s.settimeout(3)
    closed = m.s.recv(1) == b""
except OSError:
    closed = True
check("...and that connection is closed", closed)
m.close()

raw = socket.create_connection(("127.0.0.1", port), timeout=5)
raw.sendall(frame({"type": "cmd", "id": 1, "line": "echo hi"}))
r, _ = read_frame(raw)
check("a request before the handshake is refused", r["type"] == "error" and "hello" in r["error"], str(r))
raw.close()
raw = socket.create_connection(("127.0.0.1", port), timeout=5)
raw.sendall(frame({"type": "hello", "proto": 99}))
r, _ = read_frame(raw)
check("a protocol version it does not speak is refused", r["type"] == "error" and "version 99" in r["error"], str(r))
raw.close()

slow = socket.create_connection(("127.0.0.1", port), timeout=5)
slow.sendall(frame({"type": "hello", "proto": 1}))
read_frame(slow)
slow.sendall(b"\x20\x00")  # two bytes of a header, then nothing
t0 = time.time()
other = Client()
r, out = other.cmd("echo served\\n")
dt = time.time() - t0
check("others are served while a slowloris client dribbles", out == "served\n" and dt < 0.5, "%.2f s" % dt)
try:
    slow.settimeout(5)
    gone = slow.recv(1) == b""
except OSError:
    gone = True
check("the slowloris connection is cut after the read timeout", gone and time.time() - t0 < 4)
slow.close()
t = time.time()
r, _ = other.call({"type": "ping"})
check("the server is still up (ping)", r.get("ok") is True)
other.close()

# --- the access token --------------------------------------------------------
for name, auth in (("missing", None), ("wrong", "not-the-token")):
    c = Client(tok_port, auth=auth)
    check("a %s token is refused" % name,
          c.welcome["type"] == "error" and "access refused" in c.welcome["error"], str(c.welcome))
    c.close()
c = Client(tok_port, auth=token)
check("the right token is let in", c.welcome["type"] == "welcome", str(c.welcome))
c.close()

# --- the reaper: port's server frees detached clients after 2 s --------------
d = Client()
d.cmd(LOAD)
dt = d.token
d.close()
time.sleep(3.2)
try:
    e = Client(resume=dt)
    check("a detached client's state is reaped", e.welcome["type"] == "error" and "reaped" in e.welcome["error"],
          str(e.welcome))
    e.close()
except EOFError:
    check("a detached client's state is reaped", False, "closed without a reason")

b.close()
a.cmd("quit")
a.close()
sys.exit(1 if wire.fails else 0)
