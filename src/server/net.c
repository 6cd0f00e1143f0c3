/* net.c - the server's network loop: one poll() over the listener, every
 * connection and the engine's wake-up eventfd.  It never waits on the
 * engine: complete frames go onto the engine's bounded queue, replies come
 * back through srv_send.  All limits live here: frame sizes, the handshake
 * and read timeouts (a slowloris client is cut off, others are served), idle
 * timeouts, the number of clients, requests in flight per connection. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "server/server_impl.h"

int64_t srv_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ------------------------------------------------------ outgoing frames */

struct srv_out *srv_out_new(uint64_t conn, cJSON *msg, const struct djn_att_out *att, int n_att)
{
	struct srv_out *o = djn_xcalloc(1, sizeof(*o));
	size_t body = 0;
	struct djn_err err = { 0 };

	o->conn = conn;
	if (djn_frame_header(msg, att, n_att, &o->head, &o->head_len, &body, &err)) {
		free(o);
		return srv_out_error(conn, -1, err.msg, false);
	}
	if (body) {
		size_t at = 0;
		o->body = malloc(body);
		if (!o->body) {
			free(o->head);
			free(o);
			return srv_out_error(conn, -1, "reply: out of host memory for the attachments",
					     false);
		}
		for (int i = 0; i < n_att; i++) {
			memcpy(o->body + at, att[i].data, att[i].bytes);
			at += att[i].bytes;
		}
		o->body_len = body;
	}
	return o;
}

struct srv_out *srv_out_error(uint64_t conn, double id, const char *msg, bool close_after)
{
	cJSON *j = cJSON_CreateObject();
	struct srv_out *o = djn_xcalloc(1, sizeof(*o));
	size_t body;

	cJSON_AddStringToObject(j, "type", "error");
	if (id >= 0)
		cJSON_AddNumberToObject(j, "id", id);
	cJSON_AddStringToObject(j, "error", msg);
	o->conn = conn;
	o->close_after = close_after;
	if (djn_frame_header(j, NULL, 0, &o->head, &o->head_len, &body, NULL))
		DJN_ASSERT(!"an error frame always encodes");
	cJSON_Delete(j);
	return o;
}

void srv_out_free(struct srv *srv, struct srv_out *o)
{
	if (__atomic_load_n(&o->refs, __ATOMIC_ACQUIRE) &&
	    __atomic_sub_fetch(&o->refs, 1, __ATOMIC_ACQ_REL) > 0)
		return;
	if (o->stage) {
		pthread_mutex_lock(&srv->out_mu);
		o->stage->next = srv->stage_free;
		srv->stage_free = o->stage;
		pthread_mutex_unlock(&srv->out_mu);
	} else {
		free(o->body);
	}
	free(o->head);
	free(o);
}

void srv_wake(struct srv *srv)
{
	uint64_t one = 1;

	if (write(srv->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		perror("djinn serve: eventfd");
}

void srv_send(struct srv *srv, struct srv_out *o)
{
	if (!o->refs) /* a whole frame: ready as it is */
		o->ready = o->body_len;
	pthread_mutex_lock(&srv->out_mu);
	if (srv->out_tail)
		srv->out_tail->next = o;
	else
		srv->out_head = o;
	srv->out_tail = o;
	pthread_mutex_unlock(&srv->out_mu);
	srv_wake(srv);
}

/* ----------------------------------------------------------- listening */

static bool is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		return IN6_IS_ADDR_LOOPBACK(a) ||
		       (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
	}
	return false;
}

static enum djn_status listen_unix(struct srv *srv, struct djn_err *err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd;

	if (strlen(srv->conf.unix_path) >= sizeof(sa.sun_path))
		return djn_err_set(err, DJN_ERR_INVALID, "serve: --unix '%s': path too long",
				   srv->conf.unix_path);
	strcpy(sa.sun_path, srv->conf.unix_path);
	/* a stale socket from a server that died is replaced; any other file is not */
	if (lstat(sa.sun_path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return djn_err_set(err, DJN_ERR_INVALID,
					   "serve: --unix '%s' exists and is not a socket", sa.sun_path);
		unlink(sa.sun_path);
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0)
		return djn_err_set(err, DJN_ERR_IO, "serve: socket: %s", strerror(errno));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 64) < 0) {
		djn_err_set(err, DJN_ERR_IO, "serve: --unix '%s': %s", sa.sun_path, strerror(errno));
		close(fd);
		return DJN_ERR_IO;
	}
	srv->listen_fd = fd;
	printf("Listening on unix:%s\n", sa.sun_path);
	return DJN_OK;
}

