/* client.c - the client end of the protocol: connect, shake hands, send a
 * request and wait for its result, handing events to a callback on the way
 * and timing each phase.  Blocking I/O on one socket; used from one thread. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "djinn/server.h"

/* Replies smaller than RX_CAP arrive in one recv into rx; reads of at
 * least RX_DIRECT bytes bypass it. */
#define RX_CAP (64 << 10)
#define RX_DIRECT (16 << 10)

struct djn_remote {
	int fd;
	char *addr;
	char token[64];
	cJSON *welcome;
	double next_id;
	djn_remote_event_fn on_event;
	void *ud;
	volatile int *flag;
	bool interrupt_sent;
	struct djn_remote_phases last, sum;
	long n_calls;
	/* the server's shared-memory segment (reads land there), or fd -1 */
	int shm_fd;
	uint8_t *shm_p;
	size_t shm_size;
	uint8_t rx[RX_CAP];   /* received, not yet consumed: rx[rx_off..rx_len) */
	size_t rx_off, rx_len;
};

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void shm_drop(struct djn_remote *r)
{
	if (r->shm_p)
		munmap(r->shm_p, r->shm_size);
	if (r->shm_fd >= 0)
		close(r->shm_fd);
	r->shm_p = NULL;
	r->shm_size = 0;
	r->shm_fd = -1;
}

static void dead(struct djn_remote *r)
{
	if (r->fd >= 0)
		close(r->fd);
	r->fd = -1;
	shm_drop(r);
}

/* Map the segment up to size (the server grew it; the same object, so the
 * same fd): it must really be that large, or a read past its end would be
 * a SIGBUS. */
static enum djn_status shm_map(struct djn_remote *r, size_t size, struct djn_err *err)
{
	struct stat st;
	void *p;

	if (size <= r->shm_size)
		return DJN_OK;
	if (fstat(r->shm_fd, &st) < 0 || st.st_size < 0 || (size_t)st.st_size < size)
		return djn_err_set(err, DJN_ERR_FORMAT, "%s: shm: the segment is smaller than %zu bytes",
				   r->addr, size);
	p = mmap(NULL, size, PROT_READ, MAP_SHARED, r->shm_fd, 0);
	if (p == MAP_FAILED)
		return djn_err_set(err, DJN_ERR_NOMEM, "%s: shm: mmap %zu bytes: %s", r->addr, size,
				   strerror(errno));
	if (r->shm_p)
		munmap(r->shm_p, r->shm_size);
	r->shm_p = p;
	r->shm_size = size;
	return DJN_OK;
}

/* The welcome's segment {name, size}: open and map it, then unlink the name
 * (nothing is left in /dev/shm).  It must be the server's own kind of name,
 * this user's, not readable by others, and as large as it says. */
static enum djn_status shm_open_welcome(struct djn_remote *r, const cJSON *o,
					struct djn_err *err)
{
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
	const cJSON *size = cJSON_GetObjectItemCaseSensitive(o, "size");
	struct stat st;
	const char *n;

	if (!cJSON_IsString(name) || !cJSON_IsNumber(size) || size->valuedouble < 1 ||
	    size->valuedouble > (double)DJN_SHM_MAX)
		return djn_err_set(err, DJN_ERR_FORMAT, "%s: shm: a bad segment in the welcome",
				   r->addr);
	n = name->valuestring;
	if (strncmp(n, "/djinn-", 7) || strlen(n) > 47 || strchr(n + 1, '/'))
		return djn_err_set(err, DJN_ERR_FORMAT, "%s: shm: a bad segment name", r->addr);
	if ((r->shm_fd = shm_open(n, O_RDONLY | O_CLOEXEC, 0)) < 0)
		return djn_err_set(err, DJN_ERR_IO, "%s: shm: %s: %s", r->addr, n, strerror(errno));
	shm_unlink(n);
	if (fstat(r->shm_fd, &st) < 0 || st.st_uid != getuid() || (st.st_mode & 077))
		return djn_err_set(err, DJN_ERR_STATE,
				   "%s: shm: the segment is not this user's own (mode 0600)", r->addr);
	return shm_map(r, (size_t)size->valuedouble, err);
}

