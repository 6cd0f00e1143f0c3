/* engine.c - the server's engine side: the one thread that touches models,
 * shells and sessions.  Each client owns a shell (the same command table as
 * the local one) over the served models; a command's output, text or --json,
 * is captured and sent back, so a transcript reads the same remote as local.
 * A client that goes away keeps its shell (sessions paused) until it
 * reattaches with its token or the reaper frees it. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "djinn/sched.h"
#include "server/server_impl.h"
#include "shell/shell_impl.h"

struct chunk {
	int fd; /* 1 out, 2 err */
	char *p;
	size_t len, cap;
};

struct saved_npy {
	char *path;
	float *v;
	int rows, cols;
};

struct client {
	char token[33];
	uint64_t conn;        /* 0: detached */
	int64_t detached_at;
	struct djn_shell *sh;
	struct djn_shell_host host;
	struct srv *srv;
	/* the request in flight: its output, saves, and the files it carries */
	struct chunk *chunks;
	int n_chunks;
	struct saved_npy *saves;
	int n_saves;
	const struct djn_frame *req;
	double stream_id;     /* the cmd executing (its output streams), or -1 */
	int64_t stream_after; /* output written after this streams at once */
	int proto;            /* the version its hello asked for */
	struct srv_shm *shm;  /* this connection's segment (hello "shm"), or NULL */
	long n_requests;
	struct client *next;
};

static struct client *clients;

/* ------------------------------------------------------------ capture */

struct cap {
	struct client *cl;
	int fd;
};

/* A command's output, stdout and stderr in the order written, as one
 * attachment cut into segments [fd, bytes] (added to obj); the chunks are
 * emptied.  *out: the bytes (the caller frees them); returns their count. */
static size_t take_output(struct client *cl, cJSON *obj, char **out)
{
	cJSON *segs;
	size_t len = 0;

	*out = NULL;
	if (!cl->n_chunks)
		return 0;
	segs = cJSON_AddArrayToObject(obj, "segments");
	for (int i = 0; i < cl->n_chunks; i++)
		len += cl->chunks[i].len;
	*out = djn_xmalloc(len + 1);
	len = 0;
	for (int i = 0; i < cl->n_chunks; i++) {
		cJSON *sg = cJSON_CreateArray();
		cJSON_AddItemToArray(sg, cJSON_CreateNumber(cl->chunks[i].fd));
		cJSON_AddItemToArray(sg, cJSON_CreateNumber((double)cl->chunks[i].len));
		cJSON_AddItemToArray(segs, sg);
		memcpy(*out + len, cl->chunks[i].p, cl->chunks[i].len);
		len += cl->chunks[i].len;
		free(cl->chunks[i].p);
	}
	free(cl->chunks);
	cl->chunks = NULL;
	cl->n_chunks = 0;
	return len;
}

/* What a long command wrote so far goes to the client now, as an "output"
 * event (protocol 2): generated text appears token by token, as it does
 * locally.  A command's first STREAM_AFTER_MS of output stay in its result,
 * so a short command is still one frame. */
#define STREAM_AFTER_MS 10

static void stream_output(struct client *cl)
{
	cJSON *ev = cJSON_CreateObject();
	char *out;
	size_t len;

	cJSON_AddStringToObject(ev, "type", "output");
	cJSON_AddNumberToObject(ev, "id", cl->stream_id);
	len = take_output(cl, ev, &out);
	if (len) {
		struct djn_att_out a = { .name = "output", .dtype = "u8", .n_dims = 1,
					 .shape = { (int64_t)len }, .data = out, .bytes = len };
		srv_send(cl->srv, srv_out_new(cl->conn, ev, &a, 1));
	}
	free(out);
	cJSON_Delete(ev);
}

/* DJINN_SERVE_WRITE_DELAY_US: a test knob that slows every output write (and
 * so every streamed token), so a test can hang up in the middle of a run. */
static long write_delay_us = -1;

static ssize_t cap_write(void *cookie, const char *p, size_t n)
{
	struct cap *c = cookie;

	if (write_delay_us < 0) {
		const char *e = getenv("DJINN_SERVE_WRITE_DELAY_US");
		write_delay_us = e ? atol(e) : 0;
	}
	if (write_delay_us > 0)
		usleep((useconds_t)write_delay_us);
	struct client *cl = c->cl;
	struct chunk *ch = cl->n_chunks ? &cl->chunks[cl->n_chunks - 1] : NULL;

	if (!ch || ch->fd != c->fd) {
		cl->chunks = djn_xrealloc(cl->chunks, sizeof(*cl->chunks) * (size_t)(cl->n_chunks + 1));
		ch = &cl->chunks[cl->n_chunks++];
		memset(ch, 0, sizeof(*ch));
		ch->fd = c->fd;
	}
	if (ch->len + n > ch->cap) {
		ch->cap = (ch->len + n) * 2 + 256;
		ch->p = djn_xrealloc(ch->p, ch->cap);
	}
	memcpy(ch->p + ch->len, p, n);
	ch->len += n;
	if (cl->stream_id >= 0 && srv_now_ns() >= cl->stream_after)
		stream_output(cl);
	return (ssize_t)n;
}

static int cap_close(void *cookie)
{
	free(cookie);
	return 0;
}

static FILE *cap_open(struct client *cl, int fd)
{
	struct cap *c = djn_xcalloc(1, sizeof(*c));
	cookie_io_functions_t io = { .write = cap_write, .close = cap_close };
	FILE *f;

	c->cl = cl;
	c->fd = fd;
	if (!(f = fopencookie(c, "w", io)))
		DJN_ASSERT(!"fopencookie");
	setvbuf(f, NULL, _IONBF, 0); /* every write in order, out and err interleaved */
	return f;
}

static void request_reset(struct client *cl)
{
	for (int i = 0; i < cl->n_chunks; i++)
		free(cl->chunks[i].p);
	free(cl->chunks);
	cl->chunks = NULL;
	cl->n_chunks = 0;
	for (int i = 0; i < cl->n_saves; i++) {
		free(cl->saves[i].path);
		free(cl->saves[i].v);
	}
	free(cl->saves);
	cl->saves = NULL;
	cl->n_saves = 0;
	cl->req = NULL;
}

/* --------------------------------------------------------- shell hooks */

