/* server.h - `djinn serve` (remote sessions over TCP or a Unix socket) and
 * the client side of its protocol (docs/protocol.md), used by the shell's
 * `target remote`, `djinn connect` and Lua's djinn.connect.
 *
 * Wire format.  A frame is a u32 little-endian payload length, then the
 * payload: a u32 little-endian JSON length, the JSON text (one object with a
 * string "type"), then the raw bytes of the attachments the object's "att"
 * array describes, in order: {"name", "dtype" ("f32" or "u8"), "shape" [..],
 * "bytes"}.  Tensors always travel as attachments, never as JSON numbers.
 *
 * Ownership.  A decoded frame borrows the payload it was decoded from
 * (attachment data points into it) and owns its cJSON root: release it with
 * djn_frame_release.  A reply from djn_remote_call owns its payload and JSON;
 * release it with djn_remote_reply_release.  Errors go to the djn_err passed
 * in, as "what: why".
 */
#ifndef DJINN_SERVER_H
#define DJINN_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "djinn/status.h"

/* 2: a long command's output streams as "output" events (docs/protocol.md);
 * a server still serves version 1 clients (their output all in the result). */
#define DJN_PROTO_VERSION 2
#define DJN_PROTO_MIN 1
#define DJN_FRAME_MAX_DEFAULT ((size_t)64 << 20)  /* client -> server */
#define DJN_FRAME_MAX_REPLY ((size_t)4 << 30)     /* server -> client */
#define DJN_FRAME_JSON_MAX ((size_t)1 << 20)      /* the JSON part of any frame */
#define DJN_FRAME_MAX_ATT 64
#define DJN_SHM_MAX ((size_t)1 << 40)             /* a shared-memory segment */

/* ---------------------------------------------------------- the codec */

struct djn_frame_att {
	const char *name;   /* borrowed from the JSON */
	const char *dtype;  /* "f32" or "u8" */
	int n_dims;
	int64_t shape[4];
	const uint8_t *data; /* borrowed from the payload */
	size_t bytes;
};

struct djn_frame {
	cJSON *json;         /* owned: the root object */
	const char *type;    /* its "type" */
	struct djn_frame_att att[DJN_FRAME_MAX_ATT];
	int n_att;
};

/* Decode a payload (the bytes after the u32 frame length).  Checks: the JSON
 * length fits and is at most DJN_FRAME_JSON_MAX, the JSON is an object with
 * a string "type", "att" (if present) is an array of well-formed attachment
 * headers whose sizes match their shapes and add up to the rest of the
 * payload exactly.  On failure nothing is left to release. */
enum djn_status djn_frame_decode(const uint8_t *payload, size_t len, struct djn_frame *out,
				 struct djn_err *err);
/* The same checks on the JSON alone, for a reader that receives the
 * attachments straight into their destination: json[0..jlen) is the JSON
 * text of a payload of payload_len bytes; the attachments' data stay NULL
 * (their sizes, in order, fill the rest of the payload exactly). */
enum djn_status djn_frame_decode_head(const uint8_t *json, size_t jlen, size_t payload_len,
				      struct djn_frame *out, struct djn_err *err);
void djn_frame_release(struct djn_frame *f);
/* A read reply's "shm" object (docs/protocol.md, "Shared memory"): the
 * tensor lies in the connection's segment at offset.  Checks what an
 * attachment header is checked for (dtype, shape, bytes = their product),
 * and offset + bytes within the segment: *size is the reply's "size" (the
 * segment after a growth; at least mapped, the size already mapped).  The
 * attachment's data stays NULL. */
enum djn_status djn_frame_shm_att(const cJSON *o, size_t mapped, struct djn_frame_att *a,
				  size_t *offset, size_t *size, struct djn_err *err);

/* An attachment to send: data is borrowed for the call. */
struct djn_att_out {
	const char *name;
	const char *dtype;   /* "f32" or "u8" */
	int n_dims;
	int64_t shape[4];
	const void *data;
	size_t bytes;
};

/* Encode a frame: msg (not taken) gets an "att" array describing att[0..n);
 * the result is one malloc'd buffer (length prefix included) in *buf, *len;
 * the caller frees it.  Attachments are copied in; djn_frame_header gives
 * the head alone for writev-style sending of big attachments. */
enum djn_status djn_frame_encode(cJSON *msg, const struct djn_att_out *att, int n_att,
				 uint8_t **buf, size_t *len, struct djn_err *err);
/* Only the head: length prefix, JSON length, JSON; the attachments' bytes
 * (total *att_bytes) follow it on the wire. */
enum djn_status djn_frame_header(cJSON *msg, const struct djn_att_out *att, int n_att,
				 uint8_t **buf, size_t *len, size_t *att_bytes,
				 struct djn_err *err);

/* ------------------------------------------------------------ sockets */

/* The options of every djinn TCP connection, both ends: no Nagle delay
 * (requests are small and answered at once). */
void djn_net_tune(int fd);

/* --------------------------------------------------------- the server */

