/* output.c - how results leave the shell: text for people, or one JSON
 * object per command for tools (--json), and the formatting both share. */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "shell/shell_impl.h"

static void buf_append(char **buf, size_t *len, size_t *cap, const char *p, size_t n)
{
	if (*len + n + 1 > *cap) {
		*cap = (*len + n + 1) * 2;
		*buf = djn_xrealloc(*buf, *cap);
	}
	memcpy(*buf + *len, p, n);
	*len += n;
	(*buf)[*len] = '\0';
}

void sh_write(struct djn_shell *sh, const char *p, size_t n)
{
	if (sh->json) {
		buf_append(&sh->text, &sh->text_len, &sh->text_cap, p, n);
		return;
	}
	if (sh->midline) {
		fputc('\n', sh->out);
		sh->midline = false;
	}
	fwrite(p, 1, n, sh->out);
}

void sh_printf(struct djn_shell *sh, const char *fmt, ...)
{
	char small[512], *p = small;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(small)) {
		p = djn_xmalloc((size_t)n + 1);
		va_start(ap, fmt);
		vsnprintf(p, (size_t)n + 1, fmt, ap);
		va_end(ap);
	}
	sh_write(sh, p, (size_t)n);
	if (p != small)
		free(p);
}

void sh_stream(struct djn_shell *sh, const char *p, size_t n)
{
	if (!n)
		return;
	if (sh->json) {
		buf_append(&sh->gen, &sh->gen_len, &sh->gen_cap, p, n);
		return;
	}
	fwrite(p, 1, n, sh->out);
	fflush(sh->out);
	sh->midline = p[n - 1] != '\n';
}

enum djn_cmd_ret sh_fail(struct djn_shell *sh, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(sh->errmsg, sizeof(sh->errmsg), fmt, ap);
	va_end(ap);
	return DJN_CMD_FAIL;
}

void sh_fmt_float(const struct djn_shell *sh, double v, char *buf, size_t n)
{
	if (isnan(v))
		snprintf(buf, n, "nan");
	else if (isinf(v))
		snprintf(buf, n, v > 0 ? "inf" : "-inf");
	else
		snprintf(buf, n, "%.*g", sh->precision, v);
}

void sh_json_num(struct djn_shell *sh, const char *key, double v)
{
	if (sh->res)
		cJSON_AddItemToObject(sh->res, key,
				      isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull());
}

void sh_json_str(struct djn_shell *sh, const char *key, const char *v)
{
	if (sh->res)
		cJSON_AddItemToObject(sh->res, key, v ? cJSON_CreateString(v) : cJSON_CreateNull());
}

void sh_json_bool(struct djn_shell *sh, const char *key, bool v)
{
	if (sh->res)
		cJSON_AddBoolToObject(sh->res, key, v);
}

void sh_json_add(struct djn_shell *sh, const char *key, cJSON *item)
{
	if (sh->res)
		cJSON_AddItemToObject(sh->res, key, item);
	else
		cJSON_Delete(item);
}

void sh_json_emit(struct djn_shell *sh, cJSON *obj)
{
	char *s = cJSON_PrintUnformatted(obj);

	if (s) {
		fprintf(sh->out, "%s\n", s);
		free(s);
	}
	fflush(sh->out);
}

void sh_escape(const char *p, size_t len, char *buf, size_t n)
{
	size_t o = 0;

	if (!n)
		return;
	for (size_t i = 0; i < len && o + 5 < n; i++) {
		unsigned char c = (unsigned char)p[i];
		switch (c) {
		case '\n': buf[o++] = '\\'; buf[o++] = 'n'; break;
		case '\t': buf[o++] = '\\'; buf[o++] = 't'; break;
		case '\r': buf[o++] = '\\'; buf[o++] = 'r'; break;
		case '"': buf[o++] = '\\'; buf[o++] = '"'; break;
		case '\\': buf[o++] = '\\'; buf[o++] = '\\'; break;
		default:
			if (c < 0x20 || c == 0x7f)
				o += (size_t)snprintf(buf + o, n - o, "\\x%02x", c);
			else
				buf[o++] = (char)c;
		}
	}
	buf[o] = '\0';
}