enum djn_status srv_listen(struct srv *srv, struct djn_err *err)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE };
	struct addrinfo *ai = NULL;
	char host[256], port[16], shown[300];
	const char *colon;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int fd = -1, one = 1, rc;

	if (srv->conf.unix_path)
		return listen_unix(srv, err);
	colon = strrchr(srv->conf.listen, ':');
	if (!colon || colon == srv->conf.listen || (size_t)(colon - srv->conf.listen) >= sizeof(host) ||
	    !colon[1] || strlen(colon + 1) >= sizeof(port))
		return djn_err_set(err, DJN_ERR_INVALID, "serve: --listen '%s': expected HOST:PORT",
				   srv->conf.listen);
	memcpy(host, srv->conf.listen, (size_t)(colon - srv->conf.listen));
	host[colon - srv->conf.listen] = '\0';
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = '\0';
	}
	strcpy(port, colon + 1);
	if ((rc = getaddrinfo(host, port, &hints, &ai)) != 0)
		return djn_err_set(err, DJN_ERR_INVALID, "serve: --listen '%s': %s", srv->conf.listen,
				   gai_strerror(rc));
	if (!is_loopback(ai->ai_addr) && !srv->conf.token) {
		freeaddrinfo(ai);
		return djn_err_set(err, DJN_ERR_INVALID,
				   "serve: --listen '%s' is not a loopback address; listening there "
				   "needs --token-file", srv->conf.listen);
	}
	if ((fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0) {
		freeaddrinfo(ai);
		return djn_err_set(err, DJN_ERR_IO, "serve: socket: %s", strerror(errno));
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 64) < 0) {
		djn_err_set(err, DJN_ERR_IO, "serve: --listen '%s': %s", srv->conf.listen,
			    strerror(errno));
		freeaddrinfo(ai);
		close(fd);
		return DJN_ERR_IO;
	}
	freeaddrinfo(ai);
	srv->listen_fd = fd;
	getsockname(fd, (struct sockaddr *)&ss, &sl);
	if (ss.ss_family == AF_INET6)
		snprintf(shown, sizeof(shown), "[%s]:%u", host,
			 ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
	else
		snprintf(shown, sizeof(shown), "%s:%u", host,
			 ntohs(((struct sockaddr_in *)&ss)->sin_port));
	printf("Listening on %s\n", shown);
	if (srv->conf.port_file) {
		FILE *f = fopen(srv->conf.port_file, "w");
		if (!f)
			return djn_err_set(err, DJN_ERR_IO, "serve: --port-file '%s': %s",
					   srv->conf.port_file, strerror(errno));
		fprintf(f, "%s\n", strrchr(shown, ':') + 1);
		fclose(f);
	}
	fflush(stdout);
	return DJN_OK;
}

/* --------------------------------------------------------- connections */

struct conn {
	int fd;
	uint64_t id;
	bool hello_seen;    /* a hello went to the engine (it knows this connection) */
	bool closing;       /* write what is queued, then close */
	uint8_t hdr[4];
	size_t hdr_got;
	uint8_t *buf;       /* the payload being read */
	size_t need, got;
	int64_t t_accept, t_frame, t_last; /* t_frame: first byte of the frame in progress */
	int inflight;
	struct srv_out *wq, *wq_tail;
	size_t woff;        /* bytes of wq's head already written */
};

struct net {
	struct srv *srv;
	struct conn **c;
	int n, cap;
	uint64_t next_id;
};

static void conn_queue(struct conn *c, struct srv_out *o)
{
	o->next = NULL;
	if (c->wq_tail)
		c->wq_tail->next = o;
	else
		c->wq = o;
	c->wq_tail = o;
	if (o->close_after)
		c->closing = true;
}

static void push_in(struct srv *srv, struct srv_msg *m)
{
	pthread_mutex_lock(&srv->in_mu);
	if (srv->in_tail)
		srv->in_tail->next = m;
	else
		srv->in_head = m;
	srv->in_tail = m;
	if (m->kind == SRV_MSG_FRAME)
		srv->in_n_frames++;
	pthread_cond_signal(&srv->in_cv);
	pthread_mutex_unlock(&srv->in_mu);
}

