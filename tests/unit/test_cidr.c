/*
 * test_cidr.c - networks and sets: the parser's verdicts and messages,
 * text round trips, matching at the edges of a network, IPv4-mapped
 * clients and networks, merging, agreement with a plain linear scan over
 * random sets, and the cost of a match in a set of 1 000 networks.
 */
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/un.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cidr.h"
#include "t.h"

static struct sockaddr_storage
addr(const char *a)
{
	struct sockaddr_storage	 ss;
	struct sockaddr_in	*sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)&ss;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, a, &sin->sin_addr) == 1)
		sin->sin_family = AF_INET;
	else if (inet_pton(AF_INET6, a, &sin6->sin6_addr) == 1)
		sin6->sin6_family = AF_INET6;
	else
		abort();
	return ss;
}

/* A set from text networks (NULL-terminated). */
static struct cidr_set *
set_of(const char *const *nets)
{
	struct cidr	 c[64];
	char		 err[128];
	size_t		 n = 0;

	for (; *nets != NULL; nets++)
		if (cidr_parse(*nets, &c[n++], err, sizeof(err)) == -1)
			abort();
	return cidr_set_new(c, n);
}

static bool
in(const struct cidr_set *s, const char *a)
{
	struct sockaddr_storage	 ss = addr(a);

	return cidr_set_match(s, (struct sockaddr *)&ss);
}

static void
test_parse(void)
{
	static const struct {
		const char	*in;
		const char	*out;	/* cidr_format(), or NULL: refused */
		const char	*err;
	} t[] = {
		{ "10.0.0.0/8", "10.0.0.0/8", NULL },
		{ "10.1.2.3", "10.1.2.3/32", NULL },
		{ "0.0.0.0/0", "0.0.0.0/0", NULL },
		{ "::1", "::1/128", NULL },
		{ "::/0", "::/0", NULL },
		{ "fd00::/64", "fd00::/64", NULL },
		{ "[fd00::]/64", "fd00::/64", NULL },
		{ "[::1]", "::1/128", NULL },
		{ "2001:DB8::/32", "2001:db8::/32", NULL },
		{ "::ffff:10.0.0.0/104", "::ffff:10.0.0.0/104", NULL },
		{ "10.0.0.1/8", NULL, "host bits set after /8" },
		{ "fd00::1/64", NULL, "host bits set after /64" },
		{ "10.0.0.0/33", NULL, "prefix length must be 0-32" },
		{ "fd00::/129", NULL, "prefix length must be 0-128" },
		{ "10.0.0.0/", NULL, "prefix length must be 0-32" },
		{ "10.0.0.0/-1", NULL, "prefix length must be 0-32" },
		{ "10.0.0.0/+8", NULL, "prefix length must be 0-32" },
		{ "10.0.0.0/ 8", NULL, "prefix length must be 0-32" },
		{ "10.0.0.0/08", NULL, "prefix length must be 0-32" },
		{ "10.0.0.0/8x", NULL, "prefix length must be 0-32" },
		{ "10.0.0.0/0008", NULL, "prefix length must be 0-32" },
		{ "lab-net/24", NULL, "expected ADDRESS/PREFIX" },
		{ "", NULL, "expected ADDRESS/PREFIX" },
		{ "/8", NULL, "expected ADDRESS/PREFIX" },
		{ "[]/8", NULL, "expected ADDRESS/PREFIX" },
		{ "10.0.0/8", NULL, "expected ADDRESS/PREFIX" },
		{ "010.0.0.0/8", NULL, "expected ADDRESS/PREFIX" },
		{ " 10.0.0.0/8", NULL, "expected ADDRESS/PREFIX" },
		{ "10.0.0.0 /8", NULL, "expected ADDRESS/PREFIX" },
		{ "[10.0.0.0/8", NULL, "expected ADDRESS/PREFIX" },
		{ "fd00::/64/64", NULL, "prefix length must be 0-128" },
		{ "fe80::1%eth0", NULL, "expected ADDRESS/PREFIX" },
		{ "1.2.3.4:80", NULL, "expected ADDRESS/PREFIX" },
	};
	struct cidr	 c;
	char		 err[128], out[CIDR_STRLEN];
	size_t		 i;
	int		 r;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		err[0] = '\0';
		r = cidr_parse(t[i].in, &c, err, sizeof(err));
		if (t[i].out != NULL)
			ok(r == 0 && strcmp(cidr_format(&c, out, sizeof(out)),
			    t[i].out) == 0, "'%s' parses as %s (got %s%s)",
			    t[i].in, t[i].out, r == 0 ? out : "error: ",
			    r == 0 ? "" : err);
		else
			ok(r == -1 && strncmp(err, t[i].err, strlen(t[i].err)) == 0,
			    "'%s' refused: %s (got %d '%s')", t[i].in,
			    t[i].err, r, err);
	}
	ok(cidr_parse("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", &c, err,
	    sizeof(err)) == 0 && strlen(cidr_format(&c, out, sizeof(out))) <
	    CIDR_STRLEN, "the longest network fits CIDR_STRLEN");
}

