/* status.h - status codes and the error record every fallible object carries.
 *
 * Actions return enum djn_status: DJN_OK (0) on success, a negative code on
 * failure.  The human message lives in a struct djn_err owned by the object
 * (or passed in by the caller for constructors), in the form
 *     "<subject>: <what> (<why>)"   e.g.  "model.safetensors: tensor 'x' ends at byte 9, file has 8"
 * lowercase, no final full stop, the subject first.
 */
#ifndef DJINN_STATUS_H
#define DJINN_STATUS_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

enum djn_status {
	DJN_OK = 0,
	DJN_ERR_NOMEM = -1,       /* device or large host allocation failed */
	DJN_ERR_IO = -2,          /* open/read/mmap/write failed */
	DJN_ERR_FORMAT = -3,      /* a file is malformed */
	DJN_ERR_INVALID = -4,     /* a bad argument from the caller or the user */
	DJN_ERR_UNSUPPORTED = -5, /* well-formed but not something we implement */
	DJN_ERR_DEVICE = -6,      /* CUDA / cuBLAS failure */
	DJN_ERR_STATE = -7,       /* the call does not fit the object's state */
	DJN_ERR_RANGE = -8,       /* an index or size out of range */
	DJN_ERR_NOTFOUND = -9,    /* a named thing does not exist */
};

#define DJN_ERRMSG_MAX 512

struct djn_err {
	enum djn_status code;
	char msg[DJN_ERRMSG_MAX];
};

/* Record an error and return its code, so callers can `return djn_err_set(...)`.
 * A NULL err is allowed (the message is dropped). */
enum djn_status djn_err_set(struct djn_err *err, enum djn_status code,
			    const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
enum djn_status djn_err_vset(struct djn_err *err, enum djn_status code,
			     const char *fmt, va_list ap);
/* Prefix the current message with "<prefix>: " (adds context on the way up). */
void djn_err_prefix(struct djn_err *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void djn_err_clear(struct djn_err *err);
const char *djn_status_str(enum djn_status code);

/* Internal invariants only (git's BUG()): prints file:line and aborts. */
#define DJN_ASSERT(x)                                                         \
	do {                                                                  \
		if (!(x))                                                     \
			djn_bug(__FILE__, __LINE__, #x);                      \
	} while (0)
void djn_bug(const char *file, int line, const char *what)
	__attribute__((noreturn));

/* Small host allocations abort on failure (as Redis and tmux do); large
 * buffers (weights, KV, arenas) go through checked paths instead. */
void *djn_xmalloc(size_t n);
void *djn_xcalloc(size_t n, size_t size);
void *djn_xrealloc(void *p, size_t n);
char *djn_xstrdup(const char *s);

#endif