/* Is the peer on this host (a unix socket, or loopback)? */
static bool peer_local(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getpeername(fd, (struct sockaddr *)&ss, &len) < 0)
		return false;
	if (ss.ss_family == AF_UNIX)
		return true;
	if (ss.ss_family == AF_INET)
		return (ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr) >> 24) == 127;
	if (ss.ss_family == AF_INET6) {
		const struct in6_addr *a = &((struct sockaddr_in6 *)&ss)->sin6_addr;
		return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
	}
	return false;
}

static int dial(const char *addr, struct djn_err *err)
{
	int fd = -1, rc;

	if (!strncmp(addr, "unix:", 5)) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		if (strlen(addr + 5) >= sizeof(sa.sun_path) || !addr[5]) {
			djn_err_set(err, DJN_ERR_INVALID, "%s: bad socket path", addr);
			return -1;
		}
		strcpy(sa.sun_path, addr + 5);
		if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
		    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
			djn_err_set(err, DJN_ERR_IO, "%s: %s", addr, strerror(errno));
			if (fd >= 0)
				close(fd);
			return -1;
		}
		return fd;
	}
	const char *colon = strrchr(addr, ':');
	char host[256];
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL, *p;
	if (!colon || colon == addr || !colon[1] || (size_t)(colon - addr) >= sizeof(host)) {
		djn_err_set(err, DJN_ERR_INVALID, "'%s': expected HOST:PORT or unix:PATH", addr);
		return -1;
	}
	memcpy(host, addr, (size_t)(colon - addr));
	host[colon - addr] = '\0';
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = '\0';
	}
	if ((rc = getaddrinfo(host, colon + 1, &hints, &ai)) != 0) {
		djn_err_set(err, DJN_ERR_INVALID, "%s: %s", addr, gai_strerror(rc));
		return -1;
	}
	errno = ECONNREFUSED;
	for (p = ai; p; p = p->ai_next) {
		if ((fd = socket(p->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
			continue;
		if (connect(fd, p->ai_addr, p->ai_addrlen) == 0)
			break;
		rc = errno;
		close(fd);
		fd = -1;
		errno = rc;
	}
	freeaddrinfo(ai);
	if (fd < 0) {
		djn_err_set(err, DJN_ERR_IO, "%s: %s", addr, strerror(errno));
		return -1;
	}
	djn_net_tune(fd);
	return fd;
}

static enum djn_status send_all(struct djn_remote *r, struct iovec *iov, int n,
				struct djn_err *err)
{
	while (n > 0) {
		struct msghdr mh = { .msg_iov = iov, .msg_iovlen = (size_t)n };
		ssize_t w = sendmsg(r->fd, &mh, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			djn_err_set(err, DJN_ERR_IO, "%s: send: %s", r->addr, strerror(errno));
			dead(r);
			return DJN_ERR_IO;
		}
		while (n > 0 && (size_t)w >= iov->iov_len) {
			w -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (char *)iov->iov_base + w;
			iov->iov_len -= (size_t)w;
		}
	}
	return DJN_OK;
}

static void send_interrupt(struct djn_remote *r)
{
	cJSON *j = cJSON_CreateObject();
	uint8_t *head;
	size_t len, att;

	cJSON_AddStringToObject(j, "type", "interrupt");
	if (!djn_frame_header(j, NULL, 0, &head, &len, &att, NULL)) {
		struct iovec iov = { head, len };
		send_all(r, &iov, 1, NULL);
		free(head);
	}
	cJSON_Delete(j);
}

/* Wait until the socket is readable, watching the interrupt flag (the
 * shell's Ctrl-C) while the server works. */
static void wait_readable(struct djn_remote *r)
{
	for (;;) {
		struct pollfd pfd = { .fd = r->fd, .events = POLLIN };
		if (r->flag && *r->flag && !r->interrupt_sent) {
			r->interrupt_sent = true;
			send_interrupt(r);
		}
		if (poll(&pfd, 1, r->flag ? 100 : -1) > 0)
			return;
	}
}

static enum djn_status read_fail(struct djn_remote *r, ssize_t got, struct djn_err *err)
{
	if (got == 0)
		djn_err_set(err, DJN_ERR_IO, "%s: the server closed the connection", r->addr);
	else
		djn_err_set(err, DJN_ERR_IO, "%s: read: %s", r->addr, strerror(errno));
	dead(r);
	return DJN_ERR_IO;
}

/* Read exactly n bytes into p; wait: first wait for the socket with the
 * interrupt flag watched (a frame's first bytes, while the server works).
 * Small reads are served from the receive buffer (one recv brings a whole
 * small reply); large ones go straight from the socket into p, so an
 * attachment lands in its destination with no copy but the kernel's. */
static enum djn_status read_all(struct djn_remote *r, uint8_t *p, size_t n, bool wait,
				struct djn_err *err)
{
	while (n) {
		ssize_t got;
		if (r->rx_len > r->rx_off) {
			size_t k = r->rx_len - r->rx_off < n ? r->rx_len - r->rx_off : n;
			memcpy(p, r->rx + r->rx_off, k);
			r->rx_off += k;
			p += k;
			n -= k;
			continue;
		}
		if (wait && r->flag)
			wait_readable(r);
		got = n >= RX_DIRECT ? recv(r->fd, p, n, MSG_WAITALL) : recv(r->fd, r->rx, RX_CAP, 0);
		if (got <= 0) {
			if (got < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			return read_fail(r, got, err);
		}
		if (n >= RX_DIRECT) {
			p += got;
			n -= (size_t)got;
		} else {
			r->rx_off = 0;
			r->rx_len = (size_t)got;
		}
	}
	return DJN_OK;
}

/* Read one frame: its head (length, JSON) first, checked, then each
 * attachment into where sink says (the reply to request `id` only), or
 * into one buffer the reply owns (*payload). */
static enum djn_status read_frame(struct djn_remote *r, uint8_t **payload, struct djn_frame *f,
				  int64_t *t_first, size_t *n_bytes, double id,
				  djn_remote_sink_fn sink, void *sink_ud, struct djn_err *err)
{
	uint8_t hdr[8], *json;
	size_t len, jlen, rest = 0, at = 0;
	const cJSON *rid, *shm;
	void *dst[DJN_FRAME_MAX_ATT] = { 0 };
	int shm_i = -1;
	size_t shm_off = 0;
	enum djn_status st;

	*payload = NULL;
	if (read_all(r, hdr, 4, true, err))
		return DJN_ERR_IO;
	if (t_first && !*t_first)
		*t_first = now_ns();
	len = (size_t)hdr[0] | (size_t)hdr[1] << 8 | (size_t)hdr[2] << 16 | (size_t)hdr[3] << 24;
	if (len < 4 || len > DJN_FRAME_MAX_REPLY) {
		djn_err_set(err, DJN_ERR_FORMAT, "%s: a reply frame of %zu bytes", r->addr, len);
		dead(r);
		return DJN_ERR_FORMAT;
	}
	if (read_all(r, hdr + 4, 4, false, err))
		return DJN_ERR_IO;
	jlen = (size_t)hdr[4] | (size_t)hdr[5] << 8 | (size_t)hdr[6] << 16 | (size_t)hdr[7] << 24;
	if (jlen > len - 4 || jlen > DJN_FRAME_JSON_MAX) {
		djn_err_set(err, DJN_ERR_FORMAT, "%s: frame: JSON of %zu bytes in a payload of %zu",
			    r->addr, jlen, len);
		dead(r);
		return DJN_ERR_FORMAT;
	}
	json = djn_xmalloc(jlen + 1);
	if (read_all(r, json, jlen, false, err)) {
		free(json);
		return DJN_ERR_IO;
	}
	st = djn_frame_decode_head(json, jlen, len, f, err);
	free(json);
	if (st) {
		djn_err_prefix(err, "%s", r->addr);
		dead(r);
		return DJN_ERR_FORMAT;
	}
	rid = cJSON_GetObjectItemCaseSensitive(f->json, "id");
	shm = cJSON_GetObjectItemCaseSensitive(f->json, "shm");
	if (!strcmp(f->type, "result") && cJSON_IsObject(shm)) {
		/* the tensor is in the segment: checked like an attachment, and
		 * within the segment (mapped larger if the server grew it) */
		size_t size;
		enum djn_status sst = DJN_ERR_FORMAT;
		if (!r->shm_p)
			djn_err_set(err, DJN_ERR_FORMAT, "%s: a shared-memory reply, but no segment",
				    r->addr);
		else if (f->n_att)
			djn_err_set(err, DJN_ERR_FORMAT, "%s: a shared-memory reply with attachments",
				    r->addr);
		else if (djn_frame_shm_att(shm, r->shm_size, &f->att[0], &shm_off, &size, err))
			djn_err_prefix(err, "%s", r->addr);
		else
			sst = shm_map(r, size, err);
		if (sst) {
			djn_frame_release(f);
			dead(r);
			return DJN_ERR_FORMAT;
		}
		shm_i = f->n_att++;
	}
	if (sink && !strcmp(f->type, "result") && cJSON_IsNumber(rid) && rid->valuedouble == id)
		for (int i = 0; i < f->n_att; i++)
			dst[i] = f->att[i].bytes ? sink(sink_ud, &f->att[i], i) : NULL;
	for (int i = 0; i < f->n_att; i++)
		if (!dst[i])
			rest += f->att[i].bytes;
	if (rest && !(*payload = malloc(rest))) {
		djn_frame_release(f);
		djn_err_set(err, DJN_ERR_NOMEM, "%s: no host memory for a reply of %zu bytes",
			    r->addr, len);
		dead(r);
		return DJN_ERR_NOMEM;
	}
	for (int i = 0; i < f->n_att; i++) {
		uint8_t *p = dst[i] ? dst[i] : *payload ? *payload + at : NULL; /* NULL: 0 bytes */
		if (!dst[i])
			at += f->att[i].bytes;
		if (i == shm_i) {
			if (f->att[i].bytes)
				memcpy(p, r->shm_p + shm_off, f->att[i].bytes);
		} else if (read_all(r, p, f->att[i].bytes, false, err)) {
			djn_frame_release(f);
			free(*payload);
			*payload = NULL;
			return DJN_ERR_IO;
		}
		f->att[i].data = p;
	}
	if (n_bytes)
		*n_bytes = 4 + len;
	return DJN_OK;
}

static enum djn_status send_msg(struct djn_remote *r, cJSON *msg, const struct djn_att_out *att,
				int n_att, size_t *n_bytes, struct djn_err *err)
{
	struct iovec iov[DJN_FRAME_MAX_ATT + 1];
	uint8_t *head;
	size_t hlen, body;
	int n = 0;
	enum djn_status st;

	if ((st = djn_frame_header(msg, att, n_att, &head, &hlen, &body, err)))
		return st;
	iov[n++] = (struct iovec){ head, hlen };
	for (int i = 0; i < n_att; i++)
		if (att[i].bytes)
			iov[n++] = (struct iovec){ (void *)att[i].data, att[i].bytes };
	st = send_all(r, iov, n, err);
	free(head);
	if (n_bytes)
		*n_bytes = hlen + body;
	return st;
}

/* Map the welcome's segment and tell the server whether that worked (it
 * unlinks the name either way); one that cannot be mapped (another user,
 * another host behind a loopback address) leaves reads on the socket. */
static enum djn_status shm_answer(struct djn_remote *r, struct djn_err *err)
{
	struct djn_err why = { 0 };
	struct djn_remote_reply rep;
	cJSON *msg = cJSON_CreateObject();
	bool mapped = !shm_open_welcome(r, cJSON_GetObjectItemCaseSensitive(r->welcome, "shm"),
					&why);
	enum djn_status st;

	if (!mapped) {
		shm_drop(r);
		if (getenv("DJINN_SHM_LOG"))
			fprintf(stderr, "djinn: reads over the socket: %s\n", why.msg);
	}
	cJSON_AddStringToObject(msg, "type", "shm");
	cJSON_AddBoolToObject(msg, "mapped", mapped);
	st = djn_remote_call(r, msg, NULL, 0, &rep, err);
	cJSON_Delete(msg);
	if (st)
		return st;
	if (strcmp(rep.f.type, "result") ||
	    !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rep.f.json, "shm")))
		shm_drop(r);
	djn_remote_reply_release(&rep);
	/* the handshake's own round trip is not a request of the user's */
	memset(&r->sum, 0, sizeof(r->sum));
	memset(&r->last, 0, sizeof(r->last));
	r->n_calls = 0;
	return DJN_OK;
}

struct djn_remote *djn_remote_connect(const char *addr, const char *token, const char *resume,
				      struct djn_err *err)
{
	return djn_remote_connect_as(addr, token, resume, NULL, NULL, 0, err);
}

struct djn_remote *djn_remote_connect_as(const char *addr, const char *token, const char *resume,
					 const char *tenant, const char *cls, double slo_ms,
					 struct djn_err *err)
{
	struct djn_remote_opts o = { .token = token, .resume = resume, .tenant = tenant,
				     .cls = cls, .slo_ms = slo_ms };

	return djn_remote_open(addr, &o, err);
}

struct djn_remote *djn_remote_open(const char *addr, const struct djn_remote_opts *o,
				   struct djn_err *err)
{
	const char *token = o->token, *resume = o->resume, *tenant = o->tenant, *cls = o->cls;
	double slo_ms = o->slo_ms;
	bool want_shm;
	struct djn_remote *r;
	cJSON *hello;
	struct djn_frame f;
	uint8_t *payload;
	const cJSON *tok;
	int fd = dial(addr, err);

	if (fd < 0)
		return NULL;
	r = djn_xcalloc(1, sizeof(*r));
	r->fd = fd;
	r->shm_fd = -1;
	r->addr = djn_xstrdup(addr);
	hello = cJSON_CreateObject();
	cJSON_AddStringToObject(hello, "type", "hello");
	cJSON_AddNumberToObject(hello, "proto", DJN_PROTO_VERSION);
	cJSON_AddStringToObject(hello, "client", "djinn 0.1");
	if (token)
		cJSON_AddStringToObject(hello, "auth", token);
	if (resume)
		cJSON_AddStringToObject(hello, "resume", resume);
	if (tenant)
		cJSON_AddStringToObject(hello, "tenant", tenant);
	if (cls)
		cJSON_AddStringToObject(hello, "class", cls);
	if (slo_ms > 0)
		cJSON_AddNumberToObject(hello, "slo_ms", slo_ms);
	{
		const char *no = getenv("DJINN_NO_SHM");
		want_shm = !o->no_shm && (!no || !*no || !strcmp(no, "0")) && peer_local(fd);
		if (want_shm)
			cJSON_AddBoolToObject(hello, "shm", true);
	}
	if (send_msg(r, hello, NULL, 0, NULL, err)) {
		cJSON_Delete(hello);
		goto fail;
	}
	cJSON_Delete(hello);
	if (read_frame(r, &payload, &f, NULL, NULL, -1, NULL, NULL, err))
		goto fail;
	if (strcmp(f.type, "welcome")) {
		const cJSON *e = cJSON_GetObjectItemCaseSensitive(f.json, "error");
		djn_err_set(err, DJN_ERR_STATE, "%s: %s", addr,
			    cJSON_IsString(e) ? e->valuestring : "no welcome from the server");
		djn_frame_release(&f);
		free(payload);
		goto fail;
	}
	tok = cJSON_GetObjectItemCaseSensitive(f.json, "token");
	snprintf(r->token, sizeof(r->token), "%s", cJSON_IsString(tok) ? tok->valuestring : "");
	r->welcome = f.json;
	f.json = NULL;
	free(payload);
	/* a segment only when asked for (a server cannot push one on a client) */
	if (want_shm && cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(r->welcome, "shm")) &&
	    shm_answer(r, err))
		goto fail;
	return r;
fail:
	djn_remote_free(r);
	return NULL;
}

