/*
 * cidr.h - IPv4 and IPv6 networks, and immutable sets of them for access
 * lists ([frontend] allow / deny, accept_proxy_from).
 *
 * A set is built once (at config load or reload) and then only read, so
 * any number of worker threads may match against it without a lock. It
 * keeps each family's networks as sorted, merged, disjoint address ranges:
 * a match is one binary search, O(log n) — about 10 steps for 1 000
 * networks — whatever the prefix lengths.
 *
 * IPv4-mapped IPv6 addresses (::ffff:a.b.c.d, what a dual-stack listener
 * reports for an IPv4 client) are IPv4 addresses here, on both sides: a
 * client ::ffff:10.1.2.3 matches 10.0.0.0/8, and a network written as
 * ::ffff:10.0.0.0/104 is 10.0.0.0/8.
 */
#ifndef SHOAL_CIDR_H
#define SHOAL_CIDR_H

#include <sys/socket.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CIDR_STRLEN	50	/* "[" IPv6 "]/128" and a NUL fit */

/* One network, as written. */
struct cidr {
	int		 family;	/* AF_INET or AF_INET6 */
	int		 prefix;	/* 0-32 or 0-128 */
	uint8_t		 addr[16];	/* network order; IPv4 in [0, 4);
					   no bit set after the prefix */
};

struct cidr_set;

/*
 * Parse "ADDRESS/PREFIX" or a bare "ADDRESS" (a /32 or /128 host) into
 * *c; IPv6 with or without brackets ("[fd00::]/64", "fd00::/64"). Returns
 * 0, or -1 with a message for a config error in err (errlen bytes, e.g.
 * "prefix length must be 0-32"; the caller adds FILE:LINE and the value).
 * Host bits set after the prefix ("10.0.0.1/8") are an error: such a line
 * is more often a typo than a wish.
 */
int		 cidr_parse(const char *text, struct cidr *c, char *err,
		    size_t errlen);

/*
 * Write c as text ("10.0.0.0/8", "fd00::/64"; cidr_parse() reads it back
 * to the same network) into buf (len bytes, CIDR_STRLEN is enough).
 * Returns buf.
 */
const char	*cidr_format(const struct cidr *c, char *buf, size_t len);

/*
 * The set of the n networks list[0, n) (n may be 0: the empty set, which
 * matches nothing). The set owns its own copy. Returns NULL with errno
 * ENOMEM, or EINVAL for a network breaking struct cidr's rules.
 */
struct cidr_set	*cidr_set_new(const struct cidr *list, size_t n);

/* Free a set; NULL is fine. */
void		 cidr_set_free(struct cidr_set *set);

/*
 * Whether the address of sa (AF_INET or AF_INET6; any other family never
 * matches) falls inside one of set's networks. Reads only: safe from any
 * number of threads while nobody frees the set.
 */
bool		 cidr_set_match(const struct cidr_set *set,
		    const struct sockaddr *sa);

/* Whether the set is empty (an empty allow list lets everyone in). */
bool		 cidr_set_empty(const struct cidr_set *set);

#endif /* SHOAL_CIDR_H */
