/*
 * cidr.c - parse networks and match addresses against sets of them.
 *
 * A set stores ranges [lo, hi] of addresses, sorted and merged so that
 * no two overlap or touch: the range holding an address, if any, is the
 * last one whose lo is at most the address. IPv4 ranges are 32-bit
 * numbers; IPv6 ranges are pairs of 64-bit halves (no __int128, so that
 * 32-bit Debian architectures build it too).
 */
#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cidr.h"

struct r4 {
	uint32_t	 lo, hi;
};

struct u128 {
	uint64_t	 h, l;		/* high and low 64 bits */
};

struct r6 {
	struct u128	 lo, hi;
};

struct cidr_set {
	struct r4	*v4;		/* sorted, disjoint, not touching */
	size_t		 n4;
	struct r6	*v6;
	size_t		 n6;
};

static const uint8_t mapped_prefix[12] = {
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff
};

int
cidr_parse(const char *text, struct cidr *c, char *err, size_t errlen)
{
	char		 host[INET6_ADDRSTRLEN + 2];
	const char	*slash, *p;
	size_t		 hlen, alen;
	long		 pfx;
	int		 i;

	memset(c, 0, sizeof(*c));
	slash = strchr(text, '/');
	hlen = slash != NULL ? (size_t)(slash - text) : strlen(text);
	if (hlen >= 2 && text[0] == '[' && text[hlen - 1] == ']') {
		text++;
		hlen -= 2;
	}
	if (hlen == 0 || hlen >= sizeof(host))
		goto bad;
	memcpy(host, text, hlen);
	host[hlen] = '\0';
	if (inet_pton(AF_INET, host, c->addr) == 1) {
		c->family = AF_INET;
		alen = 4;
	} else if (inet_pton(AF_INET6, host, c->addr) == 1) {
		c->family = AF_INET6;
		alen = 16;
	} else
		goto bad;
	pfx = (long)alen * 8;
	if (slash != NULL) {
		p = slash + 1;
		/* 1-3 digits, no sign, no space, no leading zero */
		if (*p == '\0' || strlen(p) > 3 || (p[0] == '0' && p[1]))
			goto badpfx;
		for (pfx = 0; *p != '\0'; p++) {
			if (*p < '0' || *p > '9')
				goto badpfx;
			pfx = pfx * 10 + (*p - '0');
		}
		if (pfx > (long)alen * 8)
			goto badpfx;
	}
	for (i = (int)pfx; i < (int)alen * 8; i++) {
		if (c->addr[i / 8] & (0x80 >> (i % 8))) {
			snprintf(err, errlen, "host bits set after /%ld", pfx);
			return -1;
		}
	}
	c->prefix = (int)pfx;
	return 0;
badpfx:
	snprintf(err, errlen, "prefix length must be 0-%zu", alen * 8);
	return -1;
bad:
	snprintf(err, errlen, "expected ADDRESS/PREFIX, e.g. 192.168.42.0/24 "
	    "or fd00::/64");
	return -1;
}

const char *
cidr_format(const struct cidr *c, char *buf, size_t len)
{
	char	 a[INET6_ADDRSTRLEN];

	if (inet_ntop(c->family, c->addr, a, sizeof(a)) == NULL)
		snprintf(a, sizeof(a), "?");
	snprintf(buf, len, "%s/%d", a, c->prefix);
	return buf;
}

static uint32_t
load32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
}

static uint64_t
load64(const uint8_t *p)
{
	return (uint64_t)load32(p) << 32 | load32(p + 4);
}

static int
u128_cmp(struct u128 a, struct u128 b)
{
	if (a.h != b.h)
		return a.h < b.h ? -1 : 1;
	if (a.l != b.l)
		return a.l < b.l ? -1 : 1;
	return 0;
}

/* The range of an IPv4 network. */
static struct r4
range4(const uint8_t *addr, int prefix)
{
	struct r4	 r;
	uint32_t	 host;

	host = prefix == 0 ? UINT32_MAX : (UINT32_C(1) << (32 - prefix)) - 1;
	r.lo = load32(addr) & ~host;
	r.hi = r.lo | host;
	return r;
}

/* The range of an IPv6 network. */
static struct r6
range6(const uint8_t *addr, int prefix)
{
	struct r6	 r;
	uint64_t	 hh, hl;	/* host masks of each half */

	if (prefix <= 64) {
		hh = prefix == 0 ? UINT64_MAX :
		    (UINT64_C(1) << (64 - prefix)) - 1;
		hl = UINT64_MAX;
	} else {
		hh = 0;
		hl = prefix == 128 ? 0 : (UINT64_C(1) << (128 - prefix)) - 1;
	}
	r.lo.h = load64(addr) & ~hh;
	r.lo.l = load64(addr + 8) & ~hl;
	r.hi.h = r.lo.h | hh;
	r.hi.l = r.lo.l | hl;
	return r;
}

static int
r4_cmp(const void *a, const void *b)
{
	const struct r4	*x = a, *y = b;

	return x->lo < y->lo ? -1 : x->lo > y->lo;
}

