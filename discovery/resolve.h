/*
 * resolve.h - asynchronous name resolution on a libev loop (c-ares).
 *
 * "Resolve NAME to every A and AAAA address, then call back": the caller's
 * loop never blocks on DNS. /etc/hosts and /etc/resolv.conf are read as
 * getaddrinfo(3) would (c-ares also honours CARES_HOSTS). Used by
 * shoal-announce for --target NAME:PORT; written so that shoal's DNS
 * discovery can use it on the control loop too.
 */
#ifndef SHOAL_RESOLVE_H
#define SHOAL_RESOLVE_H

#include <sys/socket.h>
#include <stdbool.h>
#include <stddef.h>

#include <ev.h>

#define RESOLVE_ADDRS_MAX	16	/* addresses kept per answer */

struct resolver;

/*
 * The answer to one resolver_start(). On success (err == NULL) addrs[0, n)
 * holds every address (n >= 1, at most RESOLVE_ADDRS_MAX, duplicates
 * removed, port as asked), valid only during the call. On failure n is 0
 * and err says why ("no such name", "timeout", ...). Not called after
 * resolver_free().
 */
typedef void	resolver_cb(void *arg, const char *name,
		    const struct sockaddr_storage *addrs, size_t n,
		    const char *err);

/* A resolver on loop, or NULL (logged). Free with resolver_free(). */
struct resolver *resolver_new(struct ev_loop *loop);

/*
 * Ask these name servers ("ADDR[:PORT],..." as c-ares'
 * ares_set_servers_ports_csv reads it; IPv6 as [ADDR]:PORT) instead of
 * /etc/resolv.conf's. Each try waits 1 s, two tries. 0, or -1 with a
 * reason in *why.
 */
int	resolver_set_servers(struct resolver *, const char *servers_csv,
	    const char **why);

/* The whole answer to one resolver_query(). */
struct resolve_answer {
	const struct sockaddr_storage *addrs;	/* [n], duplicates removed */
	size_t		 n;
	unsigned	 ttl;		/* smallest TTL of the records, s */
	bool		 nx;		/* the name has no address (NXDOMAIN,
					   NODATA): an answer, not a failure */
	const char	*err;		/* NULL on success; why not */
	/* resolver_srv() only, else NULL: per address, its SRV record's */
	const unsigned short *weight;
	const unsigned short *priority;
};

typedef void	resolver_answer_cb(void *arg, const char *name,
		    const struct resolve_answer *);

/*
 * resolver_start() with up to max addresses and the TTL: cb(arg, name,
 * answer) once, later, from the loop. 0, or -1 with errno.
 */
int	resolver_query(struct resolver *, const char *name, int family,
	    unsigned short port, size_t max, resolver_answer_cb *cb,
	    void *arg);

/*
 * Look up name (a host name or a numeric address) for family (AF_UNSPEC,
 * AF_INET or AF_INET6) and call cb(arg, ...) once, later, from the loop;
 * port goes into every address. name is copied. 0, or -1 with errno.
 */
int	resolver_start(struct resolver *, const char *name, int family,
	    unsigned short port, resolver_cb *cb, void *arg);

/*
 * Look up the SRV records of name (_service._proto.NAME), then every
 * target's A and AAAA addresses, each with its record's port: one answer
 * with up to max addresses, each with its record's weight and priority;
 * ttl is the smallest of the targets' address records. nx when there is
 * no such name or no SRV record. 0, or -1 with errno.
 */
int	resolver_srv(struct resolver *, const char *name, size_t max,
	    resolver_answer_cb *cb, void *arg);

/* Lookups still running (0 when idle). */
size_t	resolver_pending(const struct resolver *);

/* Cancel every lookup (their callbacks are not called), stop watchers,
 * free. NULL is fine. */
void	resolver_free(struct resolver *);

#endif /* SHOAL_RESOLVE_H */
