/*
 * fuzz_clienthello.c - libFuzzer target for the ClientHello parser and
 * the SNI route matcher.
 *
 * Properties checked beyond "no crash, no leak, no UB": a refusal has a
 * reason and stands whatever bytes follow; an accepted hello's len lies
 * within the input, its prefixes ask for more, and bytes after it change
 * nothing; the SNI is a NUL-ended host name of sni_len bytes, the ALPN
 * copy walks to exactly alpn_len in alpn_count entries; a route made
 * from an accepted SNI matches that SNI. Seeds: tests/fuzz/corpus/
 * clienthello (captures from openssl s_client and curl, 7-byte records,
 * HTTP, SSLv2).
 *
 *   build:  clang, -fsanitize=fuzzer,address,undefined (tests/meson.build)
 *   run:    fuzz_clienthello -max_total_time=60 WORKDIR \
 *               tests/fuzz/corpus/clienthello
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clienthello.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static void
fail(const char *what)
{
	fprintf(stderr, "fuzz_clienthello: property violated: %s\n", what);
	abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t		 more[CLIENTHELLO_MAX * 2 + 64];
	struct clienthello	 ch, ch2;
	struct clienthello_route r;
	const char		*why, *why2;
	enum clienthello_verdict v;
	size_t			 off;
	int			 n;

	if (size > CLIENTHELLO_MAX * 2)
		return 0;
	v = clienthello_parse(data, size, &ch, &why);
	if (v == CLIENTHELLO_NEED_MORE)
		return 0;
	memcpy(more, data, size);
	memcpy(more + size, "\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00", 10);
	if (v != CLIENTHELLO_OK) {
		if (why == NULL || why[0] == '\0')
			fail("refusal without a reason");
		if (clienthello_parse(more, size + 10, &ch2, &why2) != v)
			fail("a refusal changed with more bytes");
		return 0;
	}
	if (ch.len == 0 || ch.len > size)
		fail("len outside the input");
	if (clienthello_parse(data, ch.len, &ch2, &why2) != CLIENTHELLO_OK ||
	    clienthello_parse(data, ch.len - 1, &ch2, &why2) !=
	    CLIENTHELLO_NEED_MORE)
		fail("the hello is not exactly len bytes");
	if (clienthello_parse(more, size + 10, &ch2, &why2) !=
	    CLIENTHELLO_OK || memcmp(&ch, &ch2, sizeof(ch)) != 0)
		fail("bytes after the hello changed it");
	if (ch.sni_len > CLIENTHELLO_SNI_MAX || strlen(ch.sni) != ch.sni_len ||
	    ch.has_sni != (ch.sni_len > 0))
		fail("SNI length");
	for (off = 0, n = 0; off < ch.alpn_len; off += 1 + ch.alpn[off], n++)
		if (ch.alpn[off] == 0)
			fail("empty ALPN entry kept");
	if (off != ch.alpn_len || n != ch.alpn_count)
		fail("ALPN copy does not walk to its length");
	if (ch.has_sni && ch.sni[0] != '*') {
		if (clienthello_route_parse(ch.sni, &r, &why2) == 0 &&
		    clienthello_route_match(&r, 1, ch.sni, ch.sni_len) != 0)
			fail("a route made from the SNI does not match it");
	}
	return 0;
}