static const char *base_name(const char *p)
{
	const char *s = p ? strrchr(p, '/') : NULL;

	return s ? s + 1 : p;
}

static struct djn_model *host_open_model(void *ud, const char *path, const char *tok,
					 struct djn_err *err)
{
	struct client *cl = ud;
	struct srv *srv = cl->srv;
	char list[512] = "";

	for (int i = 0; i < srv->n_models; i++) {
		struct served_model *sm = &srv->models[i];
		if (strcmp(path, sm->path) && strcmp(base_name(path), base_name(sm->path)))
			continue;
		if (tok && (!sm->tok || strcmp(base_name(tok), base_name(sm->tok)))) {
			djn_err_set(err, DJN_ERR_INVALID,
				    "load: the server serves '%s' with %s%s, not tokenizer '%s'",
				    sm->path, sm->tok ? "tokenizer " : "its own tokenizer",
				    sm->tok ? sm->tok : "", tok);
			return NULL;
		}
		djn_model_ref(sm->m);
		return sm->m;
	}
	for (int i = 0; i < srv->n_models; i++)
		snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i ? ", " : "",
			 srv->models[i].path);
	djn_err_set(err, DJN_ERR_NOTFOUND, "load: '%s' is not served here (the server has: %s)",
		    path, srv->n_models ? list : "none");
	return NULL;
}

static enum djn_status host_npy_load(void *ud, const char *path, float **v, int *n,
				     struct djn_err *err)
{
	struct client *cl = ud;

	for (int i = 0; cl->req && i < cl->req->n_att; i++) {
		const struct djn_frame_att *a = &cl->req->att[i];
		if (!strcmp(a->name, path) && !strcmp(a->dtype, "f32") && a->n_dims == 1 &&
		    a->bytes <= ((size_t)1 << 30)) {
			*n = (int)(a->bytes / 4);
			*v = djn_xmalloc(a->bytes + 4);
			memcpy(*v, a->data, a->bytes);
			return DJN_OK;
		}
		if (!strncmp(a->name, "err:", 4) && !strcmp(a->name + 4, path))
			return djn_err_set(err, DJN_ERR_IO, "%.*s", (int)(a->bytes < 500 ? a->bytes : 500),
					   (const char *)a->data);
	}
	return djn_err_set(err, DJN_ERR_NOTFOUND,
			   "%s: the client sent no such file (is it readable there?)", path);
}

static enum djn_status host_npy_save(void *ud, const char *path, const float *v, int rows,
				     int cols, struct djn_err *err)
{
	struct client *cl = ud;
	struct saved_npy *s;

	cl->saves = djn_xrealloc(cl->saves, sizeof(*cl->saves) * (size_t)(cl->n_saves + 1));
	s = &cl->saves[cl->n_saves++];
	s->path = djn_xstrdup(path);
	s->rows = rows;
	s->cols = cols;
	s->v = djn_xmalloc(sizeof(float) * (size_t)rows * (size_t)cols);
	memcpy(s->v, v, sizeof(float) * (size_t)rows * (size_t)cols);
	(void)err;
	return DJN_OK;
}

/* ------------------------------------------------------------- clients */

static void make_token(char out[33])
{
	unsigned char b[16];
	size_t got = 0;

	while (got < sizeof(b)) {
		ssize_t n = getrandom(b + got, sizeof(b) - got, 0);
		if (n < 0 && errno != EINTR)
			DJN_ASSERT(!"getrandom");
		if (n > 0)
			got += (size_t)n;
	}
	for (int i = 0; i < 16; i++)
		snprintf(out + 2 * i, 3, "%02x", b[i]);
}

static struct client *client_new(struct srv *srv, uint64_t conn)
{
	struct client *cl = djn_xcalloc(1, sizeof(*cl));

	make_token(cl->token);
	cl->conn = conn;
	cl->stream_id = -1;
	cl->srv = srv;
	cl->host = (struct djn_shell_host){ .open_model = host_open_model,
					    .npy_load = host_npy_load,
					    .npy_save = host_npy_save,
					    .ud = cl };
	cl->sh = djn_shell_new(cap_open(cl, 1), cap_open(cl, 2));
	cl->sh->batch = true;
	cl->sh->be = srv->be;
	cl->sh->be_shared = true;
	cl->sh->host = &cl->host;
	free(cl->sh->device);
	cl->sh->device = djn_xstrdup(srv->conf.device);
	cl->next = clients;
	clients = cl;
	return cl;
}

static void client_free(struct client *cl)
{
	FILE *out = cl->sh->out, *err = cl->sh->err;

	for (struct client **p = &clients; *p; p = &(*p)->next) {
		if (*p == cl) {
			*p = cl->next;
			break;
		}
	}
	srv_shm_free(cl->shm);
	djn_shell_free(cl->sh);
	fclose(out);
	fclose(err);
	request_reset(cl);
	free(cl);
}

static struct client *client_of_conn(uint64_t conn)
{
	for (struct client *cl = clients; cl; cl = cl->next)
		if (cl->conn == conn)
			return cl;
	return NULL;
}

/* The client other than `me` whose shell has a session called name. */
static struct client *session_owner(struct client *me, const char *name)
{
	for (struct client *cl = clients; cl; cl = cl->next) {
		if (cl == me)
			continue;
		for (int i = 0; i < cl->sh->n_sess; i++)
			if (!strcmp(cl->sh->sess[i].name, name))
				return cl;
	}
	return NULL;
}

static struct sh_session *own_session(struct client *cl, const char *name)
{
	for (int i = 0; i < cl->sh->n_sess; i++)
		if (!strcmp(cl->sh->sess[i].name, name))
			return &cl->sh->sess[i];
	return NULL;
}

/* ---------------------------------------------------- staging buffers */

#define STAGE_KEEP 4 /* free buffers kept for reuse; more are freed */

static void stage_free(struct srv *srv, struct srv_stage *st)
{
	srv->be->i->host_free(srv->be, st->p, st->pinned);
	free(st);
}

struct srv_stage *srv_stage_get(struct srv *srv, size_t bytes)
{
	struct srv_stage **best = NULL, *st, *extra = NULL;
	int n = 0;

