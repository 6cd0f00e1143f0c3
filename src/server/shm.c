/* shm.c - the server's shared-memory segments (docs/protocol.md, "Shared
 * memory"): one per connection whose client on the same host asked for it
 * in its hello.  POSIX shm under an unguessable name (128 random bits),
 * mode 0600, unlinked as soon as the client says it mapped it (or it could
 * not, or a timeout passed, or the connection went); a read's tensor is
 * copied into it and only its place goes on the socket.  The backend
 * page-locks the segment where it can (a GPU's copy into pageable memory is
 * staged by the driver, at a fraction of the pinned bandwidth).  Engine-only. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "djinn/backend.h"
#include "server/server_impl.h"

#define SHM_MIN ((size_t)64 << 10) /* grown by doubling */

static size_t shm_round(size_t bytes)
{
	size_t s = SHM_MIN;

	while (s < bytes && s < ((size_t)1 << 40))
		s <<= 1;
	return s;
}

struct srv_shm *srv_shm_new(struct djn_backend *be, size_t bytes, struct djn_err *err)
{
	struct srv_shm *sg = djn_xcalloc(1, sizeof(*sg));
	uint8_t rnd[16];
	size_t got = 0;

	sg->fd = -1;
	sg->be = be;
	while (got < sizeof(rnd)) {
		ssize_t n = getrandom(rnd + got, sizeof(rnd) - got, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			djn_err_set(err, DJN_ERR_IO, "shm: getrandom: %s", strerror(errno));
			goto fail;
		}
		got += (size_t)n;
	}
	memcpy(sg->name, "/djinn-", 7);
	for (int i = 0; i < 16; i++)
		snprintf(sg->name + 7 + 2 * i, 3, "%02x", rnd[i]);
	sg->fd = shm_open(sg->name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (sg->fd < 0) {
		djn_err_set(err, DJN_ERR_IO, "shm: shm_open: %s", strerror(errno));
		goto fail;
	}
	sg->named = true;
	sg->t_made = srv_now_ns();
	if (srv_shm_grow(sg, bytes, err))
		goto fail;
	return sg;
fail:
	srv_shm_free(sg);
	return NULL;
}

static void unmap(struct srv_shm *sg)
{
	if (!sg->p)
		return;
	if (sg->registered)
		sg->be->i->host_unregister(sg->be, sg->p);
	munmap(sg->p, sg->size);
	sg->p = NULL;
	sg->registered = false;
}

enum djn_status srv_shm_grow(struct srv_shm *sg, size_t bytes, struct djn_err *err)
{
	size_t size = shm_round(bytes);
	void *p;

	if (sg->p && sg->size >= bytes)
		return DJN_OK;
	if (ftruncate(sg->fd, (off_t)size) < 0)
		return djn_err_set(err, DJN_ERR_NOMEM, "shm: %zu bytes: %s", size, strerror(errno));
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, sg->fd, 0);
	if (p == MAP_FAILED)
		return djn_err_set(err, DJN_ERR_NOMEM, "shm: mmap %zu bytes: %s", size,
				   strerror(errno));
	unmap(sg);
	sg->p = p;
	sg->size = size;
	/* pinned where the backend can: a failure costs only speed */
	if (sg->be && sg->be->i->host_register) {
		sg->registered = !sg->be->i->host_register(sg->be, p, size);
		if (!sg->registered && getenv("DJINN_SERVE_LOG"))
			fprintf(stderr, "djinn serve: shm segment not pinned: %s\n", sg->be->err.msg);
	}
	return DJN_OK;
}

void srv_shm_unlink(struct srv_shm *sg)
{
	if (sg && sg->named) {
		shm_unlink(sg->name); /* ENOENT: the client unlinked it first */
		sg->named = false;
	}
}

void srv_shm_free(struct srv_shm *sg)
{
	if (!sg)
		return;
	srv_shm_unlink(sg);
	unmap(sg);
	if (sg->fd >= 0)
		close(sg->fd);
	free(sg);
}
