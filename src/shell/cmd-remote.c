/* cmd-remote.c - the shell as a remote client (gdb's `target remote`):
 * target remote, detach, info remote, and the forwarding of every other
 * line to the server's shell, whose output comes back byte for byte. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "djinn/server.h"
#include "djinn/shell.h"
#include "shell/shell_impl.h"

struct sh_remote {
	struct djn_remote *r;
	struct djn_shell *sh;
	bool block;      /* the server's shell is reading a block (commands, lua) */
	cJSON *last_stop; /* the last "stopped" event */
};

/* A command's output as the server's shell wrote it: the "output"
 * attachment cut by "segments" [fd, bytes] into stdout and stderr. */
static void write_output(struct djn_shell *sh, const struct djn_frame *f)
{
	const cJSON *segs = cJSON_GetObjectItemCaseSensitive(f->json, "segments"), *j;

	for (int i = 0; i < f->n_att; i++) {
		const struct djn_frame_att *a = &f->att[i];
		size_t at = 0;
		if (strcmp(a->name, "output"))
			continue;
		cJSON_ArrayForEach(j, segs) {
			const cJSON *fd = cJSON_GetArrayItem(j, 0), *len = cJSON_GetArrayItem(j, 1);
			size_t n = cJSON_IsNumber(len) && len->valuedouble > 0 ? (size_t)len->valuedouble : 0;
			FILE *out = cJSON_IsNumber(fd) && fd->valueint == 2 ? sh->err : sh->out;
			if (n > a->bytes - at)
				n = a->bytes - at;
			fwrite(a->data + at, 1, n, out);
			fflush(out);
			at += n;
		}
	}
}

static void on_event(struct djn_remote *r, const struct djn_frame *ev, void *ud)
{
	struct sh_remote *rm = ud;

	(void)r;
	if (!strcmp(ev->type, "output")) { /* a long command's output, as it is written */
		write_output(rm->sh, ev);
	} else if (!strcmp(ev->type, "stopped")) {
		cJSON_Delete(rm->last_stop);
		rm->last_stop = cJSON_Duplicate(ev->json, true);
	}
}

void sh_remote_close(struct djn_shell *sh)
{
	if (!sh->remote)
		return;
	djn_remote_free(sh->remote->r);
	cJSON_Delete(sh->remote->last_stop);
	free(sh->remote);
	sh->remote = NULL;
}

static char *read_small(const char *path, size_t max, size_t *len)
{
	FILE *f = fopen(path, "rb");
	struct stat st;
	char *p;

	if (!f)
		return NULL;
	if (fstat(fileno(f), &st) || !S_ISREG(st.st_mode) || (size_t)st.st_size > max) {
		fclose(f);
		return NULL;
	}
	p = djn_xmalloc((size_t)st.st_size + 1);
	*len = fread(p, 1, (size_t)st.st_size, f);
	fclose(f);
	p[*len] = '\0';
	return p;
}

DJN_CMD_FN(cmd_target_remote)
{
	const char *addr = NULL, *token_file = NULL, *resume = NULL;
	struct djn_err err = { 0 };
	struct djn_remote *r;
	char *token = NULL;
	const cJSON *w, *resumed;

	if (!strcmp(argv[0], "target"))
		return sh_fail(sh, "target: unknown target '%s' (only \"target remote HOST:PORT\")",
			       argv[1]);
	for (int i = 1; i < argc; i++) {
		if ((!strcmp(argv[i], "--token-file") || !strcmp(argv[i], "--resume")) &&
		    i + 1 < argc) {
			if (!strcmp(argv[i], "--token-file"))
				token_file = argv[++i];
			else
				resume = argv[++i];
		} else if (argv[i][0] == '-') {
			return sh_fail(sh, "target remote: unknown option '%s'", argv[i]);
		} else if (!addr) {
			addr = argv[i];
		} else {
			return sh_fail(sh, "usage: target remote HOST:PORT|unix:PATH [--token-file F] "
					   "[--resume TOKEN]");
		}
	}
	if (!addr)
		return sh_fail(sh, "usage: target remote HOST:PORT|unix:PATH [--token-file F] "
				   "[--resume TOKEN]");
	if (sh->remote)
		return sh_fail(sh, "already debugging %s remotely; \"detach\" first",
			       djn_remote_addr(sh->remote->r));
	if (token_file) {
		size_t n = 0;
		if (!(token = read_small(token_file, 4096, &n)))
			return sh_fail(sh, "target remote: --token-file '%s': %s", token_file,
				       strerror(errno ? errno : EINVAL));
		while (n && (token[n - 1] == '\n' || token[n - 1] == '\r' || token[n - 1] == ' '))
			token[--n] = '\0';
	}
	r = djn_remote_connect(addr, token, resume, &err);
	free(token);
	if (!r)
		return sh_fail(sh, "target remote: %s", err.msg);
	sh->remote = djn_xcalloc(1, sizeof(*sh->remote));
	sh->remote->r = r;
	sh->remote->sh = sh;
	djn_remote_on_event(r, on_event, sh->remote);
	djn_remote_watch_flag(r, (volatile int *)&djn_shell_sigint);
	w = djn_remote_welcome(r);
	resumed = cJSON_GetObjectItemCaseSensitive(w, "resumed");
	sh_printf(sh, "Remote debugging using %s (%s; client token %s)\n", addr,
		  cJSON_IsTrue(resumed) ? "reattached" : "new client", djn_remote_token(r));
	sh_json_str(sh, "addr", addr);
	sh_json_str(sh, "token", djn_remote_token(r));
	sh_json_bool(sh, "resumed", cJSON_IsTrue(resumed));
	sh_json_add(sh, "welcome", cJSON_Duplicate(w, true));
	return DJN_CMD_OK;
}