static void conn_close(struct net *net, int i, const char *why)
{
	struct conn *c = net->c[i];

	if (why && getenv("DJINN_SERVE_LOG"))
		fprintf(stderr, "djinn serve: connection %llu closed: %s\n",
			(unsigned long long)c->id, why);
	if (c->hello_seen) {
		struct srv_msg *m = djn_xcalloc(1, sizeof(*m));
		m->kind = SRV_MSG_CLOSE;
		m->conn = c->id;
		/* a run in flight for it stops at the next site and stays paused */
		srv_interrupt_conn(net->srv, c->id);
		push_in(net->srv, m);
	}
	close(c->fd);
	free(c->buf);
	while (c->wq) {
		struct srv_out *o = c->wq;
		c->wq = o->next;
		srv_out_free(net->srv, o);
	}
	free(c);
	net->c[i] = net->c[--net->n];
}

static struct conn *conn_find(struct net *net, uint64_t id)
{
	for (int i = 0; i < net->n; i++)
		if (net->c[i]->id == id)
			return net->c[i];
	return NULL;
}

static void accept_all(struct net *net)
{
	struct srv *srv = net->srv;

	for (;;) {
		int fd = accept4(srv->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct conn *c;

		if (fd < 0)
			return;
		if (net->n >= srv->conf.max_clients) {
			struct srv_out *o = srv_out_error(0, -1, "server full: too many clients", true);
			if (send(fd, o->head, o->head_len, MSG_NOSIGNAL) < 0) {
				/* nothing more to tell it */
			}
			srv_out_free(srv, o);
			close(fd);
			continue;
		}
		djn_net_tune(fd);
		c = djn_xcalloc(1, sizeof(*c));
		c->fd = fd;
		c->id = ++net->next_id;
		c->t_accept = c->t_last = srv_now_ns();
		if (net->n == net->cap) {
			net->cap = net->cap ? 2 * net->cap : 16;
			net->c = djn_xrealloc(net->c, sizeof(*net->c) * (size_t)net->cap);
		}
		net->c[net->n++] = c;
	}
}

static bool token_ok(const char *want, const cJSON *got)
{
	size_t n = strlen(want);
	unsigned char diff = 0;

	if (!cJSON_IsString(got) || strlen(got->valuestring) != n)
		return false;
	for (size_t i = 0; i < n; i++) /* constant time in the token's bytes */
		diff |= (unsigned char)(want[i] ^ got->valuestring[i]);
	return diff == 0;
}

/* A whole frame arrived: decide here what needs no engine, queue the rest. */
static void frame_done(struct net *net, struct conn *c)
{
	struct srv *srv = net->srv;
	struct djn_frame f;
	struct djn_err err = { 0 };
	const cJSON *id;
	uint8_t *payload = c->buf;
	size_t len = c->need;

	c->buf = NULL;
	c->need = c->got = c->hdr_got = 0;
	c->t_frame = 0;
	if (djn_frame_decode(payload, len, &f, &err)) {
		free(payload);
		/* the framing is intact, so the connection can go on after a bad
		 * message; before the handshake nothing is trusted */
		conn_queue(c, srv_out_error(c->id, -1, err.msg, !c->hello_seen));
		return;
	}
	id = cJSON_GetObjectItemCaseSensitive(f.json, "id");
	if (!c->hello_seen) {
		const cJSON *proto = cJSON_GetObjectItemCaseSensitive(f.json, "proto");
		char msg[160];
		if (strcmp(f.type, "hello")) {
			snprintf(msg, sizeof(msg), "handshake: expected a \"hello\" frame, got \"%.40s\"",
				 f.type);
			conn_queue(c, srv_out_error(c->id, -1, msg, true));
		} else if (!cJSON_IsNumber(proto) || proto->valuedouble < DJN_PROTO_MIN ||
			   proto->valuedouble > DJN_PROTO_VERSION) {
			snprintf(msg, sizeof(msg),
				 "handshake: protocol version %d is not supported (this server speaks "
				 "%d to %d)", cJSON_IsNumber(proto) ? proto->valueint : -1,
				 DJN_PROTO_MIN, DJN_PROTO_VERSION);
			conn_queue(c, srv_out_error(c->id, -1, msg, true));
		} else if (cJSON_GetObjectItemCaseSensitive(f.json, "shm") &&
			   !cJSON_IsBool(cJSON_GetObjectItemCaseSensitive(f.json, "shm"))) {
			conn_queue(c, srv_out_error(c->id, -1,
						    "handshake: \"shm\" must be true or false", true));
		} else if (srv->conf.token &&
			   !token_ok(srv->conf.token, cJSON_GetObjectItemCaseSensitive(f.json, "auth"))) {
			conn_queue(c, srv_out_error(c->id, -1,
						    "handshake: access refused: wrong or missing token",
						    true));
		} else {
			goto queue;
		}
		djn_frame_release(&f);
		free(payload);
		return;
	}
	if (!strcmp(f.type, "interrupt")) { /* no reply: the run in flight reports its stop */
		srv_interrupt_conn(srv, c->id);
		djn_frame_release(&f);
		free(payload);
		return;
	}
	if (!strcmp(f.type, "hello")) {
		conn_queue(c, srv_out_error(c->id, cJSON_IsNumber(id) ? id->valuedouble : -1,
					    "handshake: already done on this connection", false));
		djn_frame_release(&f);
		free(payload);
		return;
	}
queue:;
	struct srv_msg *m = djn_xcalloc(1, sizeof(*m));
	m->kind = SRV_MSG_FRAME;
	m->conn = c->id;
	m->f = f;
	m->payload = payload;
	m->t_recv_ns = srv_now_ns();
	c->hello_seen = true;
	c->inflight++;
	push_in(srv, m);
}

/* Read what is there; false when the connection must close (why set). */
static bool conn_read(struct net *net, struct conn *c, const char **why)
{
	struct srv *srv = net->srv;

	for (int rounds = 0; rounds < 64; rounds++) {
		ssize_t n;
		if (c->closing)
			return true;
		if (c->hdr_got < 4) {
			n = read(c->fd, c->hdr + c->hdr_got, 4 - c->hdr_got);
		} else {
			n = read(c->fd, c->buf + c->got, c->need - c->got);
		}
		if (n == 0) {
			*why = c->hdr_got ? "the client hung up mid-frame" : "the client hung up";
			return false;
		}
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				return true;
			*why = strerror(errno);
			return false;
		}
		c->t_last = srv_now_ns();
		if (!c->t_frame)
			c->t_frame = c->t_last;
		if (c->hdr_got < 4) {
			c->hdr_got += (size_t)n;
			if (c->hdr_got < 4)
				continue;
			c->need = (size_t)c->hdr[0] | (size_t)c->hdr[1] << 8 | (size_t)c->hdr[2] << 16 |
				  (size_t)c->hdr[3] << 24;
			if (c->need > srv->conf.max_frame || c->need < 4) {
				char msg[160];
				snprintf(msg, sizeof(msg), "frame of %zu bytes %s", c->need,
					 c->need < 4 ? "is too short" : "exceeds the server's limit");
				if (c->need >= 4)
					snprintf(msg + strlen(msg), sizeof(msg) - strlen(msg),
						 " of %zu bytes", srv->conf.max_frame);
				conn_queue(c, srv_out_error(c->id, -1, msg, true));
				return true;
			}
			c->buf = malloc(c->need);
			if (!c->buf) {
				conn_queue(c, srv_out_error(c->id, -1, "frame: out of host memory", true));
				return true;
			}
			c->got = 0;
		} else {
			c->got += (size_t)n;
		}
		if (c->hdr_got == 4 && c->got == c->need) {
			frame_done(net, c);
			if (c->inflight >= srv->conf.max_inflight)
				return true; /* the rest waits in the socket */
		}
	}
	return true;
}

