/* mapping.c - read-only mmap of a model file. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdlib.h>

#include "model/mapping.h"

struct djn_mapping *djn_mapping_open(const char *path, struct djn_err *err)
{
	struct djn_mapping *m;
	struct stat st;
	void *addr = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		djn_err_set(err, DJN_ERR_IO, "%s: cannot open (%s)", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		djn_err_set(err, DJN_ERR_IO, "%s: not a regular file", path);
		close(fd);
		return NULL;
	}
	if (st.st_size > 0) {
		addr = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (addr == MAP_FAILED) {
			djn_err_set(err, DJN_ERR_IO, "%s: cannot map (%s)", path, strerror(errno));
			close(fd);
			return NULL;
		}
	}
	close(fd);
	m = djn_xcalloc(1, sizeof(*m));
	m->addr = addr;
	m->size = (size_t)st.st_size;
	m->path = djn_xstrdup(path);
	return m;
}

void djn_mapping_close(struct djn_mapping *m)
{
	if (!m)
		return;
	if (m->addr)
		munmap((void *)m->addr, m->size);
	free(m->path);
	free(m);
}