void djn_remote_free(struct djn_remote *r)
{
	if (!r)
		return;
	dead(r);
	cJSON_Delete(r->welcome);
	free(r->addr);
	free(r);
}

const char *djn_remote_addr(const struct djn_remote *r)
{
	return r->addr;
}

const char *djn_remote_token(const struct djn_remote *r)
{
	return r->token;
}

const cJSON *djn_remote_welcome(const struct djn_remote *r)
{
	return r->welcome;
}

void djn_remote_on_event(struct djn_remote *r, djn_remote_event_fn fn, void *ud)
{
	r->on_event = fn;
	r->ud = ud;
}

bool djn_remote_alive(const struct djn_remote *r)
{
	return r && r->fd >= 0;
}

void djn_remote_interrupt(struct djn_remote *r)
{
	if (r->fd >= 0)
		send_interrupt(r);
}

void djn_remote_watch_flag(struct djn_remote *r, volatile int *flag)
{
	r->flag = flag;
}

static double num(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

	return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

enum djn_status djn_remote_call(struct djn_remote *r, cJSON *msg, const struct djn_att_out *att,
				int n_att, struct djn_remote_reply *out, struct djn_err *err)
{
	return djn_remote_call_into(r, msg, att, n_att, NULL, NULL, out, err);
}

enum djn_status djn_remote_call_into(struct djn_remote *r, cJSON *msg,
				     const struct djn_att_out *att, int n_att,
				     djn_remote_sink_fn sink, void *sink_ud,
				     struct djn_remote_reply *out, struct djn_err *err)
{
	int64_t t0 = now_ns(), t1, t2, t_first = 0;
	struct djn_remote_phases ph = { 0 };
	double id = r->next_id++;
	size_t n_in = 0;

	memset(out, 0, sizeof(*out));
	if (r->fd < 0)
		return djn_err_set(err, DJN_ERR_STATE, "%s: not connected", r->addr);
	cJSON_DeleteItemFromObjectCaseSensitive(msg, "id");
	cJSON_AddNumberToObject(msg, "id", id);
	/* serialize and send are one writev here; the header's encoding is
	 * the serialize phase */
	{
		uint8_t *head;
		size_t hlen, body;
		struct iovec iov[DJN_FRAME_MAX_ATT + 1];
		int n = 0;
		enum djn_status st = djn_frame_header(msg, att, n_att, &head, &hlen, &body, err);
		if (st)
			return st;
		t1 = now_ns();
		iov[n++] = (struct iovec){ head, hlen };
		for (int i = 0; i < n_att; i++)
			if (att[i].bytes)
				iov[n++] = (struct iovec){ (void *)att[i].data, att[i].bytes };
		r->interrupt_sent = false;
		st = send_all(r, iov, n, err);
		free(head);
		if (st)
			return st;
		ph.bytes_out = hlen + body;
	}
	t2 = now_ns();
	for (;;) {
		const cJSON *rid;
		size_t nb = 0;
		if (read_frame(r, &out->payload, &out->f, &t_first, &nb, id, sink, sink_ud, err))
			return DJN_ERR_IO;
		n_in += nb;
		rid = cJSON_GetObjectItemCaseSensitive(out->f.json, "id");
		if ((!strcmp(out->f.type, "result") || !strcmp(out->f.type, "error")) &&
		    (cJSON_IsNumber(rid) ? rid->valuedouble == id : !strcmp(out->f.type, "error")))
			break;
		if (r->on_event)
			r->on_event(r, &out->f, r->ud);
		djn_frame_release(&out->f);
		free(out->payload);
		out->payload = NULL;
	}
	{
		int64_t t3 = now_ns();
		const cJSON *p = cJSON_GetObjectItemCaseSensitive(out->f.json, "phases");
		ph.serialize_us = (double)(t1 - t0) / 1000;
		ph.send_us = (double)(t2 - t1) / 1000;
		ph.queue_us = num(p, "queue_us");
		ph.exec_us = num(p, "exec_us");
		ph.result_us = num(p, "result_us");
		ph.total_us = (double)(t3 - t0) / 1000;
		ph.receive_us = ph.total_us - ph.serialize_us - ph.send_us - ph.queue_us -
				ph.exec_us - ph.result_us;
		if (ph.receive_us < 0)
			ph.receive_us = 0;
		ph.bytes_in = n_in;
	}
	out->ph = ph;
	r->last = ph;
	r->sum.serialize_us += ph.serialize_us;
	r->sum.send_us += ph.send_us;
	r->sum.queue_us += ph.queue_us;
	r->sum.exec_us += ph.exec_us;
	r->sum.result_us += ph.result_us;
	r->sum.receive_us += ph.receive_us;
	r->sum.total_us += ph.total_us;
	r->sum.bytes_out += ph.bytes_out;
	r->sum.bytes_in += ph.bytes_in;
	r->n_calls++;
	/* an error that ends the connection: the server closes after it */
	if (!strcmp(out->f.type, "error") &&
	    !cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(out->f.json, "id")))
		dead(r);
	return DJN_OK;
}

void djn_remote_reply_release(struct djn_remote_reply *rep)
{
	djn_frame_release(&rep->f);
	free(rep->payload);
	rep->payload = NULL;
}

bool djn_remote_shm(const struct djn_remote *r, size_t *size)
{
	if (size)
		*size = r->shm_p ? r->shm_size : 0;
	return r->shm_p != NULL;
}

void djn_remote_stats(const struct djn_remote *r, struct djn_remote_phases *last,
		      struct djn_remote_phases *sum, long *n_calls)
{
	if (last)
		*last = r->last;
	if (sum)
		*sum = r->sum;
	if (n_calls)
		*n_calls = r->n_calls;
}