	pthread_mutex_lock(&srv->out_mu);
	for (struct srv_stage **p = &srv->stage_free; *p; p = &(*p)->next) {
		n++;
		if ((*p)->cap >= bytes && (!best || (*p)->cap < (*best)->cap))
			best = p;
	}
	if (best) {
		st = *best;
		*best = st->next;
	} else {
		st = NULL;
		if (n >= STAGE_KEEP) { /* none fits: the pool makes room for one that does */
			extra = srv->stage_free;
			srv->stage_free = extra->next;
		}
	}
	pthread_mutex_unlock(&srv->out_mu);
	if (extra)
		stage_free(srv, extra);
	if (st)
		return st;
	st = djn_xcalloc(1, sizeof(*st));
	st->cap = bytes < ((size_t)1 << 20) ? (size_t)1 << 20 : bytes;
	if (!(st->p = srv->be->i->host_alloc(srv->be, st->cap, &st->pinned))) {
		free(st);
		return NULL;
	}
	return st;
}

void srv_stage_put(struct srv *srv, struct srv_stage *st)
{
	pthread_mutex_lock(&srv->out_mu);
	st->next = srv->stage_free;
	srv->stage_free = st;
	pthread_mutex_unlock(&srv->out_mu);
}

void srv_stage_drain(struct srv *srv)
{
	while (srv->stage_free) {
		struct srv_stage *st = srv->stage_free;
		srv->stage_free = st->next;
		stage_free(srv, st);
	}
}

/* ----------------------------------------------------------- replying */

static double us_since(int64_t t)
{
	return (double)(srv_now_ns() - t) / 1000.0;
}

static void add_phases(cJSON *res, double queue_us, double exec_us, double result_us)
{
	cJSON *ph = cJSON_AddObjectToObject(res, "phases");

	cJSON_AddNumberToObject(ph, "queue_us", queue_us);
	cJSON_AddNumberToObject(ph, "exec_us", exec_us);
	cJSON_AddNumberToObject(ph, "result_us", result_us);
}

static void reply(struct srv *srv, uint64_t conn, cJSON *res, const struct djn_att_out *att,
		  int n_att)
{
	struct srv_out *o = srv_out_new(conn, res, att, n_att);

	o->reply = true;
	srv_send(srv, o);
}

static void reply_error(struct srv *srv, uint64_t conn, double id, const char *msg)
{
	struct srv_out *o = srv_out_error(conn, id, msg, false);

	o->reply = true;
	srv_send(srv, o);
}

static const char *state_name(enum djn_run_state st)
{
	return st == DJN_RUN_PAUSED ? "paused" : st == DJN_RUN_DONE ? "done" : "idle";
}

/* Where the client's current session stands after a request. */
static cJSON *after_json(struct djn_shell *sh)
{
	cJSON *o = cJSON_CreateObject();
	struct sh_session *ss = sh_cur(sh);

	if (!ss)
		return o;
	cJSON_AddStringToObject(o, "session", ss->name);
	cJSON_AddStringToObject(o, "state", state_name(djn_session_state(ss->s)));
	if (djn_session_state(ss->s) != DJN_RUN_IDLE) {
		int n_total, n_prompt;
		djn_session_tokens(ss->s, &n_total, &n_prompt);
		cJSON_AddItemToObject(o, "cursor", sh_cursor_json(sh, ss->s));
		cJSON_AddNumberToObject(o, "n_tokens", n_total);
		cJSON_AddNumberToObject(o, "n_prompt", n_prompt);
	}
	return o;
}

struct where {
	struct djn_session *s;
	enum djn_run_state st;
	struct djn_cursor cur;
	int n_tokens;
};

static struct where where_now(struct djn_shell *sh)
{
	struct where w = { 0 };

	if ((w.s = sh_s(sh))) {
		w.st = djn_session_state(w.s);
		w.cur = djn_session_cursor(w.s);
		djn_session_tokens(w.s, &w.n_tokens, NULL);
	}
	return w;
}

/* gdb/MI's *stopped: pushed before the result when a command moved the run. */
static void push_stopped(struct srv *srv, struct client *cl, const struct where *before,
			 bool interrupted)
{
	struct djn_shell *sh = cl->sh;
	struct where w = where_now(sh);
	struct djn_bp_info hit;
	cJSON *ev;
	const char *reason = "step";

	if (!w.s || w.st == DJN_RUN_IDLE)
		return;
	if (w.s == before->s && w.st == before->st && w.n_tokens == before->n_tokens &&
	    w.cur.pos == before->cur.pos && w.cur.site == before->cur.site)
		return;
	if (w.st == DJN_RUN_DONE)
		reason = "done";
	else if (djn_session_last_hit_info(w.s, &hit))
		reason = hit.kind == DJN_BP_WATCH ? "watchpoint" : "breakpoint";
	else if (interrupted)
		reason = "interrupt";
	ev = cJSON_CreateObject();
	cJSON_AddStringToObject(ev, "type", "stopped");
	cJSON_AddStringToObject(ev, "reason", reason);
	if (strcmp(reason, "breakpoint") == 0 || strcmp(reason, "watchpoint") == 0)
		cJSON_AddNumberToObject(ev, "bp", hit.id);
	cJSON_AddStringToObject(ev, "session", sh_cur(sh)->name);
	cJSON_AddItemToObject(ev, "cursor", sh_cursor_json(sh, w.s));
	srv_send(srv, srv_out_new(cl->conn, ev, NULL, 0));
	cJSON_Delete(ev);
}

/* ------------------------------------------------------------ requests */

static void set_exec(struct srv *srv, uint64_t conn)
{
	pthread_mutex_lock(&srv->exec_mu);
	srv->exec_conn = conn;
	pthread_mutex_unlock(&srv->exec_mu);
}

void srv_interrupt_conn(struct srv *srv, uint64_t conn)
{
	pthread_mutex_lock(&srv->exec_mu);
	if (conn && srv->exec_conn == conn) {
		struct djn_session *s = djn_shell_running;
		djn_shell_sigint = 1;
		if (s)
			djn_session_interrupt(s);
	}
	pthread_mutex_unlock(&srv->exec_mu);
}

/* Session names a command line names, checked against other clients'
 * sessions, so a client is told plainly that it cannot touch them. */