static void
test_match(void)
{
	static const char *const nets[] = {
		"10.0.0.0/8", "192.168.42.0/24", "172.16.5.5",
		"fd00::/64", "2001:db8::1", "::ffff:198.51.100.0/120", NULL
	};
	struct cidr_set		*s = set_of(nets);
	struct cidr_set		*e, *all;
	struct sockaddr_un	 un = { .sun_family = AF_UNIX };
	static const char *const every[] = { "0.0.0.0/0", "::/0", NULL };
	static const char *const none[] = { NULL };

	ok(s != NULL && !cidr_set_empty(s), "a set of 6 networks");
	ok(in(s, "10.0.0.0") && in(s, "10.255.255.255") && in(s, "10.1.2.3"),
	    "10.0.0.0/8: first, last and middle addresses match");
	ok(!in(s, "9.255.255.255") && !in(s, "11.0.0.0"),
	    "10.0.0.0/8: the neighbours do not");
	ok(in(s, "192.168.42.7") && !in(s, "192.168.43.7"), "192.168.42.0/24");
	ok(in(s, "172.16.5.5") && !in(s, "172.16.5.4") && !in(s, "172.16.5.6"),
	    "a bare IPv4 address is one host");
	ok(in(s, "fd00::") && in(s, "fd00::ffff:ffff:ffff:ffff") &&
	    !in(s, "fd00:0:0:1::") && !in(s, "fcff:ffff:ffff:ffff::"),
	    "fd00::/64: its edges match, its neighbours do not");
	ok(in(s, "2001:db8::1") && !in(s, "2001:db8::2"),
	    "a bare IPv6 address is one host");
	ok(in(s, "::ffff:10.9.8.7") && in(s, "::ffff:192.168.42.1"),
	    "IPv4-mapped clients match IPv4 networks");
	ok(!in(s, "::10.9.8.7") && !in(s, "64:ff9b::10.9.8.7"),
	    "IPv4-compatible and NAT64 addresses are IPv6, not IPv4");
	ok(in(s, "198.51.100.77") && in(s, "::ffff:198.51.100.77") &&
	    !in(s, "198.51.101.1"),
	    "a network inside ::ffff:0:0/96 is the IPv4 network it names");
	ok(!cidr_set_match(s, (struct sockaddr *)&un),
	    "a unix address never matches");

	e = cidr_set_new(NULL, 0);
	ok(e != NULL && cidr_set_empty(e) && !in(e, "10.0.0.1") &&
	    !in(e, "::1"), "the empty set matches nothing");
	all = set_of(every);
	ok(all != NULL && in(all, "0.0.0.0") && in(all, "255.255.255.255") &&
	    in(all, "::") && in(all, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")
	    && in(all, "::ffff:1.2.3.4"), "0.0.0.0/0 and ::/0 match everything");
	cidr_set_free(s);
	cidr_set_free(e);
	cidr_set_free(all);
	s = set_of(none);
	ok(s != NULL && cidr_set_empty(s), "a set built from no networks");
	cidr_set_free(s);
	cidr_set_free(NULL);
}

static void
test_merge(void)
{
	static const char *const nets[] = {
		"10.0.0.0/25", "10.0.0.128/25", "10.0.0.0/24", "10.0.1.0/24",
		"10.0.0.64/26", "255.255.255.255", "255.255.255.0/24",
		"::/1", "8000::/1", "fd00::/8", NULL
	};
	struct cidr_set	*s = set_of(nets);
	struct cidr	 bad = { .family = AF_INET, .prefix = 33 };

	ok(in(s, "10.0.0.0") && in(s, "10.0.1.255") && !in(s, "10.0.2.0") &&
	    !in(s, "9.255.255.255"), "overlapping and touching networks merge");
	ok(in(s, "255.255.255.255") && in(s, "255.255.255.0") &&
	    !in(s, "255.255.254.255"), "the top of the IPv4 space");
	ok(in(s, "::") && in(s, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff") &&
	    in(s, "7fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff") && in(s, "8000::"),
	    "two IPv6 halves cover it all");
	cidr_set_free(s);
	errno = 0;
	ok(cidr_set_new(&bad, 1) == NULL && errno == EINVAL,
	    "a prefix of 33 for IPv4: EINVAL");
}

static uint64_t	 rng = 0x9e3779b97f4a7c15ULL;

static uint64_t
rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* A random network, biased towards a small space so that sets overlap
 * and addresses hit them. */
static void
rnd_cidr(struct cidr *c)
{
	int	 i;

	memset(c, 0, sizeof(*c));
	c->family = rnd() & 1 ? AF_INET : AF_INET6;
	if (c->family == AF_INET) {
		c->addr[0] = 10;
		c->addr[1] = (uint8_t)(rnd() & 3);
		c->addr[2] = (uint8_t)rnd();
		c->addr[3] = (uint8_t)rnd();
		c->prefix = 8 + (int)(rnd() % 25);
	} else {
		c->addr[0] = 0xfd;
		c->addr[1] = (uint8_t)(rnd() & 3);
		for (i = 2; i < 16; i++)
			c->addr[i] = (uint8_t)rnd();
		c->prefix = 8 + (int)(rnd() % 121);
	}
	for (i = c->prefix; i < (c->family == AF_INET ? 32 : 128); i++)
		c->addr[i / 8] &= (uint8_t)~(0x80 >> (i % 8));
}

static bool
linear(const struct cidr *c, size_t n, const struct sockaddr_storage *ss)
{
	const uint8_t	*a;
	size_t		 i;
	int		 b, alen;

	if (ss->ss_family == AF_INET) {
		a = (const uint8_t *)&((const struct sockaddr_in *)ss)->sin_addr;
		alen = 4;
	} else {
		a = ((const struct sockaddr_in6 *)ss)->sin6_addr.s6_addr;
		alen = 16;
	}
	for (i = 0; i < n; i++) {
		if ((c[i].family == AF_INET) != (alen == 4))
			continue;
		for (b = 0; b < c[i].prefix; b++)
			if ((a[b / 8] ^ c[i].addr[b / 8]) & (0x80 >> (b % 8)))
				break;
		if (b == c[i].prefix)
			return true;
	}
	return false;
}

/* A random address near the networks: often inside one, often at an
 * edge (a network's first or last address, or one beyond). */
static void
rnd_addr(const struct cidr *c, size_t n, struct sockaddr_storage *ss)
{
	struct cidr	 r;
	uint8_t		*a;
	int		 i, alen;

	memset(ss, 0, sizeof(*ss));
	if (n > 0 && rnd() % 2)
		r = c[rnd() % n];
	else
		rnd_cidr(&r);
	alen = r.family == AF_INET ? 4 : 16;
	ss->ss_family = (sa_family_t)r.family;
	a = r.family == AF_INET ?
	    (uint8_t *)&((struct sockaddr_in *)ss)->sin_addr :
	    ((struct sockaddr_in6 *)ss)->sin6_addr.s6_addr;
	memcpy(a, r.addr, (size_t)alen);
	switch (rnd() % 4) {
	case 0:			/* inside, anywhere */
		for (i = r.prefix; i < alen * 8; i++)
			if (rnd() & 1)
				a[i / 8] |= (uint8_t)(0x80 >> (i % 8));
		break;
	case 1:			/* the last address */
		for (i = r.prefix; i < alen * 8; i++)
			a[i / 8] |= (uint8_t)(0x80 >> (i % 8));
		break;
	case 2:			/* one before the first */
		for (i = alen - 1; i >= 0 && a[i]-- == 0; i--)
			;
		break;
	default:		/* the first */
		break;
	}
}

static void
test_random(void)
{
	struct cidr		 c[300];
	struct sockaddr_storage	 ss;
	struct cidr_set		*s;
	size_t			 n, k, bad = 0, hits = 0, tries = 0;
	int			 round;

	for (round = 0; round < 200; round++) {
		n = rnd() % 300;
		for (k = 0; k < n; k++)
			rnd_cidr(&c[k]);
		if ((s = cidr_set_new(c, n)) == NULL)
			abort();
		for (k = 0; k < 500; k++) {
			rnd_addr(c, n, &ss);
			tries++;
			if (linear(c, n, &ss))
				hits++;
			if (cidr_set_match(s, (struct sockaddr *)&ss) !=
			    linear(c, n, &ss))
				bad++;
		}
		cidr_set_free(s);
	}
	ok(bad == 0 && hits > tries / 20 && hits < tries - tries / 20,
	    "200 random sets x 500 addresses: the set agrees with a linear "
	    "scan (%zu disagreements, %zu of %zu inside)", bad, hits, tries);
}

static double
now_s(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
test_cost(void)
{
	struct cidr		 c[1000];
	struct sockaddr_storage	*a;
	struct cidr_set		*s;
	volatile size_t		 hits = 0;
	double			 t0, ns;
	size_t			 k, N = 1000000;

	for (k = 0; k < 1000; k++)
		rnd_cidr(&c[k]);
	s = cidr_set_new(c, 1000);
	a = calloc(1024, sizeof(*a));
	for (k = 0; k < 1024; k++)
		rnd_addr(c, 1000, &a[k]);
	t0 = now_s();
	for (k = 0; k < N; k++)
		hits += cidr_set_match(s, (struct sockaddr *)&a[k & 1023]);
	ns = (now_s() - t0) * 1e9 / (double)N;
	printf("# 1 000 networks: %.0f ns per match (%zu hits)\n", ns,
	    (size_t)hits);
	/* a generous bound: the machine may be busy; the figure is printed */
	ok(ns < 20000, "1 000 networks: a match costs %.0f ns (< 20 us)", ns);
	free(a);
	cidr_set_free(s);
}

int
main(void)
{
	test_parse();
	test_match();
	test_merge();
	test_random();
	test_cost();
	return done_testing();
}
