/* sock.c - the socket options every djinn connection uses, server and
 * client alike (and bench/net_bound.c, so the bound it measures is the same
 * socket's). */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "djinn/server.h"

void djn_net_tune(int fd)
{
	int one = 1;
	const char *e = getenv("DJINN_SOCKBUF");
	int sz = e ? atoi(e) : 0;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (sz > 0) {
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	}
}
