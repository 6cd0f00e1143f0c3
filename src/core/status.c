/* status.c - error records, status names, and the allocators that abort. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "djinn/status.h"

enum djn_status djn_err_vset(struct djn_err *err, enum djn_status code,
			     const char *fmt, va_list ap)
{
	if (err) {
		err->code = code;
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	}
	return code;
}

enum djn_status djn_err_set(struct djn_err *err, enum djn_status code,
			    const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	djn_err_vset(err, code, fmt, ap);
	va_end(ap);
	return code;
}

void djn_err_prefix(struct djn_err *err, const char *fmt, ...)
{
	char pre[DJN_ERRMSG_MAX], old[DJN_ERRMSG_MAX];
	va_list ap;

	if (!err)
		return;
	va_start(ap, fmt);
	vsnprintf(pre, sizeof(pre), fmt, ap);
	va_end(ap);
	memcpy(old, err->msg, sizeof(old));
	/* truncation of an over-long message is acceptable */
	size_t n = strlen(pre);
	if (n > sizeof(err->msg) - 3)
		n = sizeof(err->msg) - 3;
	memcpy(err->msg, pre, n);
	memcpy(err->msg + n, ": ", 2);
	size_t rest = sizeof(err->msg) - n - 3;
	size_t m = strlen(old);
	if (m > rest)
		m = rest;
	memcpy(err->msg + n + 2, old, m);
	err->msg[n + 2 + m] = '\0';
}

void djn_err_clear(struct djn_err *err)
{
	if (err) {
		err->code = DJN_OK;
		err->msg[0] = '\0';
	}
}

const char *djn_status_str(enum djn_status code)
{
	switch (code) {
	case DJN_OK: return "ok";
	case DJN_ERR_NOMEM: return "out of memory";
	case DJN_ERR_IO: return "i/o error";
	case DJN_ERR_FORMAT: return "bad format";
	case DJN_ERR_INVALID: return "invalid argument";
	case DJN_ERR_UNSUPPORTED: return "unsupported";
	case DJN_ERR_DEVICE: return "device error";
	case DJN_ERR_STATE: return "wrong state";
	case DJN_ERR_RANGE: return "out of range";
	case DJN_ERR_NOTFOUND: return "not found";
	}
	return "unknown error";
}

void djn_bug(const char *file, int line, const char *what)
{
	fprintf(stderr, "djinn: BUG at %s:%d: %s\n", file, line, what);
	abort();
}

static void oom(size_t n)
{
	fprintf(stderr, "djinn: out of memory allocating %zu bytes\n", n);
	abort();
}

void *djn_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (!p)
		oom(n);
	return p;
}

void *djn_xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);

	if (!p)
		oom(n * size);
	return p;
}

void *djn_xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);

	if (!q)
		oom(n);
	return q;
}

char *djn_xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;

	return memcpy(djn_xmalloc(n), s, n);
}