/* `djinn serve [--listen HOST:PORT | --unix PATH] [--token-file F]
 *  [--reap-after S] ... MODEL [--tokenizer F] ...`.  Returns the exit status. */
int djn_serve_main(int argc, char **argv);

/* --------------------------------------------------------- the client */

/* Where the time of one request went, in microseconds (docs/protocol.md):
 * the client's serialize and send, the server's queue wait, execution and
 * result serialization, and the rest (the reply's way back and its read). */
struct djn_remote_phases {
	double serialize_us, send_us, queue_us, exec_us, result_us, receive_us, total_us;
	size_t bytes_out, bytes_in;
};

struct djn_remote_reply {
	struct djn_frame f;  /* f.json: the "result" object */
	uint8_t *payload;    /* owned */
	struct djn_remote_phases ph;
};

struct djn_remote;

/* Called for each event frame ("stopped", ...) that arrives while a call
 * waits; the frame is released after the call. */
typedef void (*djn_remote_event_fn)(struct djn_remote *r, const struct djn_frame *ev, void *ud);

/* Connect to "HOST:PORT" or "unix:PATH" and shake hands.  token: the
 * server's access token (or NULL); resume: a client token from an earlier
 * connection, to take its sessions back (or NULL).  NULL on failure. */
struct djn_remote *djn_remote_connect(const char *addr, const char *token, const char *resume,
				      struct djn_err *err);
/* The same, as a tenant: the hello carries tenant, class ("interactive",
 * "standard", "batch") and slo_ms (> 0), each optional (NULL, NULL, 0), and
 * the server schedules this client's sessions as that tenant (`sched add`
 * without --tenant/--class/--slo). */
struct djn_remote *djn_remote_connect_as(const char *addr, const char *token, const char *resume,
					 const char *tenant, const char *cls, double slo_ms,
					 struct djn_err *err);
/* All of the above, and no_shm: reads stay on the socket even for a server
 * on this host (as DJINN_NO_SHM=1 does for every connection). */
struct djn_remote_opts {
	const char *token, *resume, *tenant, *cls;
	double slo_ms;
	bool no_shm;
};
struct djn_remote *djn_remote_open(const char *addr, const struct djn_remote_opts *o,
				   struct djn_err *err);
/* Close the connection: the server keeps this client's sessions (detach). */
void djn_remote_free(struct djn_remote *r);
const char *djn_remote_addr(const struct djn_remote *r);
/* This client's token: give it to djn_remote_connect's resume to reattach. */
const char *djn_remote_token(const struct djn_remote *r);
/* The server's welcome object (borrowed; models, limits, version). */
const cJSON *djn_remote_welcome(const struct djn_remote *r);
void djn_remote_on_event(struct djn_remote *r, djn_remote_event_fn fn, void *ud);

/* One request: msg (not taken) gets an "id"; waits for its result.  A
 * transport failure (the connection is gone, a bad frame) returns an error
 * and leaves the remote unusable (djn_remote_alive false); a request the
 * server refused still returns DJN_OK with "ok": false in the reply. */
enum djn_status djn_remote_call(struct djn_remote *r, cJSON *msg, const struct djn_att_out *att,
				int n_att, struct djn_remote_reply *out, struct djn_err *err);
/* Where an attachment of the reply should land: return memory of at least
 * a->bytes (a->data is NULL yet), or NULL for a buffer of the reply's own.
 * Called once per attachment of the awaited result, after its JSON was
 * checked, before its bytes are read; the memory must stay valid until the
 * call returns.  The attachment's data then points there. */
typedef void *(*djn_remote_sink_fn)(void *ud, const struct djn_frame_att *a, int i);
/* djn_remote_call, the reply's attachments received straight into the
 * memory sink gives (no copy on the client but the kernel's). */
enum djn_status djn_remote_call_into(struct djn_remote *r, cJSON *msg,
				     const struct djn_att_out *att, int n_att,
				     djn_remote_sink_fn sink, void *sink_ud,
				     struct djn_remote_reply *out, struct djn_err *err);
void djn_remote_reply_release(struct djn_remote_reply *rep);
bool djn_remote_alive(const struct djn_remote *r);
/* Ask the server to stop the run in flight for this client (Ctrl-C).
 * Safe to call while djn_remote_call waits, from the same thread. */
void djn_remote_interrupt(struct djn_remote *r);
/* Set while djn_remote_call waits: when it becomes true the call sends an
 * interrupt (the shell's SIGINT flag). */
void djn_remote_watch_flag(struct djn_remote *r, volatile int *flag);

/* Whether reads arrive through a shared-memory segment (a server on this
 * host, DJINN_NO_SHM unset); *size: its size mapped now. */
bool djn_remote_shm(const struct djn_remote *r, size_t *size);

/* Totals over every call so far, and the last call. */
void djn_remote_stats(const struct djn_remote *r, struct djn_remote_phases *last,
		      struct djn_remote_phases *sum, long *n_calls);

#endif