static const char *foreign_session(struct client *cl, const char *line)
{
	char **w = NULL, msg[64];
	int *off = NULL, n = djn_shell_split(line, &w, &off, msg, sizeof(msg));
	const char *name = NULL;
	static char found[128];

	if (n >= 2 && !strcmp(w[0], "session")) {
		const char *arg = n >= 3 && (!strcmp(w[1], "swapin") || !strcmp(w[1], "swapout"))
					  ? w[2]
				  : n == 2 ? w[1] : NULL;
		if (arg && !own_session(cl, arg) && session_owner(cl, arg)) {
			snprintf(found, sizeof(found), "%s", arg);
			name = found;
		}
	}
	djn_shell_split_free(n < 0 ? 0 : n, w, off);
	return name;
}

static void do_cmd(struct srv *srv, struct client *cl, struct srv_msg *m, double id)
{
	struct djn_shell *sh = cl->sh;
	const cJSON *line = cJSON_GetObjectItemCaseSensitive(m->f.json, "line");
	const cJSON *json = cJSON_GetObjectItemCaseSensitive(m->f.json, "json");
	struct djn_att_out att[DJN_FRAME_MAX_ATT];
	int n_att = 0;
	long failed0 = sh->n_failed;
	double queue_us = (double)(srv_now_ns() - m->t_recv_ns) / 1000.0, exec_us;
	int64_t t;
	struct where before;
	const char *foreign;
	cJSON *res;
	bool interrupted = false;

	if (!cJSON_IsString(line)) {
		reply_error(srv, cl->conn, id, "cmd: \"line\" must be a string");
		return;
	}
	if (cJSON_IsBool(json))
		sh->json = cJSON_IsTrue(json);
	request_reset(cl);
	cl->req = &m->f;
	before = where_now(sh);
	t = srv_now_ns();
	if (sh->block.kind == SH_BLOCK_NONE && (foreign = foreign_session(cl, line->valuestring))) {
		char msg[256];
		snprintf(msg, sizeof(msg),
			 "session '%s' belongs to another client; it cannot be read, steered or "
			 "freed from here (attach with its client's token)", foreign);
		if (sh->json) {
			cJSON *o = cJSON_CreateObject();
			char *s;
			cJSON_AddStringToObject(o, "cmd", "session");
			cJSON_AddBoolToObject(o, "ok", false);
			cJSON_AddStringToObject(o, "error", msg);
			s = cJSON_PrintUnformatted(o);
			fprintf(sh->out, "%s\n", s);
			free(s);
			cJSON_Delete(o);
		} else {
			fprintf(sh->err, "%s\n", msg);
		}
		sh->n_failed++;
	} else {
		set_exec(srv, cl->conn);
		sh->resumed = false;
		if (cl->proto >= 2 && cl->conn) {
			cl->stream_id = id;
			cl->stream_after = t + STREAM_AFTER_MS * 1000000LL;
		}
		djn_shell_exec(sh, line->valuestring);
		cl->stream_id = -1;
		interrupted = djn_shell_sigint;
		set_exec(srv, 0);
		djn_shell_sigint = 0;
		if (cl->conn)
			push_stopped(srv, cl, &before, interrupted);
	}
	exec_us = us_since(t);
	cl->n_requests++;

	t = srv_now_ns();
	res = cJSON_CreateObject();
	cJSON_AddStringToObject(res, "type", "result");
	cJSON_AddNumberToObject(res, "id", id);
	cJSON_AddBoolToObject(res, "ok", sh->n_failed == failed0);
	cJSON_AddNumberToObject(res, "n_failed", (double)(sh->n_failed - failed0));
	cJSON_AddBoolToObject(res, "json", sh->json);
	cJSON_AddBoolToObject(res, "block", sh->block.kind != SH_BLOCK_NONE);
	cJSON_AddBoolToObject(res, "quit", sh->quit);
	cJSON_AddItemToObject(res, "after", after_json(sh));
	/* the output not streamed yet */
	char *out = NULL;
	size_t out_len = take_output(cl, res, &out);
	if (out_len)
		att[n_att++] = (struct djn_att_out){ .name = "output", .dtype = "u8", .n_dims = 1,
						     .shape = { (int64_t)out_len }, .data = out,
						     .bytes = out_len };
	char names[DJN_FRAME_MAX_ATT][300];
	for (int i = 0; i < cl->n_saves && n_att < DJN_FRAME_MAX_ATT; i++) {
		struct saved_npy *s = &cl->saves[i];
		snprintf(names[n_att], sizeof(names[0]), "save:%s", s->path);
		att[n_att] = (struct djn_att_out){ .name = names[n_att], .dtype = "f32", .n_dims = 2,
						   .shape = { s->rows, s->cols }, .data = s->v,
						   .bytes = sizeof(float) * (size_t)s->rows *
							    (size_t)s->cols };
		n_att++;
	}
	add_phases(res, queue_us, exec_us, us_since(t));
	if (cl->conn)
		reply(srv, cl->conn, res, att, n_att);
	cJSON_Delete(res);
	free(out);
	request_reset(cl);
	if (sh->quit) /* the client said quit: its sessions go, as a local shell's do */
		client_free(cl);
}

/* The session a read or steer request names (default: the current one). */
static struct sh_session *req_session(struct srv *srv, struct client *cl, const cJSON *j,
				      double id)
{
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(j, "session");
	struct sh_session *ss;
	char msg[256];

	if (!cl->sh->m) {
		reply_error(srv, cl->conn, id, "No model loaded.  Use \"load PATH\".");
		return NULL;
	}
	if (!name || cJSON_IsNull(name))
		return sh_cur(cl->sh);
	if (!cJSON_IsString(name)) {
		reply_error(srv, cl->conn, id, "\"session\" must be a string");
		return NULL;
	}
	if ((ss = own_session(cl, name->valuestring)))
		return ss;
	if (session_owner(cl, name->valuestring))
		snprintf(msg, sizeof(msg),
			 "session '%s' belongs to another client; it cannot be read, steered or "
			 "freed from here (attach with its client's token)", name->valuestring);
	else
		snprintf(msg, sizeof(msg), "no session '%s'", name->valuestring);
	reply_error(srv, cl->conn, id, msg);
	return NULL;
}

