/* server_impl.h - what the server's two threads share (internal to
 * src/server): the network loop (net.c) owns sockets and framing, the engine
 * (engine.c) owns models, shells and sessions; they meet only in the two
 * queues below.
 *
 *   net thread:  poll() over the listener, the connections and a wake-up
 *                eventfd; reads frames (size limits, read and idle
 *                timeouts), checks the access token, pushes complete
 *                requests onto `in` (bounded: when full it stops reading),
 *                writes what the engine left on `out`.
 *   engine:      the main thread (it owns the CUDA context); pops requests,
 *                runs them in the client's shell, pushes encoded replies
 *                onto `out` and writes the eventfd.
 *
 * Interrupts (a client's Ctrl-C, or its disconnect mid-run) are the one
 * thing the net thread does to the engine directly: under exec_mu, if the
 * engine is executing for that connection, it sets the shell's SIGINT flag
 * and calls djn_session_interrupt (async-signal-safe, so thread-safe).
 */
#ifndef DJINN_SERVER_IMPL_H
#define DJINN_SERVER_IMPL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "djinn/server.h"

struct djn_model;
struct djn_backend;

enum srv_msg_kind {
	SRV_MSG_FRAME, /* a complete frame from a connection (hello or request) */
	SRV_MSG_CLOSE, /* the connection is gone */
};

struct srv_msg {
	enum srv_msg_kind kind;
	uint64_t conn;
	struct djn_frame f;   /* FRAME: decoded, borrows payload */
	uint8_t *payload;
	int64_t t_recv_ns;    /* when the net thread had the whole frame */
	struct srv_msg *next;
};

/* A reusable host buffer for the tensor of a reply: pinned where the
 * backend can pin (the device-to-host copy then runs at the bus's speed),
 * warm (no page faults on reuse).  The engine takes one (srv_stage_get), the
 * frame is written straight from it, and the net thread puts it back on the
 * pool; only the engine allocates or frees them (pinned memory belongs to
 * its CUDA context). */
struct srv_stage {
	void *p;
	size_t cap;
	bool pinned;
	struct srv_stage *next;
};

/* One encoded frame for a connection: head, then an optional body that is
 * written straight from its own buffer (big tensors are not copied twice). */
struct srv_out {
	uint64_t conn;
	uint8_t *head;
	size_t head_len;
	uint8_t *body;        /* malloc'd, or inside stage */
	size_t body_len;
	struct srv_stage *stage; /* goes back to the pool once written */
	/* A body the engine fills while the net thread writes it (a big tensor
	 * read in pieces): the net thread writes body[0..ready) only; failed:
	 * the rest never comes (the connection is closed after what was
	 * written).  refs: the net thread's, and the engine's while it fills;
	 * srv_out_free drops one.  All three are atomic. */
	size_t ready;
	bool failed;
	int refs;
	bool close_after;     /* an error that ends the connection */
	bool reply;           /* answers a request (frees an in-flight slot) */
	struct srv_out *next;
};

/* A shared-memory segment of one connection (shm.c): the client maps it by
 * name, reads' tensors are copied into it.  named: the name is still in
 * /dev/shm (unlinked once the client answered, after SRV_SHM_UNLINK_MS, or
 * when the connection goes). */
struct srv_shm {
	char name[48];
	int fd;
	void *p;
	size_t size;
	struct djn_backend *be; /* p is page-locked by it when registered */
	bool registered;
	bool named;
	bool mapped;          /* the client said it mapped it: reads use it */
	int64_t t_made;
};

#define SRV_SHM_UNLINK_MS 5000

struct served_model {
	char *path, *tok;     /* as given on the command line */
	struct djn_model *m;
};

struct srv_conf {
	char *listen;         /* "HOST:PORT" */
	char *unix_path;
	char *token;          /* access token (from --token-file), or NULL */
	char *port_file;      /* write the bound port here (tests use port 0) */
	long reap_after_s;    /* free detached clients' state after this (0: never) */
	long read_timeout_ms; /* a frame (or the handshake) must complete in this */
	long idle_timeout_ms; /* close connections silent this long (0: never) */
	size_t max_frame;
	int max_clients;
	int queue_cap;        /* requests waiting for the engine */
	int max_inflight;     /* per connection */
	char *device;
};

struct srv {
	struct srv_conf conf;
	struct djn_backend *be;
	struct served_model *models;
	int n_models;

	/* in: net -> engine */
	pthread_mutex_t in_mu;
	pthread_cond_t in_cv;
	struct srv_msg *in_head, *in_tail;
	int in_n_frames;      /* frames waiting (CLOSE messages are not bounded) */

	/* out: engine -> net */
	pthread_mutex_t out_mu;
	struct srv_out *out_head, *out_tail;
	int wake_fd;          /* eventfd: written after each push onto out */
	struct srv_stage *stage_free; /* the pool (under out_mu) */

	/* the engine's request in flight, for interrupts */
	pthread_mutex_t exec_mu;
	uint64_t exec_conn;   /* 0: none */

	volatile int stop;    /* SIGINT/SIGTERM: both loops end */
	int listen_fd;
	int64_t t0_ns;
};

int64_t srv_now_ns(void);

/* engine.c */
void srv_engine_loop(struct srv *srv);
/* Called by the net thread: interrupt the run in flight for conn, if any. */
void srv_interrupt_conn(struct srv *srv, uint64_t conn);

/* engine.c: a staging buffer of at least bytes (NULL: no host memory);
 * srv_stage_drain frees the pool (at the end, both threads stopped). */
struct srv_stage *srv_stage_get(struct srv *srv, size_t bytes);
void srv_stage_drain(struct srv *srv);
/* Back to the pool, unsent (the engine's own use of one). */
void srv_stage_put(struct srv *srv, struct srv_stage *st);

/* shm.c: a segment of at least bytes (NULL: err says why); grow remaps it
 * larger (the same object: the client remaps its fd); unlink removes the
 * name; free unmaps, closes and unlinks. */
struct srv_shm *srv_shm_new(struct djn_backend *be, size_t bytes, struct djn_err *err);
enum djn_status srv_shm_grow(struct srv_shm *sg, size_t bytes, struct djn_err *err);
void srv_shm_unlink(struct srv_shm *sg);
void srv_shm_free(struct srv_shm *sg);

/* net.c */
enum djn_status srv_listen(struct srv *srv, struct djn_err *err);
void *srv_net_thread(void *arg);
/* Called by the engine: queue a frame (taking the buffers) and wake the net loop. */
void srv_send(struct srv *srv, struct srv_out *o);
/* Encode msg (+ attachments) into a srv_out for conn; attachments are
 * copied into one body buffer unless body is given (taken). */
struct srv_out *srv_out_new(uint64_t conn, cJSON *msg, const struct djn_att_out *att,
			    int n_att);
/* An error frame {"type":"error","error":msg} (id when the request had one). */
struct srv_out *srv_out_error(uint64_t conn, double id, const char *msg, bool close_after);
/* Drop a reference to a frame (see refs); at the last one it is freed and
 * its staging buffer goes back to the pool. */
void srv_out_free(struct srv *srv, struct srv_out *o);
/* Tell the net loop that something changed (a piece of a body is ready). */
void srv_wake(struct srv *srv);

#endif