DJN_CMD_FN(cmd_detach)
{
	char addr[300], tok[64];

	if (!sh->remote)
		return sh_fail(sh, "detach: not debugging remotely");
	snprintf(addr, sizeof(addr), "%s", djn_remote_addr(sh->remote->r));
	snprintf(tok, sizeof(tok), "%s", djn_remote_token(sh->remote->r));
	sh_remote_close(sh);
	sh_printf(sh, "Detaching from %s; its sessions stay on the server "
		      "(target remote %s --resume %s)\n", addr, addr, tok);
	sh_json_str(sh, "addr", addr);
	sh_json_str(sh, "token", tok);
	return DJN_CMD_OK;
}

static cJSON *phases_json(const struct djn_remote_phases *p, double div)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddNumberToObject(o, "serialize_us", p->serialize_us / div);
	cJSON_AddNumberToObject(o, "send_us", p->send_us / div);
	cJSON_AddNumberToObject(o, "queue_us", p->queue_us / div);
	cJSON_AddNumberToObject(o, "exec_us", p->exec_us / div);
	cJSON_AddNumberToObject(o, "result_us", p->result_us / div);
	cJSON_AddNumberToObject(o, "receive_us", p->receive_us / div);
	cJSON_AddNumberToObject(o, "total_us", p->total_us / div);
	cJSON_AddNumberToObject(o, "bytes_out", (double)p->bytes_out / div);
	cJSON_AddNumberToObject(o, "bytes_in", (double)p->bytes_in / div);
	return o;
}

DJN_CMD_FN(cmd_info_remote)
{
	struct djn_remote_phases last, sum;
	long n;
	double d;
	static const char *names[] = { "serialize", "send", "queue", "execute",
				       "result serialize", "receive", "total" };

	if (!sh->remote) {
		sh_printf(sh, "Not debugging remotely (\"target remote HOST:PORT\").\n");
		sh_json_bool(sh, "connected", false);
		return DJN_CMD_OK;
	}
	djn_remote_stats(sh->remote->r, &last, &sum, &n);
	d = n ? (double)n : 1;
	sh_printf(sh, "Remote target %s, client token %s\n", djn_remote_addr(sh->remote->r),
		  djn_remote_token(sh->remote->r));
	sh_printf(sh, "%ld request%s, %zu bytes sent, %zu received\n", n, n == 1 ? "" : "s",
		  sum.bytes_out, sum.bytes_in);
	{
		size_t shm_size;
		bool shm = djn_remote_shm(sh->remote->r, &shm_size);
		if (shm)
			sh_printf(sh, "Tensors through shared memory (a %zu-byte segment)\n", shm_size);
		else
			sh_printf(sh, "Tensors through the socket\n");
		sh_json_bool(sh, "shm", shm);
	}
	if (n) {
		double l[7] = { last.serialize_us, last.send_us, last.queue_us, last.exec_us,
				last.result_us, last.receive_us, last.total_us };
		double s[7] = { sum.serialize_us, sum.send_us, sum.queue_us, sum.exec_us,
				sum.result_us, sum.receive_us, sum.total_us };
		sh_printf(sh, "  %-18s %12s %12s\n", "phase", "last (us)", "mean (us)");
		for (int i = 0; i < 7; i++)
			sh_printf(sh, "  %-18s %12.1f %12.1f\n", names[i], l[i], s[i] / d);
	}
	if (sh->remote->last_stop) {
		const cJSON *rs = cJSON_GetObjectItemCaseSensitive(sh->remote->last_stop, "reason");
		const cJSON *ss = cJSON_GetObjectItemCaseSensitive(sh->remote->last_stop, "session");
		sh_printf(sh, "Last stop: %s in session %s\n",
			  cJSON_IsString(rs) ? rs->valuestring : "?",
			  cJSON_IsString(ss) ? ss->valuestring : "?");
		sh_json_add(sh, "last_stop", cJSON_Duplicate(sh->remote->last_stop, true));
	}
	sh_json_bool(sh, "connected", true);
	sh_json_str(sh, "addr", djn_remote_addr(sh->remote->r));
	sh_json_str(sh, "token", djn_remote_token(sh->remote->r));
	sh_json_num(sh, "n_requests", (double)n);
	sh_json_add(sh, "last", phases_json(&last, 1));
	sh_json_add(sh, "mean", phases_json(&sum, d));
	return DJN_CMD_OK;
}

