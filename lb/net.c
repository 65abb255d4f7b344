/*
 * net.c - socket helpers.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "net.h"

#define LOCAL_REFRESH_S	5	/* this host's addresses: cache lifetime */
#define LOCAL_MAX	64	/* addresses remembered */

const char *
net_host_str(const struct sockaddr *sa, char *buf, size_t len)
{
	const struct sockaddr_in	*sin = (const void *)sa;
	const struct sockaddr_in6	*sin6 = (const void *)sa;

	switch (sa->sa_family) {
	case AF_INET:
		inet_ntop(AF_INET, &sin->sin_addr, buf, len);
		break;
	case AF_INET6:
		inet_ntop(AF_INET6, &sin6->sin6_addr, buf, len);
		break;
	default:
		snprintf(buf, len, "?");
	}
	return buf;
}

const char *
net_addr_str(const struct sockaddr *sa, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN];

	net_host_str(sa, host, sizeof(host));
	if (sa->sa_family == AF_INET6)
		snprintf(buf, len, "[%s]:%d", host, net_port(sa));
	else
		snprintf(buf, len, "%s:%d", host, net_port(sa));
	return buf;
}

int
net_port(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)(const void *)sa)->sin_port);
	if (sa->sa_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)(const void *)sa)->sin6_port);
	return 0;
}

bool
net_addr_equal(const struct sockaddr *a, const struct sockaddr *b)
{
	const struct sockaddr_in	*a4 = (const void *)a, *b4 = (const void *)b;
	const struct sockaddr_in6	*a6 = (const void *)a, *b6 = (const void *)b;

	if (a->sa_family != b->sa_family)
		return false;
	if (a->sa_family == AF_INET)
		return a4->sin_port == b4->sin_port &&
		    a4->sin_addr.s_addr == b4->sin_addr.s_addr;
	if (a->sa_family == AF_INET6)
		return a6->sin6_port == b6->sin6_port &&
		    memcmp(&a6->sin6_addr, &b6->sin6_addr, 16) == 0;
	return false;
}

int
net_listen(const struct sockaddr *sa, socklen_t len, bool reuseport,
    int backlog)
{
	int fd, one = 1;

	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (fd == -1)
		return -1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1)
		goto fail;
	if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one,
	    sizeof(one)) == -1)
		goto fail;
	if (sa->sa_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6,
	    IPV6_V6ONLY, &one, sizeof(one)) == -1)
		goto fail;
	if (bind(fd, sa, len) == -1)
		goto fail;
	/* Accepted sockets inherit it: one setsockopt per listener, not per
	 * connection. */
	net_nodelay(fd);
	if (listen(fd, backlog) == -1)
		goto fail;
	return fd;
fail:
	net_close(fd);
	return -1;
}

int
net_connect(const struct sockaddr *sa, socklen_t len)
{
	int fd;

	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (fd == -1)
		return -1;
	net_nodelay(fd);
	if (connect(fd, sa, len) == -1 && errno != EINPROGRESS) {
		net_close(fd);
		return -1;
	}
	return fd;
}

int
net_connect_result(int fd)
{
	int		 err = 0;
	socklen_t	 len = sizeof(err);

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
		return -1;
	if (err != 0) {
		errno = err;
		return -1;
	}
	return 0;
}

void
net_nodelay(int fd)
{
	int one = 1;

	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

const char *
net_local_shortage(int err)
{
	switch (err) {
	case EMFILE:
		return "file descriptors (process limit)";
	case ENFILE:
		return "file descriptors (system limit)";
	case ENOBUFS:
		return "socket buffers";
	case ENOMEM:
		return "memory";
	case EADDRNOTAVAIL:
		return "local ports (net.ipv4.ip_local_port_range)";
	default:
		return NULL;
	}
}

void
net_close_rst(int fd)
{
	struct linger	 l = { .l_onoff = 1, .l_linger = 0 };
	int		 saved = errno;

	(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	close(fd);
	errno = saved;
}

void
net_close(int fd)
{
	int saved = errno;

	if (fd != -1)
		close(fd);
	errno = saved;
}

bool
net_local_error(int err)
{
	return net_local_shortage(err) != NULL;
}

const void *
net_addr_bytes(const struct sockaddr *sa, size_t *len)
{
	if (sa->sa_family == AF_INET) {
		*len = 4;
		return &((const struct sockaddr_in *)(const void *)sa)->sin_addr;
	}
	*len = 16;
	return &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
}

bool
net_same_host(const struct sockaddr *a, const struct sockaddr *b)
{
	const void	*ab, *bb;
	size_t		 al, bl;

	if (a->sa_family != b->sa_family ||
	    (a->sa_family != AF_INET && a->sa_family != AF_INET6))
		return false;
	ab = net_addr_bytes(a, &al);
	bb = net_addr_bytes(b, &bl);
	return memcmp(ab, bb, al) == 0;
}

bool
net_is_loopback(const struct sockaddr *sa)
{
	const struct sockaddr_in	*sin = (const void *)sa;
	const struct sockaddr_in6	*sin6 = (const void *)sa;

	if (sa->sa_family == AF_INET)
		return (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
	return sa->sa_family == AF_INET6 &&
	    IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr);
}

static bool
is_unspecified(const struct sockaddr *sa)
{
	const struct sockaddr_in	*sin = (const void *)sa;
	const struct sockaddr_in6	*sin6 = (const void *)sa;

	if (sa->sa_family == AF_INET)
		return sin->sin_addr.s_addr == htonl(INADDR_ANY);
	return sa->sa_family == AF_INET6 &&
	    IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr);
}

/* Whether sa is one of this host's addresses (cached, LOCAL_REFRESH_S). */
static bool
is_local(const struct sockaddr *sa)
{
	static struct sockaddr_storage	 local[LOCAL_MAX];
	static size_t			 nlocal;
	static time_t			 at;
	struct timespec			 now;
	struct ifaddrs			*ifa, *i;

	clock_gettime(CLOCK_MONOTONIC, &now);
	if (at == 0 || now.tv_sec - at >= LOCAL_REFRESH_S) {
		at = now.tv_sec > 0 ? now.tv_sec : 1;
		nlocal = 0;
		if (getifaddrs(&ifa) == 0) {
			for (i = ifa; i != NULL && nlocal < LOCAL_MAX;
			    i = i->ifa_next) {
				if (i->ifa_addr == NULL)
					continue;
				if (i->ifa_addr->sa_family == AF_INET)
					memcpy(&local[nlocal++], i->ifa_addr,
					    sizeof(struct sockaddr_in));
				else if (i->ifa_addr->sa_family == AF_INET6)
					memcpy(&local[nlocal++], i->ifa_addr,
					    sizeof(struct sockaddr_in6));
			}
			freeifaddrs(ifa);
		}
	}
	for (size_t k = 0; k < nlocal; k++)
		if (net_same_host((const struct sockaddr *)&local[k], sa))
			return true;
	return false;
}

bool
net_reaches(const struct sockaddr *sa, const struct sockaddr *bind)
{
	if (bind->sa_family != sa->sa_family ||
	    (sa->sa_family != AF_INET && sa->sa_family != AF_INET6) ||
	    net_port(bind) != net_port(sa))
		return false;
	if (net_same_host(bind, sa))
		return true;
	if (!is_unspecified(bind))
		return false;
	return net_is_loopback(sa) || is_local(sa);
}