static int req_site(struct srv *srv, struct client *cl, const cJSON *j, struct djn_session *s,
		    double id)
{
	const cJSON *site = cJSON_GetObjectItemCaseSensitive(j, "site");
	struct djn_cursor cur = djn_session_cursor(s);
	int k;
	char msg[160];

	if (!site || cJSON_IsNull(site)) {
		if (cur.site < 0)
			reply_error(srv, cl->conn, id, "read: the cursor is before any site; name one");
		return cur.site;
	}
	if (!cJSON_IsString(site) || (k = djn_site_find(&cl->sh->m->cfg, site->valuestring)) < 0) {
		snprintf(msg, sizeof(msg), "no site '%.100s' (see \"info sites\")",
			 cJSON_IsString(site) ? site->valuestring : "?");
		reply_error(srv, cl->conn, id, msg);
		return -1;
	}
	return k;
}

/* A tensor bigger than this is copied and sent in pieces of about this
 * many bytes: the net thread writes each piece while the next is copied.
 * DJINN_SERVE_READ_PIECE: a test knob (smaller pieces, so a test's tensor
 * takes this path). */
static size_t read_piece(void)
{
	static size_t piece;

	if (!piece) {
		const char *e = getenv("DJINN_SERVE_READ_PIECE");
		piece = e && atol(e) > 0 ? (size_t)atol(e) : (size_t)1 << 20;
	}
	return piece;
}

/* DJINN_SERVE_SHM_STAGE=1: a shared-memory read goes through the pinned
 * staging buffer and a memcpy into the segment, instead of the backend's
 * copy straight into the segment (page-locked by the backend where it can,
 * srv_shm_grow): which is faster on a GPU is for bench/remote_gpu.sh to say
 * (on the CPU backend both are one memcpy, and staging is a second). */
static bool shm_staged(void)
{
	static int on = -1;

	if (on < 0) {
		const char *e = getenv("DJINN_SERVE_SHM_STAGE");
		on = e && *e && strcmp(e, "0");
	}
	return on;
}

/* A read for a client that mapped its segment: the rows go straight into
 * it (grown when the tensor is larger) and the reply carries only where
 * they are.  false: the segment cannot hold it (the socket takes it). */
static bool read_shm(struct srv *srv, struct client *cl, struct sh_session *ss, int site,
		     int rows, int cols, double id, double queue_us, int64_t t)
{
	size_t bytes = sizeof(float) * (size_t)cols * (size_t)rows;
	struct djn_err err = { 0 };
	cJSON *res, *o, *sh;
	char name[40];
	double exec_us;

	if (srv_shm_grow(cl->shm, bytes, &err)) {
		if (getenv("DJINN_SERVE_LOG"))
			fprintf(stderr, "djinn serve: read over the socket: %s\n", err.msg);
		return false;
	}
	if (shm_staged()) {
		struct srv_stage *st = srv_stage_get(srv, bytes);
		if (!st)
			return false;
		if (djn_session_read_rows(ss->s, site, 0, rows, st->p)) {
			srv_stage_put(srv, st);
			reply_error(srv, cl->conn, id, djn_session_errmsg(ss->s));
			return true;
		}
		memcpy(cl->shm->p, st->p, bytes);
		srv_stage_put(srv, st);
	} else if (djn_session_read_rows(ss->s, site, 0, rows, cl->shm->p)) {
		reply_error(srv, cl->conn, id, djn_session_errmsg(ss->s));
		return true;
	}
	exec_us = us_since(t);
	t = srv_now_ns();
	djn_site_name(&cl->sh->m->cfg, site, name, sizeof(name));
	res = cJSON_CreateObject();
	cJSON_AddStringToObject(res, "type", "result");
	cJSON_AddNumberToObject(res, "id", id);
	cJSON_AddBoolToObject(res, "ok", true);
	cJSON_AddStringToObject(res, "site", name);
	o = cJSON_AddObjectToObject(res, "shm");
	cJSON_AddStringToObject(o, "name", name);
	cJSON_AddStringToObject(o, "dtype", "f32");
	sh = cJSON_AddArrayToObject(o, "shape");
	cJSON_AddItemToArray(sh, cJSON_CreateNumber(rows));
	cJSON_AddItemToArray(sh, cJSON_CreateNumber(cols));
	cJSON_AddNumberToObject(o, "offset", 0);
	cJSON_AddNumberToObject(o, "bytes", (double)bytes);
	cJSON_AddNumberToObject(o, "size", (double)cl->shm->size);
	add_phases(res, queue_us, exec_us, us_since(t));
	reply(srv, cl->conn, res, NULL, 0);
	cJSON_Delete(res);
	return true;
}

/* The client's answer to the welcome's segment: "mapped" true (reads use
 * it) or false (it could not: reads go on the socket).  Either way the name
 * leaves /dev/shm now. */
static void do_shm(struct srv *srv, struct client *cl, struct srv_msg *m, double id)
{
	const cJSON *mapped = cJSON_GetObjectItemCaseSensitive(m->f.json, "mapped");
	cJSON *res;

	if (!cl->shm) {
		reply_error(srv, cl->conn, id, "shm: this connection has no shared-memory segment");
		return;
	}
	if (!cJSON_IsBool(mapped)) {
		reply_error(srv, cl->conn, id, "shm: \"mapped\" must be true or false");
		return;
	}
	srv_shm_unlink(cl->shm);
	if (cJSON_IsTrue(mapped)) {
		cl->shm->mapped = true;
	} else {
		srv_shm_free(cl->shm);
		cl->shm = NULL;
	}
	res = cJSON_CreateObject();
	cJSON_AddStringToObject(res, "type", "result");
	cJSON_AddNumberToObject(res, "id", id);
	cJSON_AddBoolToObject(res, "ok", true);
	cJSON_AddBoolToObject(res, "shm", cl->shm != NULL);
	reply(srv, cl->conn, res, NULL, 0);
	cJSON_Delete(res);
}

/* Read a site's tensor: it goes back as one f32 attachment, unconverted,
 * copied once, from the device into a staging buffer (pinned, reused), and
 * written to the socket straight from there.  A big one is copied in
 * pieces of rows, each written while the next is copied (its phases: the
 * copy overlaps the way back, so exec_us is the time to the first piece). */
