/* serve.c - `djinn serve`: options, the served models, and the two threads
 * (the network loop beside, the engine on the main thread, which owns the
 * device). */
#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "djinn/djinn.h"
#include "server/server_impl.h"

static const char usage[] =
	"usage: djinn serve [options] MODEL [--tokenizer FILE] [MODEL ...]\n"
	"\n"
	"  --listen HOST:PORT  where to listen (default 127.0.0.1:4455; port 0: any free one)\n"
	"  --unix PATH         listen on a Unix socket instead\n"
	"  --token-file F      clients must present the token in F (needed off loopback)\n"
	"  --device DEV        auto (default), cpu, cuda or cuda:N\n"
	"  --reap-after S      free a detached client's sessions after S seconds (0: never;\n"
	"                      default 3600)\n"
	"  --read-timeout S    a frame or the handshake must arrive within S s (default 10)\n"
	"  --idle-timeout S    close connections silent for S s (0: never, the default)\n"
	"  --max-frame SIZE    largest request frame (default 64M)\n"
	"  --max-clients N     connections at once (default 64)\n"
	"  --queue N           requests waiting for the engine (default 64)\n"
	"  --port-file F       write the port listened on to F\n"
	"\n"
	"Each model is loaded once; every client's sessions share it.  See docs/protocol.md.\n";

static struct srv *g_srv;

static void on_signal(int sig)
{
	(void)sig;
	if (g_srv)
		g_srv->stop = 1;
}

static bool parse_secs(const char *s, double lo, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || v < lo || v > 1e9)
		return false;
	*out = v;
	return true;
}

static char *read_token(const char *path, struct djn_err *err)
{
	FILE *f = fopen(path, "r");
	char buf[512];
	size_t n;

	if (!f) {
		djn_err_set(err, DJN_ERR_IO, "serve: --token-file '%s': %s", path, strerror(errno));
		return NULL;
	}
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	while (n && isspace((unsigned char)buf[n - 1]))
		buf[--n] = '\0';
	if (n < 8 || strpbrk(buf, "\n\r")) {
		djn_err_set(err, DJN_ERR_INVALID,
			    "serve: --token-file '%s': the token must be one line of 8 to 500 "
			    "characters", path);
		return NULL;
	}
	return djn_xstrdup(buf);
}

