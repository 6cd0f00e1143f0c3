/* net_bound.c - the bounds of a remote tensor read, measured on this machine
 * for the same bytes: a plain memcpy (one host copy into warm memory) and a
 * raw TCP transfer over loopback from another process (what the kernel's two
 * copies and the socket cost, with no protocol at all), each as a request
 * and its whole reply, as bench/remote_bench.sh's reads are.  A benchmark,
 * not a test: it prints one JSON object.
 *
 * usage: net_bound BYTES [REPS]   (REPS default 20; the best of 3 rounds) */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "djinn/server.h"

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "net_bound: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			die("send");
		}
		p += w;
		n -= (size_t)w;
	}
}

static void read_all(int fd, char *p, size_t n)
{
	while (n) {
		ssize_t r = recv(fd, p, n, MSG_WAITALL);
		if (r <= 0) {
			if (r < 0 && errno == EINTR)
				continue;
			die("recv");
		}
		p += r;
		n -= (size_t)r;
	}
}

struct server {
	int listen_fd;
	size_t bytes;
	int n;
};

/* The "server": for each one-byte request, the whole tensor back. */
static void serve(struct server *s)
{
	int fd = accept(s->listen_fd, NULL, NULL);
	char *buf = malloc(s->bytes), req;

	if (fd < 0 || !buf)
		die("accept");
	memset(buf, 1, s->bytes);
	djn_net_tune(fd);
	for (int i = 0; i < s->n; i++) {
		read_all(fd, &req, 1);
		write_all(fd, buf, s->bytes);
	}
	close(fd);
	free(buf);
}

static double socket_gbps(size_t bytes, int reps)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	struct server s = { .bytes = bytes, .n = 3 * reps + 1 };
	pid_t pid;
	char *buf = malloc(bytes), req = 'r';
	double best = 0;
	int fd;

	if (!buf)
		die("malloc");
	if ((s.listen_fd = socket(AF_INET, SOCK_STREAM, 0)) < 0 ||
	    bind(s.listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(s.listen_fd, 1) < 0 ||
	    getsockname(s.listen_fd, (struct sockaddr *)&sa, &sl) < 0)
		die("listen");
	/* the server is another process, as `djinn serve` is */
	if ((pid = fork()) < 0)
		die("fork");
	if (pid == 0) {
		serve(&s);
		_exit(0);
	}
	if ((fd = socket(AF_INET, SOCK_STREAM, 0)) < 0 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("connect");
	djn_net_tune(fd);
	write_all(fd, &req, 1); /* warm up: the buffers' pages, the socket's */
	read_all(fd, buf, bytes);
	for (int round = 0; round < 3; round++) {
		double t = now();
		for (int i = 0; i < reps; i++) {
			write_all(fd, &req, 1);
			read_all(fd, buf, bytes);
		}
		t = (double)bytes * reps / (now() - t) / 1e9;
		if (t > best)
			best = t;
	}
	waitpid(pid, NULL, 0);
	close(fd);
	close(s.listen_fd);
	free(buf);
	return best;
}

static double memcpy_gbps(size_t bytes, int reps)
{
	char *a = malloc(bytes), *b = malloc(bytes);
	double best = 0;

	if (!a || !b)
		die("malloc");
	memset(a, 1, bytes);
	memset(b, 2, bytes);
	for (int round = 0; round < 3; round++) {
		double t = now();
		for (int i = 0; i < reps; i++) {
			memcpy(b, a, bytes);
			a[i % bytes] = b[(i * 7) % bytes]; /* keep the copies */
		}
		t = (double)bytes * reps / (now() - t) / 1e9;
		if (t > best)
			best = t;
	}
	free(a);
	free(b);
	return best;
}

int main(int argc, char **argv)
{
	long long bytes = argc > 1 ? atoll(argv[1]) : 0;
	int reps = argc > 2 ? atoi(argv[2]) : 20;

	if (bytes <= 0 || bytes > (1LL << 32) || reps <= 0) {
		fprintf(stderr, "usage: net_bound BYTES [REPS]\n");
		return 2;
	}
	printf("{\"bytes\": %lld, \"memcpy_gbps\": %.3f, \"socket_gbps\": %.3f}\n", bytes,
	       memcpy_gbps((size_t)bytes, reps), socket_gbps((size_t)bytes, reps));
	return 0;
}