static void do_read(struct srv *srv, struct client *cl, struct srv_msg *m, double id)
{
	struct sh_session *ss = req_session(srv, cl, m->f.json, id);
	double queue_us = (double)(srv_now_ns() - m->t_recv_ns) / 1000.0, exec_us;
	int64_t t = srv_now_ns();
	int site, rows, cols, step;
	size_t bytes, row_bytes, body;
	struct srv_stage *stage;
	cJSON *res;
	struct srv_out *o;
	char name[40];
	bool pieces;

	if (!ss || (site = req_site(srv, cl, m->f.json, ss->s, id)) < 0)
		return;
	if (djn_session_site_shape(ss->s, site, &rows, &cols)) {
		reply_error(srv, cl->conn, id, djn_session_errmsg(ss->s));
		return;
	}
	row_bytes = sizeof(float) * (size_t)cols;
	bytes = row_bytes * (size_t)rows;
	if (cl->shm && cl->shm->mapped && read_shm(srv, cl, ss, site, rows, cols, id, queue_us, t))
		return;
	step = read_piece() / row_bytes > 0 ? (int)(read_piece() / row_bytes) : 1;
	pieces = step < rows;
	if (!(stage = srv_stage_get(srv, bytes))) {
		char msg[600];
		snprintf(msg, sizeof(msg), "read: no host buffer of %zu bytes: %.500s", bytes,
			 srv->be->err.msg[0] ? srv->be->err.msg : "out of host memory");
		reply_error(srv, cl->conn, id, msg);
		return;
	}
	o = djn_xcalloc(1, sizeof(*o));
	o->conn = cl->conn;
	o->reply = true;
	o->stage = stage;
	o->body = stage->p;
	/* a small one whole, before anything is sent; a big one's first piece
	 * (an error then is still a clean error reply) */
	if (djn_session_read_rows(ss->s, site, 0, pieces ? step : rows, stage->p)) {
		srv_out_free(srv, o);
		reply_error(srv, cl->conn, id, djn_session_errmsg(ss->s));
		return;
	}
	exec_us = us_since(t);
	t = srv_now_ns();
	djn_site_name(&cl->sh->m->cfg, site, name, sizeof(name));
	struct djn_att_out a = { .name = name, .dtype = "f32", .n_dims = 2, .shape = { rows, cols },
				 .bytes = bytes };
	res = cJSON_CreateObject();
	cJSON_AddStringToObject(res, "type", "result");
	cJSON_AddNumberToObject(res, "id", id);
	cJSON_AddBoolToObject(res, "ok", true);
	cJSON_AddStringToObject(res, "site", name);
	add_phases(res, queue_us, exec_us, us_since(t));
	if (djn_frame_header(res, &a, 1, &o->head, &o->head_len, &body, NULL)) {
		srv_out_free(srv, o);
		cJSON_Delete(res);
		reply_error(srv, cl->conn, id, "read: the reply does not fit in a frame");
		return;
	}
	o->body_len = body;
	cJSON_Delete(res);
	if (!pieces) {
		srv_send(srv, o);
		return;
	}
	/* the net thread holds one reference, this loop the other: a client
	 * that hangs up meanwhile frees nothing under it */
	o->refs = 2;
	o->ready = row_bytes * (size_t)step;
	srv_send(srv, o);
	for (int r = step; r < rows; r += step) {
		int n = rows - r < step ? rows - r : step;
		if (djn_session_read_rows(ss->s, site, r, n, (float *)(o->body + row_bytes * (size_t)r))) {
			/* the head is out: the connection ends after what was sent
			 * (the client's state stays, as after any hang-up) */
			__atomic_store_n(&o->failed, true, __ATOMIC_RELEASE);
			break;
		}
		__atomic_store_n(&o->ready, row_bytes * (size_t)(r + n), __ATOMIC_RELEASE);
		srv_wake(srv);
	}
	srv_wake(srv);
	srv_out_free(srv, o);
}

/* A steer from a script: the vector comes as an f32 attachment. */
static void do_steer(struct srv *srv, struct client *cl, struct srv_msg *m, double id)
{
	static const char *ops[] = { "add", "scale", "set", "zero" };
	const cJSON *j = m->f.json;
	struct sh_session *ss = req_session(srv, cl, j, id);
	const cJSON *pat = cJSON_GetObjectItemCaseSensitive(j, "pattern");
	const cJSON *op = cJSON_GetObjectItemCaseSensitive(j, "op");
	const cJSON *scale = cJSON_GetObjectItemCaseSensitive(j, "scale");
	const cJSON *persist = cJSON_GetObjectItemCaseSensitive(j, "persist");
	const cJSON *idx = cJSON_GetObjectItemCaseSensitive(j, "idx");
	const cJSON *pos = cJSON_GetObjectItemCaseSensitive(j, "pos");
	const float *v = NULL;
	int n_v = 0, k = -1, *ix = NULL, n_ix = 0, rc, pos0 = 0, pos1 = -1;
	cJSON *res;

	if (!ss)
		return;
	for (int i = 0; cJSON_IsString(op) && i < 4; i++)
		if (!strcmp(op->valuestring, ops[i]))
			k = i;
	if (!cJSON_IsString(pat) || k < 0) {
		reply_error(srv, cl->conn, id,
			    "steer: needs \"pattern\" and \"op\" (add, scale, set or zero)");
		return;
	}
	if (pos && !cJSON_IsNull(pos)) { /* [A, B): rows at positions A..B-1 (B -1: no end) */
		const cJSON *a = cJSON_GetArrayItem(pos, 0), *b = cJSON_GetArrayItem(pos, 1);
		if (!cJSON_IsArray(pos) || cJSON_GetArraySize(pos) != 2 || !cJSON_IsNumber(a) ||
		    !cJSON_IsNumber(b) || a->valuedouble < 0 || a->valuedouble > 1 << 30 ||
		    b->valuedouble > 1 << 30 || a->valuedouble != (int)a->valuedouble ||
		    b->valuedouble != (int)b->valuedouble ||
		    (b->valuedouble >= 0 && b->valuedouble <= a->valuedouble) ||
		    (b->valuedouble < 0 && b->valuedouble != -1)) {
			reply_error(srv, cl->conn, id,
				    "steer: \"pos\" must be [A, B] (positions A..B-1, B > A >= 0; B -1: "
				    "no end)");
			return;
		}
		pos0 = a->valueint;
		pos1 = b->valueint;
	}
	if (m->f.n_att) {
		if (strcmp(m->f.att[0].dtype, "f32") || m->f.att[0].bytes / 4 > 1 << 28) {
			reply_error(srv, cl->conn, id, "steer: the vector must be one f32 attachment");
			return;
		}
		v = (const float *)m->f.att[0].data; /* attachments are 4-aligned only by luck */
		n_v = (int)(m->f.att[0].bytes / 4);
	}
	float *vc = NULL;
	if (v) {
		vc = djn_xmalloc(sizeof(float) * (size_t)(n_v ? n_v : 1));
		memcpy(vc, v, sizeof(float) * (size_t)n_v);
	}
	if (cJSON_IsArray(idx)) {
		const cJSON *e;
		ix = djn_xcalloc((size_t)cJSON_GetArraySize(idx) + 1, sizeof(int));
		cJSON_ArrayForEach(e, idx)
			ix[n_ix++] = cJSON_IsNumber(e) ? e->valueint : -1;
	}
	rc = djn_steer_add_at(ss->s, pat->valuestring, (enum djn_steer_op)k, vc, n_v,
			      cJSON_IsNumber(scale) ? (float)scale->valuedouble : 1.0f, ix, n_ix,
			      cJSON_IsTrue(persist), pos0, pos1);
	free(vc);
	free(ix);
	if (rc < 0) {
		reply_error(srv, cl->conn, id, djn_session_errmsg(ss->s));
		return;
	}
	res = cJSON_CreateObject();
	cJSON_AddStringToObject(res, "type", "result");
	cJSON_AddNumberToObject(res, "id", id);
	cJSON_AddBoolToObject(res, "ok", true);
	cJSON_AddNumberToObject(res, "steer", rc);
	reply(srv, cl->conn, res, NULL, 0);
	cJSON_Delete(res);
}