/* Bytes of the frame at the head of c's queue that can be written now. */
static size_t writable(const struct conn *c)
{
	const struct srv_out *o = c->wq;

	return o ? o->head_len + __atomic_load_n(&o->ready, __ATOMIC_ACQUIRE) - c->woff : 0;
}

/* Write what is queued; false when the connection must close. */
static bool conn_write(struct net *net, struct conn *c, const char **why)
{
	while (c->wq) {
		struct srv_out *o = c->wq;
		size_t ready = __atomic_load_n(&o->ready, __ATOMIC_ACQUIRE);
		struct iovec iov[2];
		int n_iov = 0;
		ssize_t n;
		if (c->woff < o->head_len)
			iov[n_iov++] = (struct iovec){ o->head + c->woff, o->head_len - c->woff };
		size_t boff = c->woff > o->head_len ? c->woff - o->head_len : 0;
		if (ready > boff)
			iov[n_iov++] = (struct iovec){ o->body + boff, ready - boff };
		if (!n_iov) { /* the engine is still filling the body */
			if (__atomic_load_n(&o->failed, __ATOMIC_ACQUIRE)) {
				*why = "a reply's tensor could not be read";
				return false;
			}
			return true;
		}
		struct msghdr mh = { .msg_iov = iov, .msg_iovlen = (size_t)n_iov };
		n = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				return true;
			*why = strerror(errno);
			return false;
		}
		c->woff += (size_t)n;
		if (c->woff < o->head_len + o->body_len)
			continue; /* more may be ready, or EAGAIN says the socket is full */
		c->wq = o->next;
		if (!c->wq)
			c->wq_tail = NULL;
		c->woff = 0;
		if (o->reply && c->inflight > 0)
			c->inflight--;
		srv_out_free(net->srv, o);
	}
	if (c->closing) {
		*why = "closed after an error";
		return false;
	}
	return true;
}