int djn_serve_main(int argc, char **argv)
{
	struct srv srv = { 0 };
	struct srv_conf *c = &srv.conf;
	struct djn_err err = { 0 };
	const char *token_file = NULL;
	pthread_t net;
	int rc = 1;
	double v;

	c->device = djn_xstrdup("auto");
	c->reap_after_s = 3600;
	c->read_timeout_ms = 10000;
	c->max_frame = DJN_FRAME_MAX_DEFAULT;
	c->max_clients = 64;
	c->queue_cap = 64;
	c->max_inflight = 16;
	srv.listen_fd = srv.wake_fd = -1;
	srv.models = djn_xcalloc((size_t)argc + 1, sizeof(*srv.models));

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			fputs(usage, stdout);
			rc = 0;
			goto out;
		}
		if (a[0] != '-') {
			srv.models[srv.n_models++].path = djn_xstrdup(a);
			continue;
		}
		if (!val) {
			fprintf(stderr, "djinn serve: option '%s' needs a value\n%s", a, usage);
			rc = 2;
			goto out;
		}
		i++;
		if (!strcmp(a, "--listen")) {
			free(c->listen);
			c->listen = djn_xstrdup(val);
		} else if (!strcmp(a, "--unix")) {
			free(c->unix_path);
			c->unix_path = djn_xstrdup(val);
		} else if (!strcmp(a, "--token-file")) {
			token_file = val;
		} else if (!strcmp(a, "--port-file")) {
			free(c->port_file);
			c->port_file = djn_xstrdup(val);
		} else if (!strcmp(a, "--device")) {
			free(c->device);
			c->device = djn_xstrdup(val);
		} else if (!strcmp(a, "--tokenizer") || !strcmp(a, "-z")) {
			if (!srv.n_models || srv.models[srv.n_models - 1].tok) {
				fprintf(stderr, "djinn serve: --tokenizer '%s' follows no model\n", val);
				rc = 2;
				goto out;
			}
			srv.models[srv.n_models - 1].tok = djn_xstrdup(val);
		} else if (!strcmp(a, "--reap-after") && parse_secs(val, 0, &v)) {
			c->reap_after_s = (long)v;
		} else if (!strcmp(a, "--read-timeout") && parse_secs(val, 0.01, &v)) {
			c->read_timeout_ms = (long)(v * 1000);
		} else if (!strcmp(a, "--idle-timeout") && parse_secs(val, 0, &v)) {
			c->idle_timeout_ms = (long)(v * 1000);
		} else if (!strcmp(a, "--max-frame") && djn_size_parse(val, &c->max_frame) &&
			   c->max_frame >= 64 && c->max_frame <= UINT32_MAX) {
		} else if (!strcmp(a, "--max-clients") && parse_secs(val, 1, &v) && v <= 4096) {
			c->max_clients = (int)v;
		} else if (!strcmp(a, "--queue") && parse_secs(val, 1, &v) && v <= 65536) {
			c->queue_cap = (int)v;
		} else {
			bool known = !strcmp(a, "--reap-after") || !strcmp(a, "--read-timeout") ||
				     !strcmp(a, "--idle-timeout") || !strcmp(a, "--max-frame") ||
				     !strcmp(a, "--max-clients") || !strcmp(a, "--queue");
			if (known)
				fprintf(stderr, "djinn serve: bad value '%s' for %s\n%s", val, a, usage);
			else
				fprintf(stderr, "djinn serve: unknown option '%s'\n%s", a, usage);
			rc = 2;
			goto out;
		}
	}
	if (c->listen && c->unix_path) {
		fprintf(stderr, "djinn serve: --listen and --unix: one or the other\n");
		rc = 2;
		goto out;
	}
	if (!c->listen)
		c->listen = djn_xstrdup("127.0.0.1:4455");
	if (token_file && !(c->token = read_token(token_file, &err)))
		goto out_err;
	if (!srv.n_models) {
		fprintf(stderr, "djinn serve: no model given\n%s", usage);
		rc = 2;
		goto out;
	}
	if (!(srv.be = djn_backend_new(c->device, 0, &err))) {
		djn_err_prefix(&err, "serve");
		goto out_err;
	}
	for (int i = 0; i < srv.n_models; i++) {
		struct served_model *sm = &srv.models[i];
		if (!(sm->m = djn_model_load(sm->path, sm->tok, &err)))
			goto out_err;
		printf("Serving %s (%s)\n", sm->m->name, sm->path);
	}
	if (srv_listen(&srv, &err))
		goto out_err;
	if ((srv.wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
		djn_err_set(&err, DJN_ERR_IO, "serve: eventfd: %s", strerror(errno));
		goto out_err;
	}
	pthread_mutex_init(&srv.in_mu, NULL);
	pthread_cond_init(&srv.in_cv, NULL);
	pthread_mutex_init(&srv.out_mu, NULL);
	pthread_mutex_init(&srv.exec_mu, NULL);
	srv.t0_ns = srv_now_ns();
	g_srv = &srv;
	{
		struct sigaction sa = { .sa_handler = on_signal };
		sigemptyset(&sa.sa_mask);
		sigaction(SIGINT, &sa, NULL);
		sigaction(SIGTERM, &sa, NULL);
		signal(SIGPIPE, SIG_IGN);
	}
	fflush(stdout);
	if (pthread_create(&net, NULL, srv_net_thread, &srv)) {
		djn_err_set(&err, DJN_ERR_IO, "serve: cannot start the network thread");
		goto out_err;
	}
	srv_engine_loop(&srv);
	srv.stop = 1;
	pthread_join(net, NULL);
	/* replies the engine left for the net loop that ended */
	while (srv.out_head) {
		struct srv_out *o = srv.out_head;
		srv.out_head = o->next;
		srv_out_free(&srv, o);
	}
	srv_stage_drain(&srv);
	g_srv = NULL;
	rc = 0;
	goto out;
out_err:
	fprintf(stderr, "djinn %s%s\n", strncmp(err.msg, "serve:", 6) ? "serve: " : "", err.msg);
	rc = 1;
out:
	if (srv.listen_fd >= 0)
		close(srv.listen_fd);
	if (c->unix_path && srv.listen_fd >= 0)
		unlink(c->unix_path);
	if (srv.wake_fd >= 0)
		close(srv.wake_fd);
	for (int i = 0; i < srv.n_models; i++) {
		djn_model_unref(srv.models[i].m);
		free(srv.models[i].path);
		free(srv.models[i].tok);
	}
	free(srv.models);
	djn_backend_free(srv.be);
	free(c->listen);
	free(c->unix_path);
	free(c->token);
	free(c->port_file);
	free(c->device);
	return rc;
}
