/*
 * net.h - small socket helpers shared by the proxy, checks and discovery.
 * Syscall-like: 0 or an fd on success, -1 with errno on failure.
 */
#ifndef SHOAL_NET_H
#define SHOAL_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#define NET_ADDRSTRLEN	64	/* "[ffff:...:ffff]:65535" and NUL */

/* Format "1.2.3.4:80" or "[::1]:80" into buf (NET_ADDRSTRLEN). */
const char	*net_addr_str(const struct sockaddr *, char *buf, size_t len);

/* Format the address only, without port. */
const char	*net_host_str(const struct sockaddr *, char *buf, size_t len);

/* Port of an AF_INET/AF_INET6 address, host order. */
int		 net_port(const struct sockaddr *);

/* Set the port (host order) of an AF_INET or AF_INET6 address. Inline:
 * pure modules (lb/proxyproto.c) use it without linking net.c. */
static inline void
net_set_port(struct sockaddr_storage *ss, uint16_t port)
{
	if (ss->ss_family == AF_INET)
		((struct sockaddr_in *)ss)->sin_port = htons(port);
	else
		((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
}

/* True if both have the same family, address and port. */
bool		 net_addr_equal(const struct sockaddr *, const struct sockaddr *);

/*
 * A non-blocking, close-on-exec listening socket bound to addr, with
 * SO_REUSEADDR, SO_REUSEPORT if reuseport, IPV6_V6ONLY for IPv6.
 * Returns the fd, or -1 with errno.
 */
int		 net_listen(const struct sockaddr *, socklen_t, bool reuseport,
		    int backlog);

/*
 * Start a non-blocking connect to addr. Returns the fd (connect completed
 * or in progress: wait for writability, then net_connect_result()), or -1
 * with errno if it failed at once.
 */
int		 net_connect(const struct sockaddr *, socklen_t);

/* The outcome of a non-blocking connect: 0, or -1 with errno set. */
int		 net_connect_result(int fd);

/* TCP_NODELAY on; errors are ignored (not every socket is TCP). */
void		 net_nodelay(int fd);

/* Close so that the peer sees an RST (SO_LINGER {1, 0}); keeps errno. */
void		 net_close_rst(int fd);

/* close(2) that keeps errno. */
void		 net_close(int fd);

/*
 * The one list of this host's own shortages, as opposed to a peer's fault:
 * fds (EMFILE, ENFILE), memory or buffers (ENOMEM, ENOBUFS), local ports
 * (EADDRNOTAVAIL, from connect). net_local_shortage() says what ran out
 * ("local ports (net.ipv4.ip_local_port_range)"...) or NULL;
 * net_local_error() is true for the same errors. Every accept loop pauses
 * on these and retries from a timer (a level-triggered listener would
 * spin); a connect failing with one is not blamed on the server.
 */
const char	*net_local_shortage(int err);
bool		 net_local_error(int err);

/* The address bytes of an AF_INET (4) or AF_INET6 (16) sockaddr. */
const void	*net_addr_bytes(const struct sockaddr *, size_t *len);

/* Same family and address; ports ignored. */
bool		 net_same_host(const struct sockaddr *, const struct sockaddr *);

/* 127.0.0.0/8 or ::1. */
bool		 net_is_loopback(const struct sockaddr *);

/*
 * Whether a connect to sa (address and port) would reach a socket
 * listening on bind: the same address and port, or a wildcard bind
 * (0.0.0.0, [::]) of the same family on that port with sa a loopback
 * address or one of this host's addresses (read with getifaddrs, cached
 * for 5 s). Control loop only. A server for which this holds for one of
 * shoal's own binds would forward every session to shoal itself.
 */
bool		 net_reaches(const struct sockaddr *sa,
		    const struct sockaddr *bind);

#endif /* SHOAL_NET_H */
