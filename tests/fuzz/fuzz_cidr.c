/*
 * fuzz_cidr.c - libFuzzer target for the network parser and sets.
 *
 * The input is lines: each is parsed as a network. Properties beyond
 * "no crash, no leak, no UB": a refusal has a short message; an accepted
 * network formats to text that parses back to the same network; the set
 * of every accepted network agrees with a linear scan for addresses
 * taken from the input (and each network's own first address). Seeds:
 * tests/fuzz/corpus/cidr.
 *
 *   build:  clang, -fsanitize=fuzzer,address,undefined (tests/meson.build)
 *   run:    fuzz_cidr -max_total_time=60 WORKDIR tests/fuzz/corpus/cidr
 */
#include <netinet/in.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cidr.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

#define MAXNETS	32

static void
fail(const char *what)
{
	fprintf(stderr, "fuzz_cidr: property violated: %s\n", what);
	abort();
}

static bool
linear(const struct cidr *c, size_t n, int family, const uint8_t *a)
{
	size_t	 i;
	int	 b;

	for (i = 0; i < n; i++) {
		if (c[i].family != family)
			continue;
		for (b = 0; b < c[i].prefix; b++)
			if ((a[b / 8] ^ c[i].addr[b / 8]) & (0x80 >> (b % 8)))
				break;
		if (b == c[i].prefix)
			return true;
	}
	return false;
}

/* Match a (4 or 16 bytes) through the set and the scan. IPv4-mapped
 * addresses and networks are left out of the comparison: the set treats
 * them as IPv4 on purpose, the plain scan does not. */
static void
check(const struct cidr_set *s, const struct cidr *c, size_t n, int family,
    const uint8_t *a)
{
	static const uint8_t	 mapped[12] = { [10] = 0xff, [11] = 0xff };
	struct sockaddr_in	 sin = { .sin_family = AF_INET };
	struct sockaddr_in6	 sin6 = { .sin6_family = AF_INET6 };
	bool			 got;

	if (family == AF_INET) {
		memcpy(&sin.sin_addr, a, 4);
		got = cidr_set_match(s, (struct sockaddr *)&sin);
	} else {
		if (memcmp(a, mapped, 12) == 0)
			return;
		memcpy(&sin6.sin6_addr, a, 16);
		got = cidr_set_match(s, (struct sockaddr *)&sin6);
	}
	if (got != linear(c, n, family, a))
		fail("the set and a linear scan disagree");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t	 mapped[12] = { [10] = 0xff, [11] = 0xff };
	struct cidr		 c[MAXNETS], back;
	struct cidr_set		*s;
	char			 line[128], err[128], txt[CIDR_STRLEN];
	size_t			 n = 0, i, j, len;
	uint8_t			 a[16];

	for (i = 0; i < size && n < MAXNETS; i = j + 1) {
		for (j = i; j < size && data[j] != '\n'; j++)
			;
		len = j - i < sizeof(line) - 1 ? j - i : sizeof(line) - 1;
		memcpy(line, data + i, len);
		line[len] = '\0';
		err[0] = '\0';
		if (cidr_parse(line, &c[n], err, sizeof(err)) == -1) {
			if (err[0] == '\0' || strlen(err) > 80)
				fail("refusal without a short message");
			continue;
		}
		cidr_format(&c[n], txt, sizeof(txt));
		if (cidr_parse(txt, &back, err, sizeof(err)) == -1 ||
		    memcmp(&back, &c[n], sizeof(back)) != 0)
			fail("formatted network does not parse back the same");
		if (c[n].family == AF_INET6 &&
		    memcmp(c[n].addr, mapped, 12) == 0)
			continue;	/* IPv4 by design; see check() */
		n++;
	}
	if ((s = cidr_set_new(c, n)) == NULL)
		fail("set of valid networks refused");
	for (i = 0; i < n; i++)
		check(s, c, n, c[i].family, c[i].addr);
	for (i = 0; i + 16 <= size; i += 16) {
		memcpy(a, data + i, 16);
		check(s, c, n, AF_INET, a);
		check(s, c, n, AF_INET6, a);
	}
	cidr_set_free(s);
	return 0;
}