static int
r6_cmp(const void *a, const void *b)
{
	const struct r6	*x = a, *y = b;

	return u128_cmp(x->lo, y->lo);
}

/* Sort and merge v[0, n) in place; returns the new count. */
static size_t
merge4(struct r4 *v, size_t n)
{
	size_t	 i, out = 0;

	if (n == 0)
		return 0;
	qsort(v, n, sizeof(*v), r4_cmp);
	for (i = 1; i < n; i++) {
		if (v[out].hi == UINT32_MAX || v[i].lo <= v[out].hi + 1) {
			if (v[i].hi > v[out].hi)
				v[out].hi = v[i].hi;
		} else
			v[++out] = v[i];
	}
	return out + 1;
}

static bool
u128_next_reaches(struct u128 hi, struct u128 lo)	/* lo <= hi + 1 */
{
	struct u128	 h1 = hi;

	if (hi.h == UINT64_MAX && hi.l == UINT64_MAX)
		return true;
	if (++h1.l == 0)
		h1.h++;
	return u128_cmp(lo, h1) <= 0;
}

static size_t
merge6(struct r6 *v, size_t n)
{
	size_t	 i, out = 0;

	if (n == 0)
		return 0;
	qsort(v, n, sizeof(*v), r6_cmp);
	for (i = 1; i < n; i++) {
		if (u128_next_reaches(v[out].hi, v[i].lo)) {
			if (u128_cmp(v[i].hi, v[out].hi) > 0)
				v[out].hi = v[i].hi;
		} else
			v[++out] = v[i];
	}
	return out + 1;
}

/* An IPv6 network inside ::ffff:0:0/96, which is an IPv4 one. */
static bool
is_mapped_net(const struct cidr *c)
{
	return c->family == AF_INET6 && c->prefix >= 96 &&
	    memcmp(c->addr, mapped_prefix, sizeof(mapped_prefix)) == 0;
}

struct cidr_set *
cidr_set_new(const struct cidr *list, size_t n)
{
	struct cidr_set	*set;
	size_t		 i;

	for (i = 0; i < n; i++) {
		if ((list[i].family != AF_INET || list[i].prefix < 0 ||
		    list[i].prefix > 32) && (list[i].family != AF_INET6 ||
		    list[i].prefix < 0 || list[i].prefix > 128)) {
			errno = EINVAL;
			return NULL;
		}
	}
	if ((set = calloc(1, sizeof(*set))) == NULL)
		return NULL;
	/* n of each is enough; an empty family allocates one element */
	set->v4 = calloc(n ? n : 1, sizeof(*set->v4));
	set->v6 = calloc(n ? n : 1, sizeof(*set->v6));
	if (set->v4 == NULL || set->v6 == NULL) {
		cidr_set_free(set);
		errno = ENOMEM;
		return NULL;
	}
	for (i = 0; i < n; i++) {
		if (list[i].family == AF_INET)
			set->v4[set->n4++] = range4(list[i].addr,
			    list[i].prefix);
		else if (is_mapped_net(&list[i]))
			set->v4[set->n4++] = range4(list[i].addr + 12,
			    list[i].prefix - 96);
		else
			set->v6[set->n6++] = range6(list[i].addr,
			    list[i].prefix);
	}
	set->n4 = merge4(set->v4, set->n4);
	set->n6 = merge6(set->v6, set->n6);
	return set;
}

void
cidr_set_free(struct cidr_set *set)
{
	if (set == NULL)
		return;
	free(set->v4);
	free(set->v6);
	free(set);
}

bool
cidr_set_empty(const struct cidr_set *set)
{
	return set->n4 == 0 && set->n6 == 0;
}

static bool
match4(const struct cidr_set *set, uint32_t a)
{
	size_t	 lo = 0, hi = set->n4, mid;

	/* the first range with lo > a is at index lo afterwards */
	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (set->v4[mid].lo <= a)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo > 0 && a <= set->v4[lo - 1].hi;
}

static bool
match6(const struct cidr_set *set, struct u128 a)
{
	size_t	 lo = 0, hi = set->n6, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (u128_cmp(set->v6[mid].lo, a) <= 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo > 0 && u128_cmp(a, set->v6[lo - 1].hi) <= 0;
}

bool
cidr_set_match(const struct cidr_set *set, const struct sockaddr *sa)
{
	const struct sockaddr_in	*sin = (const struct sockaddr_in *)sa;
	const struct sockaddr_in6	*sin6 = (const struct sockaddr_in6 *)sa;
	const uint8_t			*b;
	struct u128			 a;

	if (sa->sa_family == AF_INET)
		return match4(set, ntohl(sin->sin_addr.s_addr));
	if (sa->sa_family != AF_INET6)
		return false;
	b = sin6->sin6_addr.s6_addr;
	if (memcmp(b, mapped_prefix, sizeof(mapped_prefix)) == 0)
		return match4(set, load32(b + 12));
	a.h = load64(b);
	a.l = load64(b + 8);
	return match6(set, a);
}