/* Is this line for the client itself?  detach, target, source (it reads a
 * local file and sends its lines), info remote; blank lines and comments. */
static bool local_line(const char *line)
{
	char **w = NULL, msg[256];
	int *off = NULL, n;
	bool local = false;
	const struct djn_cmd *c;

	line += strspn(line, " \t");
	if (!*line || *line == '#')
		return true;
	n = djn_shell_split(line, &w, &off, msg, sizeof(msg));
	if (n > 0 && (c = djn_cmd_find(djn_cmd_table, w[0], "", msg, sizeof(msg)))) {
		local = c->exec == cmd_detach || c->exec == cmd_target_remote ||
			c->exec == cmd_source;
		if (c->exec == cmd_info && n >= 2) {
			const struct djn_cmd *s = djn_cmd_find(c->sub, w[1], "info ", msg, sizeof(msg));
			local = s && s->exec == cmd_info_remote;
		}
	}
	djn_shell_split_free(n < 0 ? 0 : n, w, off);
	return local;
}

/* The .npy files a line names are read here, on the client, and travel
 * with it as f32 vectors; one that does not load travels as its error
 * ("err:PATH"), so the server's shell says what a local one would. */
static int npy_files(const char *line, struct djn_att_out *att, char **bufs, int max)
{
	char **w = NULL, msg[256];
	int *off = NULL, n = djn_shell_split(line, &w, &off, msg, sizeof(msg)), k = 0;

	for (int i = 1; i < n && k < max; i++) {
		size_t len = strlen(w[i]);
		struct djn_err err = { 0 };
		float *v = NULL;
		int nv = 0;
		if (len <= 4 || strcmp(w[i] + len - 4, ".npy") || !strcmp(w[i - 1], "--save"))
			continue;
		if (djn_npy_load(w[i], &v, &nv, &err)) {
			char *name = djn_xmalloc(len + 5);
			sprintf(name, "err:%s", w[i]);
			bufs[k] = djn_xstrdup(err.msg);
			att[k] = (struct djn_att_out){ .name = name, .dtype = "u8", .n_dims = 1,
						       .shape = { (int64_t)strlen(err.msg) },
						       .data = bufs[k], .bytes = strlen(err.msg) };
		} else {
			bufs[k] = (char *)v;
			att[k] = (struct djn_att_out){ .name = djn_xstrdup(w[i]), .dtype = "f32",
						       .n_dims = 1, .shape = { nv }, .data = v,
						       .bytes = sizeof(float) * (size_t)nv };
		}
		k++;
	}
	djn_shell_split_free(n < 0 ? 0 : n, w, off);
	return k;
}

static void remote_lost(struct djn_shell *sh, const char *msg)
{
	fflush(sh->out);
	fprintf(sh->err, "remote: %s; the connection is closed (\"target remote\" again, "
			 "with --resume, takes the sessions back)\n", msg);
	fflush(sh->err);
	sh_remote_close(sh);
	sh->n_failed++;
}

