/*
 * fuzz_codec.c - libFuzzer target for the announcement decoder.
 *
 * Every input is decoded with the test vector's key (id 1, bytes 00..1f,
 * realm "ait-lab4"), once requiring a signature and once accepting
 * unsigned datagrams. Properties checked beyond "no crash, no leak, no
 * UB": a rejection always names a reason; whatever is accepted re-encodes
 * (the encoder accepts everything the decoder does) and the re-encoding
 * decodes to the same fields. Seeds: tests/fuzz/corpus/codec, among them
 * the two test vectors.
 *
 *   build:  clang, -fsanitize=fuzzer,address,undefined (tests/meson.build)
 *   run:    fuzz_codec -max_total_time=30 WORKDIR tests/fuzz/corpus/codec
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

#define REALM	"ait-lab4"

static struct codec_key	 key;

static void
fail(const char *what)
{
	fprintf(stderr, "fuzz_codec: property violated: %s\n", what);
	abort();
}

static bool
same(const struct codec_msg *a, const struct codec_msg *b)
{
	return a->state == b->state && a->ipv6 == b->ipv6 &&
	    memcmp(a->addr, b->addr, a->ipv6 ? 16 : 4) == 0 &&
	    a->port == b->port && a->weight == b->weight &&
	    a->ttl_ms == b->ttl_ms && a->seq == b->seq &&
	    a->instance == b->instance && a->timestamp_ms == b->timestamp_ms &&
	    strcmp(a->pool, b->pool) == 0 && strcmp(a->label, b->label) == 0 &&
	    a->has_maxconn == b->has_maxconn && a->maxconn == b->maxconn &&
	    a->has_load == b->has_load && a->load == b->load &&
	    a->has_conns == b->has_conns && a->conns == b->conns;
}

static void
one(const uint8_t *data, size_t size, bool allow_unsigned)
{
	struct codec_msg	 m, m2;
	uint8_t			 buf[CODEC_MAX];
	const char		*why = NULL;
	enum disc_verdict	 v;
	int			 n;

	v = codec_decode(data, size, &key, 1, REALM, allow_unsigned, &m, &why);
	if (v < DISC_OK || v > DISC_BAD_MAC)
		fail("verdict outside what the codec may return");
	if (v != DISC_OK) {
		if (why == NULL || why[0] == '\0')
			fail("rejection without a reason");
		return;
	}
	if (m.auth == CODEC_AUTH_NONE && !allow_unsigned)
		fail("unsigned accepted");
	n = codec_encode(&m, m.auth == CODEC_AUTH_HMAC ? &key : NULL, REALM,
	    buf, sizeof(buf), &why);
	if (n == -1)
		fail("accepted datagram does not re-encode");
	if ((size_t)n > size)
		fail("re-encoding is longer than the original");
	if (codec_decode(buf, (size_t)n, &key, 1, REALM, allow_unsigned, &m2,
	    &why) != DISC_OK || !same(&m, &m2))
		fail("re-encoding does not decode to the same fields");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t	 i;

	if (key.id == 0) {
		key.id = 1;
		key.len = 32;
		for (i = 0; i < 32; i++)
			key.key[i] = (uint8_t)i;
	}
	one(data, size, false);
	one(data, size, true);
	return 0;
}