/* The hello's tenant, class and slo_ms (each optional): NULL, or why not. */
static const char *hello_tenant(const cJSON *hello, const char **name, enum djn_class *cls,
				double *slo)
{
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(hello, "tenant");
	const cJSON *c = cJSON_GetObjectItemCaseSensitive(hello, "class");
	const cJSON *l = cJSON_GetObjectItemCaseSensitive(hello, "slo_ms");

	*name = NULL;
	*slo = 0;
	if (t && !cJSON_IsNull(t)) {
		size_t n = cJSON_IsString(t) ? strlen(t->valuestring) : 0;
		if (n == 0 || n > 63)
			return "handshake: \"tenant\" must be a name of 1 to 63 bytes";
		for (size_t i = 0; i < n; i++)
			if (t->valuestring[i] <= ' ' || t->valuestring[i] == 127)
				return "handshake: \"tenant\" has a space or control character";
		*name = t->valuestring;
	}
	if (c && !cJSON_IsNull(c) && (!cJSON_IsString(c) || !djn_class_parse(c->valuestring, cls)))
		return "handshake: \"class\" must be \"interactive\", \"standard\" or \"batch\"";
	if (l && !cJSON_IsNull(l)) {
		if (!cJSON_IsNumber(l) || !(l->valuedouble >= 0 && l->valuedouble <= 3.6e6))
			return "handshake: \"slo_ms\" must be a number of ms, 0 to 3600000";
		*slo = l->valuedouble;
	}
	return NULL;
}

static void do_hello(struct srv *srv, struct srv_msg *m)
{
	const cJSON *resume = cJSON_GetObjectItemCaseSensitive(m->f.json, "resume");
	struct client *cl = NULL;
	cJSON *w, *arr;
	bool resumed = false;
	const char *tenant, *bad;
	enum djn_class cls = DJN_CLASS_STANDARD;
	double slo;

	if ((bad = hello_tenant(m->f.json, &tenant, &cls, &slo))) {
		srv_send(srv, srv_out_error(m->conn, -1, bad, true));
		return;
	}
	if (resume && !cJSON_IsNull(resume)) {
		const char *why = NULL;
		if (!cJSON_IsString(resume)) {
			why = "handshake: \"resume\" must be a client token string";
		} else {
			for (cl = clients; cl; cl = cl->next)
				if (!strcmp(cl->token, resume->valuestring))
					break;
			if (!cl)
				why = "handshake: no client state for that token (never made, quit, or "
				      "reaped)";
			else if (cl->conn)
				why = "handshake: that client token is in use by another connection "
				      "(detach it first)";
		}
		if (why) {
			srv_send(srv, srv_out_error(m->conn, -1, why, true));
			return;
		}
		cl->conn = m->conn;
		cl->detached_at = 0;
		resumed = true;
	} else {
		cl = client_new(srv, m->conn);
	}
	/* its sessions are scheduled as this tenant (a resume may change it) */
	if (tenant)
		snprintf(cl->sh->tenant, sizeof(cl->sh->tenant), "%s", tenant);
	if (cJSON_GetObjectItemCaseSensitive(m->f.json, "class")) {
		cl->sh->tenant_class = (int)cls;
		cl->sh->tenant_class_set = true;
	}
	if (slo > 0)
		cl->sh->tenant_slo_ms = slo;
	{
		const cJSON *proto = cJSON_GetObjectItemCaseSensitive(m->f.json, "proto");
		cl->proto = cJSON_IsNumber(proto) ? proto->valueint : 1; /* checked by the net loop */
	}
	w = cJSON_CreateObject();
	cJSON_AddStringToObject(w, "type", "welcome");
	cJSON_AddNumberToObject(w, "proto", DJN_PROTO_VERSION);
	cJSON_AddStringToObject(w, "server", "djinn 0.1");
	cJSON_AddStringToObject(w, "token", cl->token);
	cJSON_AddBoolToObject(w, "resumed", resumed);
	cJSON_AddStringToObject(w, "device", srv->conf.device);
	cJSON_AddNumberToObject(w, "max_frame", (double)srv->conf.max_frame);
	cJSON_AddStringToObject(w, "tenant", cl->sh->tenant[0] ? cl->sh->tenant : "default");
	cJSON_AddStringToObject(w, "class", djn_class_name(cl->sh->tenant_class_set
								   ? (enum djn_class)cl->sh->tenant_class
								   : DJN_CLASS_STANDARD));
	cJSON_AddNumberToObject(w, "slo_ms", cl->sh->tenant_slo_ms);
	/* a segment for a client on this host that asked (the net loop checked
	 * "shm" is a boolean); it answers with a "shm" request */
	srv_shm_free(cl->shm);
	cl->shm = NULL;
	if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m->f.json, "shm"))) {
		struct djn_err err = { 0 };
		if ((cl->shm = srv_shm_new(srv->be, 0, &err))) {
			cJSON *o = cJSON_AddObjectToObject(w, "shm");
			cJSON_AddStringToObject(o, "name", cl->shm->name);
			cJSON_AddNumberToObject(o, "size", (double)cl->shm->size);
		} else {
			cJSON_AddBoolToObject(w, "shm", false);
			if (getenv("DJINN_SERVE_LOG"))
				fprintf(stderr, "djinn serve: no segment: %s\n", err.msg);
		}
	}
	arr = cJSON_AddArrayToObject(w, "models");
	for (int i = 0; i < srv->n_models; i++) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "name", srv->models[i].m->name);
		cJSON_AddStringToObject(o, "path", srv->models[i].path);
		if (srv->models[i].tok)
			cJSON_AddStringToObject(o, "tokenizer", srv->models[i].tok);
		cJSON_AddItemToArray(arr, o);
	}
	arr = cJSON_AddArrayToObject(w, "sessions");
	for (int i = 0; i < cl->sh->n_sess; i++)
		cJSON_AddItemToArray(arr, cJSON_CreateString(cl->sh->sess[i].name));
	if (cl->sh->m)
		cJSON_AddStringToObject(w, "model", cl->sh->m->name);
	cJSON_AddItemToObject(w, "after", after_json(cl->sh));
	srv_send(srv, srv_out_new(m->conn, w, NULL, 0));
	cJSON_Delete(w);
}

