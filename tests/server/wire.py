"""The wire format of `djinn serve` for the raw-client tests (docs/protocol.md,
"Frames"): a frame is a u32 length, then the JSON's u32 length, the JSON and
the attachments' bytes; and the ok/FAIL reporting the tests share."""
import json
import struct

fails = 0


def check(name, cond, detail=""):
    global fails
    if cond:
        print("ok   " + name)
    else:
        fails += 1
        print("FAIL " + name + (": " + detail if detail else ""))


def frame(obj, atts=b""):
    j = json.dumps(obj).encode()
    payload = struct.pack("<I", len(j)) + j + atts
    return struct.pack("<I", len(payload)) + payload


def recv_exact(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError("closed")
        b += c
    return b


def read_frame(s):
    (n,) = struct.unpack("<I", recv_exact(s, 4))
    p = recv_exact(s, n)
    (jl,) = struct.unpack("<I", p[:4])
    return json.loads(p[4:4 + jl]), p[4 + jl:]