static void take_out(struct net *net)
{
	struct srv_out *o;
	uint64_t v;

	if (read(net->srv->wake_fd, &v, sizeof(v)) < 0) {
		/* EAGAIN: nothing new */
	}
	pthread_mutex_lock(&net->srv->out_mu);
	o = net->srv->out_head;
	net->srv->out_head = net->srv->out_tail = NULL;
	pthread_mutex_unlock(&net->srv->out_mu);
	while (o) {
		struct srv_out *next = o->next;
		struct conn *c = conn_find(net, o->conn);
		if (c) /* else it hung up: its sessions wait on the server */
			conn_queue(c, o);
		else
			srv_out_free(net->srv, o);
		o = next;
	}
}

void *srv_net_thread(void *arg)
{
	struct net net = { .srv = arg };
	struct srv *srv = net.srv;
	struct pollfd *pfd = NULL;
	int pcap = 0;

	while (!srv->stop) {
		int64_t now = srv_now_ns(), next = now + 1000000000LL;
		long rt = srv->conf.read_timeout_ms, it = srv->conf.idle_timeout_ms;
		bool room;
		int n;

		/* timeouts first: a slow or silent client loses its connection,
		 * never anyone else's service */
		for (int i = 0; i < net.n;) {
			struct conn *c = net.c[i];
			int64_t dl;
			const char *why = NULL;
			if (!c->hello_seen && now - c->t_accept > rt * 1000000LL)
				why = "no handshake in time";
			else if (c->t_frame && now - c->t_frame > rt * 1000000LL)
				why = "a frame took too long to arrive (read timeout)";
			else if (it && !c->inflight && !c->wq && now - c->t_last > it * 1000000LL)
				why = "idle timeout";
			if (why) {
				conn_close(&net, i, why);
				continue;
			}
			dl = !c->hello_seen ? c->t_accept + rt * 1000000LL
			     : c->t_frame    ? c->t_frame + rt * 1000000LL
					     : (it ? c->t_last + it * 1000000LL : next);
			if (dl < next)
				next = dl;
			i++;
		}
		pthread_mutex_lock(&srv->in_mu);
		room = srv->in_n_frames < srv->conf.queue_cap;
		pthread_mutex_unlock(&srv->in_mu);

		if (pcap < net.n + 2) {
			pcap = net.n + 16;
			pfd = djn_xrealloc(pfd, sizeof(*pfd) * (size_t)pcap);
		}
		pfd[0] = (struct pollfd){ .fd = srv->wake_fd, .events = POLLIN };
		pfd[1] = (struct pollfd){ .fd = srv->listen_fd, .events = POLLIN };
		for (int i = 0; i < net.n; i++) {
			struct conn *c = net.c[i];
			short ev = 0;
			if (room && !c->closing && c->inflight < srv->conf.max_inflight)
				ev |= POLLIN;
			if (writable(c) || (c->wq && __atomic_load_n(&c->wq->failed, __ATOMIC_ACQUIRE)))
				ev |= POLLOUT;
			pfd[2 + i] = (struct pollfd){ .fd = c->fd, .events = ev };
		}
		n = poll(pfd, (nfds_t)(net.n + 2), (int)((next - now) / 1000000 + 1));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			perror("djinn serve: poll");
			break;
		}
		if (pfd[0].revents & POLLIN)
			take_out(&net);
		/* connections first (their indices are the pollfd's), then accept */
		int n_before = net.n;
		for (int i = n_before - 1; i >= 0; i--) {
			struct conn *c = net.c[i];
			short re = pfd[2 + i].revents;
			const char *why = NULL;
			bool ok = true;
			if (re & (POLLIN | POLLHUP | POLLERR))
				ok = conn_read(&net, c, &why);
			if (ok && c->wq &&
			    (writable(c) || (re & POLLOUT) || __atomic_load_n(&c->wq->failed, __ATOMIC_ACQUIRE)))
				ok = conn_write(&net, c, &why);
			if (!ok)
				conn_close(&net, i, why);
		}
		if (pfd[1].revents & POLLIN)
			accept_all(&net);
	}
	while (net.n)
		conn_close(&net, net.n - 1, NULL);
	free(net.c);
	free(pfd);
	return NULL;
}