bool sh_remote_exec(struct djn_shell *sh, const char *line, enum djn_cmd_ret *ret)
{
	struct sh_remote *rm = sh->remote;
	struct djn_att_out att[8];
	char *bufs[8];
	int n_att;
	struct djn_err err = { 0 };
	struct djn_remote_reply rep;
	cJSON *msg;
	const cJSON *j;

	if (!rm || (!rm->block && local_line(line)))
		return false;
	n_att = rm->block ? 0 : npy_files(line, att, bufs, 8);
	msg = cJSON_CreateObject();
	cJSON_AddStringToObject(msg, "type", "cmd");
	cJSON_AddStringToObject(msg, "line", line);
	cJSON_AddBoolToObject(msg, "json", sh->json);
	djn_shell_sigint = 0;
	enum djn_status st = djn_remote_call(rm->r, msg, att, n_att, &rep, &err);
	cJSON_Delete(msg);
	for (int i = 0; i < n_att; i++) {
		free((char *)att[i].name);
		free(bufs[i]);
	}
	*ret = DJN_CMD_FAIL;
	if (st) {
		remote_lost(sh, err.msg);
		return true;
	}
	if (!strcmp(rep.f.type, "error")) {
		j = cJSON_GetObjectItemCaseSensitive(rep.f.json, "error");
		if (!djn_remote_alive(rm->r)) {
			remote_lost(sh, cJSON_IsString(j) ? j->valuestring : "error");
		} else {
			fprintf(sh->err, "remote: %s\n", cJSON_IsString(j) ? j->valuestring : "error");
			sh->n_failed++;
		}
		djn_remote_reply_release(&rep);
		return true;
	}
	/* the output, as the server's shell wrote it (the rest of it, when
	 * some streamed) */
	write_output(sh, &rep.f);
	for (int i = 0; i < rep.f.n_att; i++) {
		const struct djn_frame_att *a = &rep.f.att[i];
		if (!strncmp(a->name, "save:", 5) && a->n_dims == 2 && !strcmp(a->dtype, "f32")) {
			/* print --save: the file is written here, on the client */
			float *v = djn_xmalloc(a->bytes + 1);
			memcpy(v, a->data, a->bytes);
			if (djn_npy_save(a->name + 5, v, (int)a->shape[0], (int)a->shape[1], &err)) {
				fprintf(sh->err, "%s\n", err.msg);
				sh->n_failed++;
			}
			free(v);
		}
	}
	j = cJSON_GetObjectItemCaseSensitive(rep.f.json, "n_failed");
	if (cJSON_IsNumber(j))
		sh->n_failed += (long)j->valuedouble;
	sh->json = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rep.f.json, "json"));
	rm->block = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rep.f.json, "block"));
	*ret = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rep.f.json, "ok")) ? DJN_CMD_OK
										 : DJN_CMD_FAIL;
	if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rep.f.json, "quit"))) {
		sh->quit = true;
		*ret = DJN_CMD_QUIT;
		sh_remote_close(sh);
	}
	djn_remote_reply_release(&rep);
	djn_shell_sigint = 0;
	return true;
}

/* `djinn connect ADDR [--token-file F] [--resume T] [shell options]`: the
 * shell, already attached. */
int djn_connect_main(int argc, char **argv)
{
	char **av = djn_xcalloc((size_t)argc + 4, sizeof(char *));
	size_t n = 64;
	char *line;
	int k = 0, rc;

	if (argc < 2 || argv[1][0] == '-') {
		fprintf(stderr, "usage: djinn connect HOST:PORT|unix:PATH [--token-file F] "
				"[--resume TOKEN] [shell options]\n");
		free(av);
		return 2;
	}
	for (int i = 1; i < argc; i++)
		n += 3 * strlen(argv[i]) + 4;
	line = djn_xmalloc(n);
	strcpy(line, "target remote \"");
	for (const char *p = argv[1]; *p; p++) {
		size_t l = strlen(line);
		if (*p == '"' || *p == '\\')
			line[l++] = '\\';
		line[l++] = *p;
		line[l] = '\0';
	}
	strcat(line, "\"");
	av[k++] = argv[0];
	int i = 2;
	for (; i + 1 < argc && (!strcmp(argv[i], "--token-file") || !strcmp(argv[i], "--resume"));
	     i += 2) {
		strcat(line, " ");
		strcat(line, argv[i]);
		strcat(line, " \"");
		strcat(line, argv[i + 1]);
		strcat(line, "\"");
	}
	av[k++] = "-ex";
	av[k++] = line;
	for (; i < argc; i++)
		av[k++] = argv[i];
	rc = djn_shell_main(k, av);
	free(line);
	free(av);
	return rc;
}