static void handle(struct srv *srv, struct srv_msg *m)
{
	struct client *cl;
	const cJSON *idj;
	double id;

	if (m->kind == SRV_MSG_CLOSE) {
		if ((cl = client_of_conn(m->conn))) {
			cl->conn = 0; /* its sessions wait, paused, for a reattach or the reaper */
			srv_shm_free(cl->shm); /* the segment was the connection's */
			cl->shm = NULL;
			cl->detached_at = srv_now_ns();
		}
		return;
	}
	if (!strcmp(m->f.type, "hello")) {
		do_hello(srv, m);
		return;
	}
	idj = cJSON_GetObjectItemCaseSensitive(m->f.json, "id");
	id = cJSON_IsNumber(idj) && idj->valuedouble >= 0 ? idj->valuedouble : -1;
	if (!(cl = client_of_conn(m->conn))) {
		reply_error(srv, m->conn, id, "no client state on this connection");
		return;
	}
	if (id < 0) {
		reply_error(srv, cl->conn, -1, "request: needs a numeric \"id\" >= 0");
		return;
	}
	if (!strcmp(m->f.type, "cmd")) {
		do_cmd(srv, cl, m, id);
	} else if (!strcmp(m->f.type, "read")) {
		do_read(srv, cl, m, id);
	} else if (!strcmp(m->f.type, "steer")) {
		do_steer(srv, cl, m, id);
	} else if (!strcmp(m->f.type, "shm")) {
		do_shm(srv, cl, m, id);
	} else if (!strcmp(m->f.type, "ping")) {
		cJSON *res = cJSON_CreateObject();
		cJSON_AddStringToObject(res, "type", "result");
		cJSON_AddNumberToObject(res, "id", id);
		cJSON_AddBoolToObject(res, "ok", true);
		add_phases(res, (double)(srv_now_ns() - m->t_recv_ns) / 1000.0, 0, 0);
		reply(srv, cl->conn, res, NULL, 0);
		cJSON_Delete(res);
	} else {
		char msg[128];
		snprintf(msg, sizeof(msg), "unknown request type \"%.40s\" (cmd, read, steer, shm, ping)",
			 m->f.type);
		reply_error(srv, cl->conn, id, msg);
	}
}

static void reap(struct srv *srv)
{
	int64_t now = srv_now_ns(), limit = srv->conf.reap_after_s * 1000000000LL;

	/* a segment's name stays in /dev/shm no longer than this, answered or not */
	for (struct client *cl = clients; cl; cl = cl->next)
		if (cl->shm && cl->shm->named && now - cl->shm->t_made >= SRV_SHM_UNLINK_MS * 1000000LL)
			srv_shm_unlink(cl->shm);
	if (srv->conf.reap_after_s <= 0)
		return;
	for (struct client *cl = clients, *next; cl; cl = next) {
		next = cl->next;
		if (!cl->conn && cl->detached_at && now - cl->detached_at >= limit) {
			if (getenv("DJINN_SERVE_LOG"))
				fprintf(stderr, "djinn serve: reaped a detached client (%d sessions)\n",
					cl->sh->n_sess);
			client_free(cl);
		}
	}
}

void srv_engine_loop(struct srv *srv)
{
	while (!srv->stop) {
		struct srv_msg *m;
		struct timespec ts;

		pthread_mutex_lock(&srv->in_mu);
		while (!srv->in_head && !srv->stop) {
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 200 * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&srv->in_cv, &srv->in_mu, &ts);
			if (!srv->in_head)
				break;
		}
		m = srv->in_head;
		if (m) {
			srv->in_head = m->next;
			if (!srv->in_head)
				srv->in_tail = NULL;
			if (m->kind == SRV_MSG_FRAME)
				srv->in_n_frames--;
		}
		pthread_mutex_unlock(&srv->in_mu);
		if (m) {
			uint64_t one = 1;
			handle(srv, m);
			djn_frame_release(&m->f);
			free(m->payload);
			free(m);
			/* the net loop may have stopped reading while the queue was full */
			if (write(srv->wake_fd, &one, sizeof(one)) < 0) {
				/* a full eventfd wakes it anyway */
			}
		}
		reap(srv);
	}
	while (clients)
		client_free(clients);
	pthread_mutex_lock(&srv->in_mu);
	while (srv->in_head) {
		struct srv_msg *m = srv->in_head;
		srv->in_head = m->next;
		djn_frame_release(&m->f);
		free(m->payload);
		free(m);
	}
	pthread_mutex_unlock(&srv->in_mu);
}
